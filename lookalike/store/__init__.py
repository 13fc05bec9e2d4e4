"""Where vectors live: one interface (`Store`), three engines, one factory (`connect`).

- a Qdrant server or cluster (`url`): `lookalike.store.qdrant`, through qdrant-client;
- embedded `edge` (the default for a new folder): Qdrant's own engine in-process, with HNSW,
  quantization, payload indexes and persistence, `lookalike.store.edge`;
- embedded `local`: qdrant-client's pure-Python local mode, exact search (kept for folders it
  already holds and for small collections).

The base class knows no engine; the factory, above them, picks one. Engines are imported on
first use, so importing this package does not load qdrant-client or qdrant-edge.
"""

from importlib import import_module
from typing import TYPE_CHECKING

from lookalike.store.config import StoreConfig, check_name

if TYPE_CHECKING:
    from lookalike.store.base import Store
    from lookalike.store.factory import connect

__all__ = ["Store", "StoreConfig", "check_name", "connect"]
# Loaded on first use: a command that only forwards to `serve` needs the settings, not numpy.
_LAZY = {"Store": "lookalike.store.base", "connect": "lookalike.store.factory"}


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
