"""A collection as a header (what it was built with) and pages of points (ids, whole payloads,
vectors): read from a store page by page, and loaded into another the same way, so that a
collection of any size passes through a page's worth of memory."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from lookalike.errors import BadQuery
from lookalike.index import IndexSettings
from lookalike.query import merge_types
from lookalike.records import CollectionMeta, Tracked
from lookalike.store import Store

FORMAT = 1  # of the header; a reader refuses a newer one
PAGE = 1024  # points per page read, written and loaded


@dataclass(frozen=True)
class Header:
    """What a collection was built with (`meta`: model, pooling, dataset, labels), how many
    points it holds, its index settings and the types of its payload fields."""

    collection: str
    meta: CollectionMeta
    points: int
    index: IndexSettings | None = None
    fields: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(
            {
                "format": FORMAT,
                "collection": self.collection,
                "meta": self.meta.to_dict(),
                "points": self.points,
                "index": self.index.to_dict() if self.index else None,
                "fields": self.fields,
            },
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, text: str | bytes, where: str) -> Header:
        try:
            d = json.loads(text)
            if d.get("format", 0) > FORMAT:
                raise BadQuery(
                    f"{where} was written by a newer lookalike (format {d['format']}): "
                    "upgrade lookalike to read it",
                    field="file",
                )
            return cls(
                collection=d["collection"],
                meta=CollectionMeta.from_dict(d["meta"]),
                points=int(d["points"]),
                index=IndexSettings.from_dict(d["index"]) if d.get("index") else None,
                fields=dict(d.get("fields") or {}),
            )
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            raise BadQuery(
                f"{where} holds no readable collection record ({e})", field="file"
            ) from e


@dataclass(frozen=True)
class Page:
    points: list[Tracked]
    vectors: np.ndarray  # (len(points), dim) float32


@dataclass(frozen=True)
class LoadReport:
    collection: str
    points: int
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "collection": self.collection,
            "points": self.points,
            "seconds": round(self.seconds, 3),
        }


def read(store: Store, name: str, page: int = PAGE) -> tuple[Header, Iterator[Page]]:
    """The collection's header, and its points page by page (in id order)."""
    info = store.info(name)
    if info.meta is None:
        raise BadQuery(
            f"collection {name!r} was not built by lookalike: no record to carry",
            field="collection",
        )
    header = Header(name, info.meta, info.points, info.index, store.field_types(name))
    return header, _pages(store, name, page)


def _pages(store: Store, name: str, size: int) -> Iterator[Page]:
    offset = None
    while True:
        points, vectors, offset = store.read_points(name, size, offset)
        if points:
            yield Page(points, vectors)
        if offset is None:
            return


class _Point:
    """A stored point as an engine's upsert takes it (an id and a payload)."""

    __slots__ = ("id", "_payload")

    def __init__(self, point: Tracked) -> None:
        self.id, self._payload = point.id, point.payload

    def payload(self) -> dict:
        return self._payload


def load(
    store: Store,
    name: str,
    header: Header,
    pages: Iterable[Page],
    *,
    index: IndexSettings | None = None,
    on_progress: Callable[[int], None] | None = None,
) -> LoadReport:
    """Load the pages into collection `name` of `store`: created for the header's record (with
    `index`, else the header's settings), or an existing one built the same way (model,
    pooling, size, dataset; else ModelMismatch). Payload indexes are made first, and a server
    builds its graph once, after the load."""
    import time

    started = time.perf_counter()
    store.prepare(name, header.meta, index=index or header.index)
    store.index_fields(name, header.fields)
    loaded, types = 0, {}
    with store.bulk_load(name):
        for page in pages:
            if page.vectors.shape[1:] != (header.meta.dim,):
                raise BadQuery(
                    f"{len(page.points)} points hold {page.vectors.shape[-1]}-d vectors, and the "
                    f"record says {header.meta.dim}-d",
                    field="file",
                )
            store.upsert(name, [_Point(p) for p in page.points], page.vectors)
            types = merge_types(types, (p.payload for p in page.points))
            loaded += len(page.points)
            if on_progress:
                on_progress(len(page.points))
    store.index_fields(name, {k: v for k, v in types.items() if k not in header.fields})
    store.finish(name)
    return LoadReport(name, loaded, time.perf_counter() - started)
