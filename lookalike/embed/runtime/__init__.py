"""What runs the network of the one Embedder: torch, or OpenVINO on the CPU.

Whichever runs it, the Embedder's preprocessing feeds it and its pooled output is
L2-normalised the same way, so a collection built with one runtime answers queries run with
the other. A runtime takes the model's float32 (batch, C, H, W) input and returns the pooled
(batch, dim) embedding, not yet normalised.

`--runtime auto` runs OpenVINO on the CPU (a dependency; where its wheel cannot be installed,
torch) and torch on a GPU.
"""

from __future__ import annotations

import importlib.util
from typing import TYPE_CHECKING, Protocol

from lookalike.defaults import RUNTIMES
from lookalike.errors import ModelLoadError

if TYPE_CHECKING:
    import numpy as np

__all__ = ["RUNTIMES", "Runtime", "l2_normalize", "openvino_installed", "resolve_runtime"]
INSTALL_HINT = "pip install openvino"


class Runtime(Protocol):
    name: str  # torch or openvino
    precision: str  # what it computes in: fp32, bf16, fp16, int8

    def run(self, pixels) -> np.ndarray:
        """float32 (batch, dim) pooled embeddings of a float32 (batch, C, H, W) input."""
        ...


def openvino_installed() -> bool:
    return importlib.util.find_spec("openvino") is not None


def resolve_runtime(runtime: str, device_type: str, *, compile: bool = False) -> str:
    """torch or openvino, for `runtime` as asked and the device the model runs on;
    `compile` (torch.compile) asks for torch."""
    if runtime not in RUNTIMES:
        raise ModelLoadError(
            None, f"unknown runtime {runtime!r}: use {', '.join(RUNTIMES)}", kind="runtime"
        )
    if runtime == "auto":
        cpu = device_type == "cpu" and not compile
        return "openvino" if cpu and openvino_installed() else "torch"
    if runtime == "openvino":
        if compile:
            raise ModelLoadError(
                None, "--compile is torch's: use it with --runtime torch", kind="runtime"
            )
        if device_type != "cpu":
            raise ModelLoadError(
                None,
                f"the openvino runtime runs on the CPU, not {device_type}: use --device cpu, "
                "or --runtime torch",
                kind="runtime",
            )
        if not openvino_installed():
            raise ModelLoadError(
                None, f"the openvino runtime is not installed: {INSTALL_HINT}", kind="runtime"
            )
    return runtime


def l2_normalize(vectors: np.ndarray) -> np.ndarray:
    """Rows of unit length, as torch.nn.functional.normalize makes them (eps 1e-12)."""
    import numpy as np

    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=-1, keepdims=True)
    return vectors / np.maximum(norms, 1e-12)
