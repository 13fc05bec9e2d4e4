"""How to load and run a model, importable without torch (the command line builds one)."""

from __future__ import annotations

import os
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
        )

    def check(self, model: str | None = None) -> None:
        """Raise ModelLoadError now if the model's folder does not exist, or it is a hub id
        that cannot be fetched (no network, or not cached in offline mode); loads nothing."""
        model = model or self.model
        if model is not None:
            hub.check_model(model, self.revision)
