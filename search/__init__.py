"""Search a lookalike collection with images, and measure its retrieval quality."""

from search.evaluate import evaluate
from search.searcher import Searcher

__all__ = ["Searcher", "evaluate"]
