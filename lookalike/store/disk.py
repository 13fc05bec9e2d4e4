"""The disk under embedded stores: free space checked before each write, files read ahead,
and lock files shared between processes.

The engines memory-map their files: a write into a page the full disk cannot back kills the
process with SIGBUS (no exception, no message), and a store whose log ends in such a write may
not open again until space is freed. So ingest stops, with a clear error, while the disk still
has a reserve: the store stays readable and the next run resumes.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
from collections.abc import Callable
from typing import IO

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None

from lookalike.errors import DiskFull, StoreUnavailable

# What a write costs on disk, per float of vector: the vector in the write-ahead log, in its
# segment, and again when the search index copies it (plus the index itself).
BYTES_PER_DIMENSION = 16
BYTES_PER_POINT = 4096  # payload, ids and versions, in the log and the segment
# Opening a collection writes a little (its config, a log segment): refuse below this, rather
# than let the engine die half-way.
OPEN_BYTES = 1 << 20


def free_bytes(folder: str) -> int:
    """Free space for this user on the disk holding `folder` (or its nearest existing parent)."""
    folder = os.path.abspath(folder)
    while not os.path.exists(folder):
        folder = os.path.dirname(folder)
    return shutil.disk_usage(folder).free


MEMORY_FILESYSTEMS = ("tmpfs", "ramfs")


def filesystem(folder: str) -> str | None:
    """The type of the filesystem holding `folder` (Linux; None where unknown)."""
    path = os.path.realpath(folder)
    while not os.path.exists(path):
        path = os.path.dirname(path)
    best, kind = "", None
    try:
        with open("/proc/self/mountinfo") as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    for line in lines:
        fields = line.split(" ")
        mount = fields[4].replace("\\040", " ")
        inside = path == mount or path.startswith(mount.rstrip("/") + "/")
        if inside and len(mount) >= len(best) and " - " in line:
            best, kind = mount, line.split(" - ", 1)[1].split(" ")[0]
    return kind


def open_bytes(shard: str) -> int:
    """What opening a shard may write. On tmpfs, also every hole of its files: the engine maps
    them and touching a mapped hole there takes a page of memory (on a disk, it reads zeros)."""
    if not os.path.isdir(shard) or filesystem(shard) not in MEMORY_FILESYSTEMS:
        return OPEN_BYTES
    holes = 0
    for parent, _, files in os.walk(os.path.join(shard, "segments")):
        if "payload_storage" in parent:  # payloads stay on disk: the engine does not map them
            continue
        for name in files:
            with contextlib.suppress(OSError):
                st = os.stat(os.path.join(parent, name))
                holes += max(0, st.st_size - st.st_blocks * 512)
    return OPEN_BYTES + holes


def points_bytes(points: int, dim: int) -> int:
    """About how much disk `points` new vectors of `dim` floats take."""
    return points * (BYTES_PER_DIMENSION * dim + BYTES_PER_POINT)


def allocated_bytes(folder: str) -> int:
    """Disk blocks actually used under `folder` (the engines' files are sparse)."""
    total = 0
    for parent, _, files in os.walk(folder):
        for name in files:
            try:
                total += os.stat(os.path.join(parent, name)).st_blocks * 512
            except OSError:
                continue
    return total


def ensure_free(folder: str, needed: int, reserve: int, *, location: str, action: str) -> None:
    """DiskFull unless the disk holding `folder` has `needed` bytes free beyond `reserve`."""
    free = free_bytes(folder)
    if free < needed + reserve:
        raise DiskFull(location, action, folder, free, needed + reserve)


def full(location: str, action: str, folder: str) -> DiskFull:
    """The DiskFull for a disk the engine found full mid-write: how much it needed is not
    known, and a disk out of inodes (files) is said as such, whatever bytes are free."""
    return DiskFull(
        location, action, folder, free_bytes(folder), None, inodes=out_of_inodes(folder)
    )


def out_of_inodes(folder: str) -> bool:
    folder = os.path.abspath(folder)
    while not os.path.exists(folder):
        folder = os.path.dirname(folder)
    try:
        st = os.statvfs(folder)
    except (OSError, AttributeError):  # no statvfs (Windows)
        return False
    return st.f_files > 0 and st.f_favail == 0  # f_files 0: no inode limit (btrfs)


def is_disk_full(error: BaseException) -> bool:
    """An engine error that says the disk is full (the engines raise plain exceptions)."""
    if isinstance(error, OSError) and error.errno == 28:
        return True
    text = str(error)
    return "No space left on device" in text or "database or disk is full" in text


def read_ahead(shard: str, on_disk: bool) -> None:
    """Ask the kernel to read a shard's graph and vectors ahead, in the background. The engine
    memory-maps them, and the first searches would otherwise fault them in a page at a time:
    ~55 MB/s of random 4 KB reads on our CI disk against ~500 MB/s read in order. With
    `on_disk`, the original vectors are left on disk, as asked."""
    if not hasattr(os, "posix_fadvise"):  # not Linux: the page faults it is
        return
    for folder, _, files in os.walk(os.path.join(shard, "segments")):
        originals = on_disk and "vector_storage" in folder.split(os.sep)
        for file in files:
            if originals and "quantized" not in file:
                continue
            try:
                fd = os.open(os.path.join(folder, file), os.O_RDONLY)
            except OSError:
                continue
            try:
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_WILLNEED)
            finally:
                os.close(fd)


