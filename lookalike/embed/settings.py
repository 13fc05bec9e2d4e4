"""How to load and run a model, importable without torch (the command line builds one)."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING

from lookalike import hub
from lookalike.errors import ModelLoadError

if TYPE_CHECKING:
    from lookalike.embed.embedder import Embedder


def canonical_model_id(model: str) -> str:
    """A hub id stays as given; a local folder becomes its absolute path, so it compares equal
    whatever directory lookalike is run from."""
    return os.path.abspath(model) if os.path.isdir(model) else model


# Measured (bench/runtime_quality.py --int8, docs/benchmarks.md) and refused: NNCF's int8
# efficientnet-lite0, calibrated on 300 of the collection's own images, lost 0.011-0.016 of
# Beans precision@5 and a near-duplicate, with vectors at cosine 0.85 to fp32's (a collection
# could never mix the two); leaving its depthwise convolutions in float kept precision@5, but
# then ran 1.2x OpenVINO fp32, not worth a second embedding space.
INT8_REFUSED = (
    "precision int8 is not offered: quantized, efficientnet-lite0 lost Beans precision@5 "
    "(0.783-0.787 against 0.798) and moved its vectors far from fp32's (cosine down to 0.85), and "
    "the variant that kept its precision ran only 1.2x faster (see docs/benchmarks.md); use "
    "auto, fp32 or bf16"
)


@dataclass(frozen=True)
class ModelSettings:
    """How to load and run a model; `model=None` means the one a collection was built with."""

    model: str | None = None
    revision: str | None = None
    device: str = "auto"
    precision: str = "auto"
    pooling: str = "auto"
    compile: bool = False
    trust_remote_code: bool = False
    runtime: str = "auto"  # what runs the network: torch, or openvino on the CPU
    # The environment variable `model` came from (None: typed, or none given): a collection's
    # recorded model wins over it, where a typed one that differs is an error.
    model_variable: str | None = None

    def load(
        self, model: str | None = None, pooling: str | None = None, *, fold: bool = True
    ) -> Embedder:
        """The Embedder for `model` (default: this one's); `fold=False` keeps a model
        trainable (no folded batch norms, not compiled)."""
        model = model or self.model
        if model is None:
            raise ModelLoadError(None, "no model given", kind="missing")
        self.check(model)  # before torch is imported: a missing folder is told in a moment
        cached = self._cached(model, pooling or self.pooling) if fold else None
        if cached is not None:
            return cached  # type: ignore[return-value]  # the Embedder's interface
        from lookalike.embed.embedder import Embedder  # torch loads here, not on import

        return Embedder(
            model,
            revision=self.revision,
            device=self.device,
            pooling=pooling or self.pooling,
            precision=self.precision,
            compile=self.compile and fold,
            trust_remote_code=self.trust_remote_code,
            fold=fold,
            runtime=self.runtime,
        )

    def _cached(self, model: str, pooling: str):
        """The model as OpenVINO converted it in an earlier run, without torch or
        transformers, where these settings would run it with OpenVINO anyway; else None."""
        if self.compile or self.runtime == "torch" or self.device not in ("auto", "cpu"):
            return None
        # Where torch would pick a GPU (auto), the full path decides; no torch to ask here.
        if self.device == "auto" and (
            os.path.exists("/proc/driver/nvidia/version") or sys.platform == "darwin"
        ):
            return None
        from lookalike.embed.runtime import openvino_installed

        if not openvino_installed():
            return None
        from lookalike.embed.runtime.cached import load_cached

        return load_cached(model, self.revision, pooling, self.precision)

    def check(self, model: str | None = None) -> None:
        """Raise ModelLoadError now if the model's folder does not exist, or it is a hub id
        that cannot be fetched (no network, or not cached in offline mode); loads nothing."""
        if self.precision == "int8":
            raise ModelLoadError(model or self.model, INT8_REFUSED, kind="precision")
        model = model or self.model
        if model is not None:
            hub.check_model(model, self.revision)


def cpu_lists_bf16() -> bool:
    """Whether the CPU says it has AVX-512 BF16 or AMX (there bf16 is fast; elsewhere it is
    emulated and slower than fp32). Read without torch: the OpenVINO runtime asks it too."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = f.read()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags
