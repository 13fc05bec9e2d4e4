"""Retrieval quality of a collection: each image of a labelled split queries the collection."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

from ingest.pipeline import prepared_batches
from lookalike.errors import BadQuery
from lookalike.records import EvalReport, Hit
from search.searcher import Searcher, check_k


def knn_vote(hits: list[Hit]) -> int | None:
    """Majority label of the hits; a tie goes to the label of the best-ranked tied hit."""
    counts = Counter(h.label for h in hits)
    if not counts:
        return None
    top = max(counts.values())
    return next(h.label for h in hits if counts[h.label] == top)


def evaluate(
    searcher: Searcher,
    split: str = "test",
    *,
    k: int = 5,
    batch_size: int | None = None,
    workers: int | None = None,
    on_progress: Callable[[int], None] | None = None,
) -> EvalReport:
    """precision@k, precision@1 and k-NN accuracy of `split`'s images against the collection.

    A query's own point (when its split is also in the collection) is not counted as a hit.
    """
    check_k(k)
    source = searcher.source(split)
    if source.label_column is None:
        raise BadQuery(f"split {split!r} has no label column, so there is nothing to score")
    n = correct_at_k = correct_at_1 = knn_correct = skipped = 0
    batch_size = batch_size or searcher.embedder.default_batch_size
    for batch in prepared_batches(source, searcher.embedder, batch_size, workers):
        skipped += len(batch.skipped)
        records = batch.records
        vectors = searcher.embedder.embed_pixels(batch.pixels) if records else None
        results = searcher.search_vectors(vectors, k=k + 1) if records else []
        for record, hits in zip(records, results):
            hits = [h for h in hits if h.id != record.id][:k]
            n += 1
            correct_at_k += sum(h.label == record.label for h in hits)
            correct_at_1 += bool(hits) and hits[0].label == record.label
            knn_correct += knn_vote(hits) == record.label
        if on_progress:
            on_progress(len(records) + len(batch.skipped))
    if n == 0:
        raise BadQuery(f"split {split!r} has no readable images to evaluate")
    return EvalReport(
        k=k,
        queries=n,
        precision_at_k=correct_at_k / (n * k),
        precision_at_1=correct_at_1 / n,
        knn_accuracy=knn_correct / n,
        skipped=skipped,
    )
