"""lookalike: image-similarity search with transformers embeddings and Qdrant.

The names below are imported on first use, so the command line starts without torch.
"""

from importlib import import_module

_EXPORTS = {
    "Embedder": "lookalike.embedder",
    "ModelSettings": "lookalike.embedder",
    "LookalikeError": "lookalike.errors",
    "IndexSettings": "lookalike.index",
    "SearchSettings": "lookalike.index",
    "CollectionInfo": "lookalike.records",
    "CollectionMeta": "lookalike.records",
    "EvalReport": "lookalike.records",
    "Hit": "lookalike.records",
    "IngestReport": "lookalike.records",
    "Store": "lookalike.store",
    "StoreConfig": "lookalike.store",
    "connect": "lookalike.store",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'lookalike' has no attribute {name!r}")
