"""The data-source floor, below ingest and search: datasets and image folders as `Source`s
that describe, fingerprint and decode their images, and batches prepared ahead of the model."""

from lookalike.source.dataset import Source, load_source, path_point_id, point_id

__all__ = ["Source", "load_source", "path_point_id", "point_id"]
