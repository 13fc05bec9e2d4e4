"""The search stage (installed as `lookalike.search`): query a collection with images, measure
its retrieval quality, find its near-duplicates."""

from importlib import import_module

__all__ = ["Searcher", "evaluate"]


def __getattr__(name: str):
    # evaluate reads datasets (and so pandas): loaded when asked for, so that a search of a
    # photo, or one forwarded to `serve`, imports neither.
    if name == "Searcher":
        return import_module("lookalike.search.searcher").Searcher
    if name == "evaluate":
        return import_module("lookalike.search.evaluate").evaluate
    raise AttributeError(f"module 'lookalike.search' has no attribute {name!r}")
