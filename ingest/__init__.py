"""The ingest stage (installed as `lookalike.ingest`): embed every image of a source and upsert
the vectors into a collection, resumably."""

from lookalike.ingest.worker import ingest

__all__ = ["ingest"]
