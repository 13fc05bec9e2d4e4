"""The ingest worker: load a dataset, embed every image, upsert the vectors into Qdrant."""

from ingest.dataset import Source, load_source, point_id
from ingest.worker import ingest

__all__ = ["Source", "ingest", "load_source", "point_id"]
