"""The data-source floor, below ingest and search: datasets and image folders as `Source`s
that describe, fingerprint and decode their images, and batches prepared ahead of the model."""

from importlib import import_module

__all__ = ["Source", "load_source", "path_point_id", "point_id"]


def __getattr__(name: str):
    # datasets and pandas load with the first of these, not with any lookalike.source module:
    # a search of a photo, or one forwarded to `serve`, needs none of them.
    if name in __all__:
        return getattr(import_module("lookalike.source.dataset"), name)
    raise AttributeError(f"module 'lookalike.source' has no attribute {name!r}")
