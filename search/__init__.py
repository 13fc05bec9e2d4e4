"""The search stage (installed as `lookalike.search`): query a collection with images, measure
its retrieval quality, find its near-duplicates."""

from lookalike.search.evaluate import evaluate
from lookalike.search.searcher import Searcher

__all__ = ["Searcher", "evaluate"]
