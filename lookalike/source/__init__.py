"""The data-source floor, below ingest and search: datasets and image folders as `Source`s
that yield decoded images with ids and payloads, and batches prepared ahead of the model."""

from lookalike.source.dataset import Source, load_source, point_id

__all__ = ["Source", "load_source", "point_id"]