def _flock(f: IO) -> bool:
    if fcntl is None:  # no flock (Windows): the engines' own locks are all there is
        return True
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def try_lock(path: str, wait_s: float = 0) -> IO | None:
    """An exclusive lock on the file at `path` (created if missing, then holding our process
    id), held until the returned file is closed; None if another process still holds it after
    `wait_s` seconds. The kernel releases it when the holder dies: a killed process never
    leaves it stuck."""
    f = open(path, "a+")  # noqa: SIM115 (the open file is the lock)
    deadline = time.monotonic() + wait_s
    while not _flock(f):
        if time.monotonic() >= deadline:
            f.close()
            return None
        time.sleep(0.05)
    f.truncate(0)
    f.write(f"{os.getpid()}\n")
    f.flush()
    return f


class CollectionLocks:
    """Lock files beside the collections of an embedded store, for what the engine's own
    locks do not cover: `.NAME.create` while a collection is created or deleted (the engine
    locks a shard only once it exists), `.NAME.open` while one process has it open (taken
    before its files are checked, which another process may be writing)."""

    def __init__(self, root: str, wait_s: float, locked: Callable[[str], Exception]) -> None:
        self.root, self.wait_s, self.locked = root, wait_s, locked
        self._held: dict[str, IO] = {}

    @contextlib.contextmanager
    def creating(self, name: str):
        os.makedirs(self.root, exist_ok=True)
        lock = self._try(os.path.join(self.root, f".{name}.create"), self.wait_s)
        if lock is None:
            raise self.locked(name)
        with lock:
            yield

    def hold(self, name: str) -> None:
        if name not in self._held:
            lock = self._try(os.path.join(self.root, f".{name}.open"), 0)
            if lock is None:
                raise self.locked(name)
            self._held[name] = lock

    def _try(self, path: str, wait_s: float) -> IO | None:
        try:
            return try_lock(path, wait_s)
        except OSError as e:  # a read-only mount, or a folder of another user's
            raise StoreUnavailable(
                f"the embedded store {os.path.dirname(self.root)}",
                "open its lock file",
                f"{e.strerror or e}: the store must be writable, even to search it (the engine "
                "writes its own files as it reads); copy it to a folder you can write, or "
                "search it through a running `lookalike serve` that can",
            ) from e

    def release(self, name: str) -> None:
        lock = self._held.pop(name, None)
        if lock is not None:
            lock.close()
