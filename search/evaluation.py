"""Retrieval quality of a collection: each image of a labelled split queries the collection."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field

from lookalike.augment import EDITS
from lookalike.errors import BadQuery
from lookalike.index import EXACT
from lookalike.records import EvalReport, Hit
from lookalike.search.searcher import Searcher, check_k
from lookalike.source.batches import prepared_batches

# A gallery image this close to a query is the same picture (leakage), not a neighbour.
NEAR_IDENTICAL = 0.99


def knn_vote(hits: list[Hit]) -> int | None:
    """Majority label of the hits; a tie goes to the label of the best-ranked tied hit."""
    counts = Counter(h.label for h in hits)
    if not counts:
        return None
    top = max(counts.values())
    return next(h.label for h in hits if counts[h.label] == top)


def average_precision(relevant: list[bool]) -> float:
    """AP over a ranked list: mean of precision@i at each relevant rank i (0 if none)."""
    found, total = 0, 0.0
    for i, rel in enumerate(relevant, 1):
        if rel:
            found += 1
            total += found / i
    return total / found if found else 0.0


@dataclass
class _Tally:
    n: int = 0
    at_k: float = 0.0
    at_1: float = 0.0
    knn: float = 0.0
    ap: float = 0.0
    near_identical: int = 0
    recall: float = 0.0
    per_class: dict = field(default_factory=lambda: defaultdict(list))

    def add(self, label, label_name, hits: list[Hit], k: int) -> None:
        relevant = [h.label == label for h in hits]
        self.n += 1
        self.at_k += sum(relevant) / k
        self.at_1 += bool(relevant) and relevant[0]
        self.knn += knn_vote(hits) == label
        self.ap += average_precision(relevant)
        self.near_identical += bool(hits) and hits[0].score >= NEAR_IDENTICAL
        self.per_class[label_name].append(sum(relevant) / k)


def evaluate(
    searcher: Searcher,
    split: str = "test",
    *,
    k: int = 5,
    batch_size: int | None = None,
    workers: int | None = None,
    near_duplicates: int = 0,
    recall: bool = False,
    on_progress: Callable[[int], None] | None = None,
) -> EvalReport:
    """precision@k, precision@1, k-NN accuracy, mAP@k and per-class precision@k of `split`'s
    images against the collection; with `near_duplicates`, also the near-duplicate score;
    with `recall`, recall@k of the searcher's settings against exact search.

    A query's own point (when its split is also in the collection) is not counted as a hit.
    """
    check_k(k)
    source = searcher.source(split)
    if source.label_column is None:
        raise BadQuery(
            f"split {split!r} has no label column, so there is nothing to score", field="split"
        )
    tally, skipped = _Tally(), 0
    batch_size = batch_size or searcher.embedder.default_batch_size
    for batch in prepared_batches(source, searcher.embedder, batch_size, workers):
        skipped += len(batch.skipped)
        records = batch.records
        vectors = searcher.embedder.embed_pixels(batch.pixels) if records else None
        results = searcher.search_vectors(vectors, k=k + 1) if records else []
        exact = searcher.search_vectors(vectors, k=k + 1, params=EXACT) if recall else results
        for record, hits, truth in zip(records, results, exact):
            hits = [h for h in hits if h.id != record.id][:k]
            tally.add(record.label, record.label_name, hits, k)
            tally.recall += overlap(hits, [h for h in truth if h.id != record.id][:k])
        if on_progress:
            on_progress(len(records) + len(batch.skipped))
    if tally.n == 0:
        raise BadQuery(f"split {split!r} has no readable images to evaluate", field="split")
    return EvalReport(
        k=k,
        queries=tally.n,
        precision_at_k=tally.at_k / tally.n,
        precision_at_1=tally.at_1 / tally.n,
        knn_accuracy=tally.knn / tally.n,
        skipped=skipped,
        map_at_k=tally.ap / tally.n,
        per_class_precision_at_k={
            name: sum(v) / len(v) for name, v in sorted(tally.per_class.items(), key=str)
        },
        near_duplicate_top1=near_duplicate_score(searcher, near_duplicates)
        if near_duplicates
        else None,
        near_identical_queries=tally.near_identical,
        recall_at_k=tally.recall / tally.n if recall else None,
    )


def overlap(found: list[Hit], truth: list[Hit]) -> float:
    """Share of the true neighbours that were found (1.0 when there are none to find)."""
    if not truth:
        return 1.0
    return len({h.id for h in found} & {h.id for h in truth}) / len(truth)


def near_duplicate_score(
    searcher: Searcher, n: int, on_progress: Callable[[int], None] | None = None
) -> float:
    """Share of edited copies (crop, rescale, JPEG, brightness) of n gallery images whose
    first hit is their original; `on_progress(1)` after each gallery image."""
    found = total = 0
    for point in searcher.store.sample(searcher.collection, n):
        image = searcher.candidate_image(point)
        if image is not None:
            copies = [edit(image) for edit in EDITS.values()]
            for hits in searcher.search_vectors(searcher.embedder.embed(copies), k=1):
                found += bool(hits) and hits[0].id == point.id
                total += 1
        if on_progress:
            on_progress(1)
    if total == 0:
        raise BadQuery("no gallery image could be read for the near-duplicate score")
    return found / total
