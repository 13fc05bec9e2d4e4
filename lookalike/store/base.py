"""The store interface every engine implements; it imports no engine (the factory,
`lookalike.store.factory`, stands above them)."""

from __future__ import annotations

import contextlib
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import replace

import numpy as np

from lookalike.errors import BadQuery, CollectionNotFound, LookalikeError
from lookalike.index import IndexSettings, SearchSettings
from lookalike.query import INTEGER, KEYWORD, MIXED, Examples, QueryOptions, merge_types
from lookalike.records import (
    OWN_FIELDS,
    CollectionInfo,
    CollectionMeta,
    Hit,
    ImageRecord,
    StoredPoint,
    Tracked,
    check_compatible,
)
from lookalike.store.config import StoreConfig, check_name


class Store(ABC):
    """Collections of image vectors with label/split/row/path payloads and a label index."""

    engine: str
    config: StoreConfig

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def prepare(
        self,
        name: str,
        meta: CollectionMeta,
        *,
        recreate: bool = False,
        index: IndexSettings | None = None,
    ) -> None:
        """Create the collection for `meta`, or check an existing one was built the same way
        and record label names it gained (`index` applies only when the collection is
        created)."""
        check_name(name)
        with self._creating(name):
            if recreate and self.exists(name):
                self._delete(name)
            if not self.exists(name):
                self._create(name, meta, index or IndexSettings())
                return
        info = self.info(name)
        check_compatible(info, meta, ingest=True)
        if info.meta:  # label names gained; the dataset's or model's new place, once moved
            moved = dict(model=meta.model, dataset=meta.dataset, dataset_id=meta.dataset_id)
            hashed = info.meta.model_hash or (
                meta.model_hash if meta.model == info.meta.model else None
            )
            now = replace(info.meta, label_names=meta.label_names, model_hash=hashed, **moved)
            if now != info.meta:
                self._set_meta(name, now)

    def update_meta(self, name: str, meta: CollectionMeta) -> None:
        """Record what was learnt about the collection (its calibrated thresholds)."""
        self._set_meta(name, meta)

    def _creating(self, name: str) -> contextlib.AbstractContextManager:
        """Held while `name` is deleted or created (an engine without its own lock adds one)."""
        return contextlib.nullcontext()

    def not_found(self, name: str) -> CollectionNotFound:
        return CollectionNotFound(name, self.config.location, self.names())

    def finish(self, name: str) -> None:
        """Called once an ingest has written everything: build what searches need."""
        return None  # a server indexes in the background, as points arrive

    @abstractmethod
    def close(self) -> None: ...

    @abstractmethod
    def names(self) -> list[str]: ...

    @abstractmethod
    def exists(self, name: str) -> bool: ...

    @abstractmethod
    def info(self, name: str) -> CollectionInfo:
        """Size, vector and index parameters and build metadata; CollectionNotFound if absent."""

    @abstractmethod
    def _create(self, name: str, meta: CollectionMeta, index: IndexSettings) -> None: ...

    @abstractmethod
    def _delete(self, name: str) -> None: ...

    @abstractmethod
    def _set_meta(self, name: str, meta: CollectionMeta) -> None: ...

    @abstractmethod
    def upsert(self, name: str, records: Sequence[ImageRecord], vectors: np.ndarray) -> None:
        """Store the points and return once a search would see them. Upserts are idempotent
        (deterministic ids), so retrying one is always safe."""

    @abstractmethod
    def existing_ids(self, name: str, ids: Sequence[str]) -> set[str]:
        """Which of `ids` the collection already holds."""

    def tracked(self, name: str, split: str) -> list[Tracked]:
        """Every point of `split`, with its whole payload (what a sync compares)."""
        found, offset = [], None
        while True:
            page, offset = self.tracked_page(name, split, TRACKED_PAGE, offset)
            found += page
            if offset is None or not page:
                return found

    @abstractmethod
    def tracked_page(
        self, name: str, split: str, limit: int, offset: str | None = None
    ) -> tuple[list[Tracked], str | None]:
        """Up to `limit` points of `split` in id order from `offset` (a point id, included),
        with their whole payloads, and the next offset (None: the last page)."""

    @abstractmethod
    def vectors(self, name: str, ids: Sequence[str]) -> dict[str, np.ndarray]:
        """The stored vectors of `ids` (those that exist), by id."""

    @abstractmethod
    def delete(self, name: str, ids: Sequence[str]) -> None:
        """Remove these points (ids not stored are ignored); returns once searches no longer
        see them."""

    def similar_pairs(self, name: str, neighbours: int) -> Iterator[tuple[str, str, float]]:
        """(id, id, score) for every point and each of its nearest `neighbours` others.

        A page of points at a time, each page's own vectors as one batch of queries: memory
        holds a page, never the whole collection's vectors and payloads."""
        offset = None
        while True:
            points, vectors, offset = self.scroll(name, PAIRS_PAGE, offset, with_vectors=True)
            found = self.query(name, vectors, neighbours + 1) if points else []
            for point, hits in zip(points, found):
                others = [h for h in hits if h.id != point.id][:neighbours]
                yield from ((point.id, h.id, h.score) for h in others)
            if offset is None:
                return

    @abstractmethod
    def points(self, name: str, ids: Sequence[str]) -> dict[str, StoredPoint]:
        """The stored points among `ids`, by id."""

    @abstractmethod
    def scroll(
        self,
        name: str,
        limit: int,
        offset: str | None = None,
        with_vectors: bool = False,
        where: dict | None = None,
    ) -> tuple[list[StoredPoint], np.ndarray | None, str | None]:
        """A page of stored points in id order (those `where` keeps, a Qdrant filter): points,
        their vectors if asked, next offset."""

    def drop(self, name: str) -> None:
        """Delete the collection and its points; CollectionNotFound if there is none."""
        check_name(name)
        if not self.exists(name):
            raise self.not_found(name)
        with self._creating(name):
            self._delete(name)

    def labels_in_use(self, name: str, names: Sequence[str]) -> tuple[str, ...]:
        """The label names some point still has (a class whose images are all gone keeps its
        id in the record, so that the others keep theirs, but is no label of the collection)."""
        if len(names) > MAX_LABEL_LOOKUPS:  # one request each: a dataset's own classes stay
            return tuple(names)
        where = [{"must": [{"key": "label", "match": {"value": i}}]} for i in range(len(names))]
        return tuple(n for n, w in zip(names, where) if self.scroll(name, 1, where=w)[0])

    def mark_synced(self, name: str, when: str) -> None:
        """Record that a sync of the collection completed at `when` (what `collections` shows)."""
        try:  # bookkeeping after the points are safely stored: never what fails a sync
            meta = self.info(name).meta
            if meta is not None:
                self._set_meta(name, replace(meta, synced=when))
        except LookalikeError:
            pass

    def read_points(
        self, name: str, limit: int, offset: str | None = None
    ) -> tuple[list[Tracked], np.ndarray, str | None]:
        """A page of points in id order with their whole payloads and vectors, and the next
        offset (what an export streams)."""
        raise NotImplementedError

    def bulk_load(self, name: str) -> contextlib.AbstractContextManager:
        """Held while many points are loaded at once: a server defers building its index
        until the end (an embedded engine builds it in `finish`)."""
        return contextlib.nullcontext()

    def sample(self, name: str, n: int) -> list[StoredPoint]:
        """Up to n stored points (in id order, which deterministic uuids make arbitrary)."""
        return self.scroll(name, n)[0]

    def point(self, name: str, point_id: str) -> StoredPoint | None:
        """A stored point, or None."""
        return next(iter(self.points(name, [point_id]).values()), None)

    @abstractmethod
    def query(
        self,
        name: str,
        vectors: np.ndarray,
        k: int,
        label: int | None = None,
        params: SearchSettings | None = None,
        options: QueryOptions | None = None,
    ) -> list[list[Hit]]:
        """Top-k neighbours for each row of `vectors`, optionally only those with `label`, and
        as `options` asks (filter, score threshold, groups), all done by the engine.
        `params` go to the engine as they are (see index.effective for quantized defaults)."""

    @abstractmethod
    def recommend(
        self,
        name: str,
        examples: Examples,
        k: int,
        params: SearchSettings | None = None,
        options: QueryOptions | None = None,
    ) -> list[Hit]:
        """Top-k candidates like `examples.positive` and unlike `examples.negative`, scored by
        the examples' strategy; points given as examples by id are never returned."""

    @abstractmethod
    def indexed_fields(self, name: str) -> dict[str, str]:
        """The payload fields with an index, and its type (keyword, integer, float, bool)."""

    def unfinished(self, name: str) -> bool:
        """Whether an ingest wrote to the collection and did not finish (killed before its
        indexes were built): the next sync finishes it, even with nothing to write."""
        return False

    def index_fields(self, name: str, types: dict[str, str]) -> None:
        """Index these payload fields (by their values' types) unless they are indexed."""
        have = self.indexed_fields(name)
        for field, kind in types.items():
            if field not in have and kind != MIXED and field not in UNINDEXED:
                self._index_field(name, field, kind)

    def _index_field(self, name: str, field: str, kind: str) -> None:
        return None  # an engine without payload indexes filters by reading payloads

    def field_types(self, name: str, fields: Sequence[str] = ()) -> dict[str, str]:
        """The type of each payload field: indexed fields', else as a sample of points holds
        them; each of `fields` missing from the sample is looked up in points that have it."""
        sample = [_payload(p) for p in self.sample(name, TYPE_SAMPLE)]
        types = {**merge_types(OWN_TYPES, sample), **self.indexed_fields(name)}
        for field in fields:
            if field not in types:
                having = {"must_not": [{"is_empty": {"key": field}}]}
                try:
                    found = self.scroll(name, 16, where=having)[0]
                except BadQuery:  # not a name a field can have
                    continue
                types.update(merge_types({}, [{field: _payload(p).get(field)} for p in found]))
        return types


MAX_LABEL_LOOKUPS = 1000
# Points whose vectors `similar_pairs` reads, and queries, at once.
PAIRS_PAGE = 256
TRACKED_PAGE = 1024  # points a sync reads at once
# Points whose payloads are read to know the fields' types; a field missing from them is
# looked up by name when a query names it.
TYPE_SAMPLE = 256
OWN_TYPES = {"label": INTEGER, "label_name": KEYWORD, "split": KEYWORD, "path": KEYWORD}
# lookalike's own fields: label has its index from the start; the others are unique per image
# or rarely filtered, and an index is files mapped in memory.
UNINDEXED = set(OWN_FIELDS)


def _payload(point: StoredPoint) -> dict:
    own = {f: getattr(point, f, None) for f in OWN_FIELDS if hasattr(point, f)}
    return {**point.metadata, **{k: v for k, v in own.items() if v is not None}}


def hit(rank: int, point_id: object, score: float, payload: dict | None) -> Hit:
    """A search result from an engine's (id, score, payload)."""
    return Hit.found(StoredPoint.from_payload(point_id, payload), rank, score)
