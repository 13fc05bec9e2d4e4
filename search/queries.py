"""A query as the searcher understood it, and leaving its own point out of its results.

A query that is one of the collection's own images (SPLIT:ROW of a stored split, a clicked
result, or a file that was ingested) would be its own first hit at score 1.0, which answers
nothing; eval never counts it either. So by default that point is left out, and the result
says so.
"""

from __future__ import annotations

import os
from dataclasses import replace

from lookalike.query import QueryOptions
from lookalike.records import Hit, Query, Result, StoredPoint


def split_own(query: Query, hits: list[Hit], k: int, resolve, include_self: bool) -> Result:
    """The query's result from k+1 hits: its own point (by id, or by file) found and, unless
    `include_self`, left out; the query takes the label stored with that point."""
    own = next((h for h in hits if _is_own(query, h, resolve)), None)
    if own is not None and query.label_name is None:
        query = replace(query, label=own.label, label_name=own.label_name)
    if own is None or include_self:
        return Result(query, hits[:k])
    kept = [h for h in hits if h.id != own.id][:k]
    return Result(query, [replace(h, rank=i) for i, h in enumerate(kept, 1)], True)


def _is_own(query: Query, hit: Hit, resolve) -> bool:
    if query.point_id is not None:
        return hit.id == query.point_id
    if query.path is None or not hit.path:
        return False
    found = resolve(hit)
    return found is not None and os.path.realpath(found) == query.path


def own_point(query: Query, store, collection: str, resolve, root: str | None) -> str | None:
    """The id of the query's own stored point, found before searching (a grouped search must
    leave it out before grouping, or its group goes with it): by id, or by the stored path
    that names the query's file under the collection's folder `root` (never opened)."""
    if query.point_id is not None:
        return query.point_id
    if query.path is None:
        return None
    paths = [query.path]
    if root and query.path.startswith(os.path.realpath(root) + os.sep):
        paths.append(os.path.relpath(query.path, os.path.realpath(root)))
    where = {"must": [{"key": "path", "match": {"any": paths}}]}
    points, _, _ = store.scroll(collection, 16, where=where)
    own = next((p for p in points if _resolves_to(p, query.path, resolve)), None)
    return None if own is None else own.id


def _resolves_to(point: StoredPoint, path: str, resolve) -> bool:
    found = resolve(point)
    return found is not None and os.path.realpath(found) == path


def grouped_options(
    query: Query, options: QueryOptions | None, own: str | None
) -> QueryOptions | None:
    """A grouped query's options leaving its own point out (the grouping never sees it)."""
    if options is None or not options.group_by or own is None:
        return options
    return replace(options, exclude=(*options.exclude, own))


def needs_own(options: QueryOptions | None, include_self: bool) -> bool:
    """Whether the own point must be found before the search: a grouped query."""
    return bool(options is not None and options.group_by and not include_self)


def own_result(query: Query, hits: list[Hit], k: int, own: StoredPoint | None) -> Result:
    """The result of a query whose own point `own` was left out before the search."""
    if own is not None and query.label_name is None:
        query = replace(query, label=own.label, label_name=own.label_name)
    return Result(query, hits[:k], own is not None)
