"""Near-duplicate images inside a collection, and across its splits (train/test leakage)."""

from __future__ import annotations

from dataclasses import dataclass

from lookalike.errors import BadQuery
from lookalike.records import StoredPoint
from lookalike.store import Store


@dataclass(frozen=True)
class DuplicatePair:
    score: float
    a: StoredPoint
    b: StoredPoint

    @property
    def cross_split(self) -> bool:
        return self.a.split != self.b.split

    def to_dict(self) -> dict:
        keep = ("id", "label", "label_name", "split", "row", "path")
        side = {
            name: {f: getattr(p, f) for f in keep} for name, p in (("a", self.a), ("b", self.b))
        }
        return {"score": round(self.score, 6), "cross_split": self.cross_split, **side}


# Without a calibrated threshold (a collection not synced since calibration came in).
FALLBACK_THRESHOLD = 0.97


@dataclass(frozen=True)
class DuplicateReport:
    points: int
    threshold: float
    pairs: list[DuplicatePair]
    groups: list[list[StoredPoint]]  # connected by pairs above the threshold, largest first
    # Where the threshold came from: "given", "calibrated" (the collection's own), "fallback"
    threshold_source: str = "given"

    def to_dict(self) -> dict:
        return {
            "points": self.points,
            "threshold": self.threshold,
            "threshold_source": self.threshold_source,
            "pairs": len(self.pairs),
            "cross_split_pairs": sum(p.cross_split for p in self.pairs),
            "groups": [[h.where() for h in g] for g in self.groups],
        }


def _groups(pairs: list[DuplicatePair]) -> list[list[StoredPoint]]:
    parent: dict[str, str] = {}

    def root(x: str) -> str:
        while parent.setdefault(x, x) != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    points: dict[str, StoredPoint] = {}
    for p in pairs:
        points[p.a.id], points[p.b.id] = p.a, p.b
        parent[root(p.a.id)] = root(p.b.id)
    members: dict[str, list[StoredPoint]] = {}
    for pid, point in points.items():
        members.setdefault(root(pid), []).append(point)
    ordered = [sorted(g, key=StoredPoint.order) for g in members.values()]
    return sorted(ordered, key=lambda g: (-len(g), *g[0].order()))


def _points(store: Store, collection: str, ids: list[str]) -> dict[str, StoredPoint]:
    """The payloads of `ids`, a thousand per request."""
    found: dict[str, StoredPoint] = {}
    for start in range(0, len(ids), 1000):
        found.update(store.points(collection, ids[start : start + 1000]))
    return found


def calibrated_threshold(store: Store, collection: str) -> float | None:
    """The near-duplicate threshold measured on the collection's own photos at ingest
    (ingest/calibrate.py), or None if it has none yet."""
    meta = store.info(collection).meta
    found = (meta.duplicates or {}) if meta else {}
    value = found.get("threshold")
    return float(value) if isinstance(value, (int, float)) else None


def find_duplicates(
    store: Store, collection: str, *, threshold: float | None = None, neighbours: int = 3
) -> DuplicateReport:
    """Pairs of points with cosine similarity >= threshold, best first, over the whole
    collection (each point's `neighbours` nearest are examined). No `threshold`: the
    collection's calibrated one, else FALLBACK_THRESHOLD."""
    source = "given"
    if threshold is None:
        threshold = calibrated_threshold(store, collection)
        source = "calibrated" if threshold is not None else "fallback"
        threshold = threshold if threshold is not None else FALLBACK_THRESHOLD
    if not 0 < threshold <= 1:
        raise BadQuery(f"threshold must be in (0, 1], not {threshold}", field="threshold")
    points = store.info(collection).points
    # Streamed: only pairs at or above the threshold are kept, never every point's neighbours.
    best: dict[frozenset, float] = {}
    for a, b, score in store.similar_pairs(collection, neighbours) if points else ():
        if a != b and score >= threshold:
            key = frozenset((a, b))
            best[key] = max(score, best.get(key, -1.0))
    payloads = _points(store, collection, sorted({i for key in best for i in key}))
    pairs = []
    for key, score in best.items():
        a, b = sorted(key, key=lambda i: payloads[i].order())
        pairs.append(DuplicatePair(score, payloads[a], payloads[b]))
    pairs.sort(key=lambda p: -p.score)
    return DuplicateReport(points, threshold, pairs, _groups(pairs), source)
