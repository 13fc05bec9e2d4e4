"""The search stage (installed as `lookalike.search`): query a collection with images, measure
its retrieval quality, find its near-duplicates."""

from importlib import import_module
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from lookalike.search.evaluation import evaluate
    from lookalike.search.searcher import Searcher

__all__ = ["Searcher", "evaluate"]
# Loaded on first use: a command that only forwards to `serve` needs neither, nor numpy.
_LAZY = {"Searcher": "lookalike.search.searcher", "evaluate": "lookalike.search.evaluation"}


def __getattr__(name: str):
    if name in _LAZY:  # the module is `evaluation`: `evaluate` is only ever the function
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
