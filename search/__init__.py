"""The search stage (installed as `lookalike.search`): query a collection with images, measure
its retrieval quality, find its near-duplicates. `Searcher` and `evaluate` are imported on
first use, so the command line's tables can use `lookalike.search.queries` without loading
datasets."""

from importlib import import_module

_EXPORTS = {"Searcher": "lookalike.search.searcher", "evaluate": "lookalike.search.evaluate"}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'lookalike.search' has no attribute {name!r}")
