"""lookalike: image-similarity search with transformers embeddings and Qdrant."""

from lookalike.embedder import Embedder
from lookalike.errors import LookalikeError
from lookalike.records import CollectionInfo, CollectionMeta, EvalReport, Hit, IngestReport
from lookalike.store import Store, StoreConfig, connect

__all__ = [
    "CollectionInfo",
    "CollectionMeta",
    "Embedder",
    "EvalReport",
    "Hit",
    "IngestReport",
    "LookalikeError",
    "Store",
    "StoreConfig",
    "connect",
]
