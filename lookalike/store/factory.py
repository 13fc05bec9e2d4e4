"""The factory above the engines: picks one from a StoreConfig (as qdrant-client's facade picks
its local or remote client)."""

from __future__ import annotations

import warnings

from lookalike.store.base import Store
from lookalike.store.config import StoreConfig


def connect(config: StoreConfig | None = None) -> Store:
    """Open the store described by `config` (an embedded folder by default)."""
    config = config or StoreConfig()
    config.check()
    if config.insecure_key:
        warnings.warn(
            f"the Qdrant API key is sent over plain HTTP to {config.location}: anyone on the "
            "network path can read it; use an https:// URL",
            UserWarning,
            stacklevel=2,
        )
    if not config.url and config.embedded_engine == "edge":
        from lookalike.store.edge import EdgeStore

        return EdgeStore(config)
    from lookalike.store.qdrant import QdrantStore

    return QdrantStore.open(config)
