"""A collection's own near-duplicate threshold, measured rather than guessed.

How alike two copies of one photo score depends on the model: with efficientnet-lite0 a
JPEG re-save at quality 75 scores 0.946-0.969 and a half-size copy 0.56-0.88, so a fixed
0.97 finds few real copies. So, once a collection has enough images, a sample of them is
copied as people copy photos (augment.COPIES: re-saved, half size, cropped, turned by EXIF),
each copy decoded and embedded exactly as ingest embeds a file, and scored against its
original's stored vector ("copies") and each original against its nearest other stored image
("others"). The threshold that best separates the two, a false pair counting twice a missed
copy, is stored in the collection's record; `duplicates` and `search --min-score dup` use it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from lookalike.augment import COPIES
from lookalike.images import open_image

if TYPE_CHECKING:  # the threshold's choice is used without a model or store in sight
    from lookalike.embed import Embedder
    from lookalike.source import Source
    from lookalike.store import Store

SAMPLE = 16  # photos copied; 4 copies each
NEIGHBOURS = 4  # looked at per sampled photo for its nearest other photo
MIN_POINTS = 8  # fewer: no "others" worth the name; calibrated at a later sync
# A false pair (two different photos called one) costs this many missed copies.
FALSE_PAIR_COST = 2.0
FLOOR, CEILING = 0.5, 0.995


def calibrate(
    source: Source, embedder: Embedder, store: Store, collection: str, sample: int = SAMPLE
) -> dict | None:
    """The calibration record ({"threshold", "copies", "others", "sample", "edits"}), or None
    when the source is too small or no sampled image could be read."""
    if len(source) < MIN_POINTS:
        return None
    step = max(1, len(source) // (2 * sample))
    records, _ = source.load(range(0, len(source), step)[: 2 * sample], embedder.decode_side)
    records = [r for r in records if r.image is not None][:sample]
    stored = store.vectors(collection, [r.id for r in records])
    records = [r for r in records if r.id in stored]
    if not records:
        return None
    # Each original at about twice the model's size: the copies' edits keep their proportions,
    # and a half-size copy is still larger than what the model sees.
    side = 2 * embedder.decode_side if embedder.decode_side else None
    copies, owners = [], []
    for i, record in enumerate(records):
        original = source.decode(source.locate(record.path, record.row), side).image
        for edit in COPIES.values():
            copies.append(open_image(edit(original), min_side=embedder.decode_side))
            owners.append(i)
    vectors = embedder.embed(copies)
    originals = np.stack([stored[r.id] for r in records])
    originals /= np.linalg.norm(originals, axis=1, keepdims=True)
    same = np.einsum("ij,ij->i", vectors, originals[owners]).astype(float)
    medians = [float(np.median(same[np.asarray(owners) == i])) for i in range(len(records))]
    others = _nearest_others(store, collection, [r.id for r in records], originals, medians)
    if not others:
        return None
    threshold = separating(same.tolist(), others)
    return {
        "threshold": round(threshold, 4),
        "copies": _spread(same.tolist()),
        "others": _spread(others),
        "sample": len(records),
        "edits": list(COPIES),
    }


def _nearest_others(
    store: Store, collection: str, ids: list[str], vectors, like_copies: list[float]
) -> list[float]:
    """Each original's best score against another stored photo, passing over neighbours that
    score as high as its own edited copies do (`like_copies`: their median), which are copies
    themselves (what `duplicates` is to find); then less the highest eighth, for copies
    edited more than ours."""
    found = store.query(collection, vectors, k=NEIGHBOURS + 1)
    best = []
    for own, hits, limit in zip(ids, found, like_copies):
        scores = [h.score for h in hits if h.id != own and h.score < limit]
        if scores:
            best.append(scores[0])
    best.sort()
    return best[: len(best) - len(best) // 8]


def separating(copies: Sequence[float], others: Sequence[float]) -> float:
    """The threshold with the least cost (missed copies, plus FALSE_PAIR_COST per other image
    at or above it), in the middle of the widest gap among equally good ones."""
    values = sorted({*copies, *others, FLOOR, CEILING})
    cuts = [(a + b) / 2 for a, b in zip(values, values[1:])]
    cuts = [c for c in cuts if FLOOR <= c <= CEILING] or [FLOOR]

    def cost(t: float) -> float:
        missed = sum(s < t for s in copies)
        return missed + FALSE_PAIR_COST * sum(s >= t for s in others)

    best = min(cost(c) for c in cuts)
    good = [c for c in cuts if cost(c) == best]
    # The widest run of equally good cuts: its middle is furthest from both sides.
    return (good[0] + good[-1]) / 2 if _contiguous(good, cuts) else good[len(good) // 2]


def _contiguous(good: list[float], cuts: list[float]) -> bool:
    start = cuts.index(good[0])
    return cuts[start : start + len(good)] == good


def _spread(scores: Sequence[float]) -> dict[str, float]:
    s = np.asarray(scores, dtype=float)
    return {
        "min": round(float(s.min()), 4),
        "median": round(float(np.median(s)), 4),
        "max": round(float(s.max()), 4),
    }
