"""The network run by OpenVINO on the CPU, from a model converted once and kept in the cache
(runtime/cache.py). Imports neither torch nor transformers."""

from __future__ import annotations

import functools
import threading
from pathlib import Path

import numpy as np

from lookalike.embed.runtime import cache
from lookalike.embed.settings import cpu_lists_bf16

# OpenVINO's names for lookalike's precisions (a compile-time hint: the IR stays fp32).
_HINTS = {"fp32": "f32", "bf16": "bf16", "fp16": "f16", "int8": "f32"}


@functools.cache
def core():
    import openvino as ov

    c = ov.Core()
    # OpenVINO's own cache of compiled models: a second start skips most of the compile.
    c.set_property({"CACHE_DIR": str(cache.cache_root() / "compiled")})
    return c


def version() -> str:
    import openvino as ov

    return ov.__version__


def key_for(content: str, pooling: str, weights: str = "float") -> str:
    """The cache entry of a model's conversion: its content, OpenVINO's version, the pooling
    built in and the weights (float, or int8 once quantized)."""
    return cache.entry_key(
        content, runtime="openvino", openvino=version(), pooling=pooling, weights=weights
    )


def cpu_has_native_bf16() -> bool:
    """As embedder.cpu_has_native_bf16, asked of OpenVINO rather than torch."""
    if not cpu_lists_bf16():
        return False
    return "BF16" in core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")


class OpenVINORuntime:
    name = "openvino"

    def __init__(self, xml: str | Path, precision: str) -> None:
        # bf16 or fp16 asked of a CPU without them: OpenVINO would not emulate them as torch
        # does (slowly), so it runs fp32, and says so in `precision` (recorded by ingest).
        capabilities = core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
        if precision in ("bf16", "fp16") and precision.upper() not in capabilities:
            precision = "fp32"
        self.precision = precision
        self.compiled = core().compile_model(
            str(xml),
            "CPU",
            {
                "INFERENCE_PRECISION_HINT": _HINTS[precision],
                # One request at a time using every core, as torch runs: ingest and the query
                # batcher send whole batches, and one query must not wait on a queue.
                "PERFORMANCE_HINT": "LATENCY",
            },
        )
        self.request = self.compiled.create_infer_request()
        self.lock = threading.Lock()  # one request object: calls from threads take turns

    def run(self, pixels) -> np.ndarray:
        if not isinstance(pixels, np.ndarray):
            pixels = pixels.numpy()  # a CPU torch tensor
        pixels = np.ascontiguousarray(pixels, dtype=np.float32)
        with self.lock:
            self.request.infer({0: pixels})
            return np.array(self.request.get_output_tensor(0).data, dtype=np.float32)
