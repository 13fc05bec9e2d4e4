"""Keeping the memory of one batch for the next, for long runs of CPU inference."""

from __future__ import annotations

import ctypes
import ctypes.util
import functools

_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4  # glibc's mallopt parameters (malloc.h)


@functools.cache
def reuse_freed_memory() -> bool:
    """Have glibc serve large allocations from its heap and keep freed memory for reuse.

    By default every allocation over 32 MB (a CNN's activations at batch 16) is a fresh
    mapping, which the kernel fills with zeroed pages on first touch and unmaps on free, for
    every layer of every batch: that page clearing took ~40% of efficientnet-lite0's CPU time
    on a 2-core machine. Peak memory does not change, but memory freed after the peak is
    kept by the process rather than returned: meant for a batch command, not for a
    library's caller to get by surprise. Returns False where glibc is not the allocator.
    """
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(_M_MMAP_MAX, 0)) and bool(mallopt(_M_TRIM_THRESHOLD, 1 << 30))
