"""lookalike: image-similarity search with transformers embeddings and Qdrant.

Floors, each importing only those below it:

- `lookalike.cli`: the edge (click commands, HTTP API and page, tables);
- `lookalike.ingest`, `lookalike.search`, `lookalike.tune`: the stages;
- `lookalike.source` (datasets, folders, batches), `lookalike.embed` (the one embedder),
  `lookalike.store` (Qdrant engines behind one interface);
- records, settings, errors and image decoding.

The names below are imported on first use, so the command line starts without torch.
"""

from importlib import import_module

_EXPORTS = {
    "Embedder": "lookalike.embed",
    "ModelSettings": "lookalike.embed",
    "LookalikeError": "lookalike.errors",
    "IndexSettings": "lookalike.index",
    "SearchSettings": "lookalike.index",
    "CollectionInfo": "lookalike.records",
    "CollectionMeta": "lookalike.records",
    "EvalReport": "lookalike.records",
    "Hit": "lookalike.records",
    "IngestReport": "lookalike.records",
    "StoredPoint": "lookalike.records",
    "Searcher": "lookalike.search",
    "Source": "lookalike.source",
    "load_source": "lookalike.source",
    "evaluate": "lookalike.search",
    "Store": "lookalike.store",
    "StoreConfig": "lookalike.store",
    "connect": "lookalike.store",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'lookalike' has no attribute {name!r}")
