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
from lookalike.records import Hit, Query, Result


def own_left_out(query: Query, options: QueryOptions | None, include_self: bool):
    """The options a query is searched with: a stored point grouped by a field leaves itself
    out in the engine, since left out after, its group would go missing (its best hit)."""
    if include_self or options is None or not options.group_by or query.point_id is None:
        return options
    return replace(options, exclude=(*options.exclude, query.point_id))


def split_own(
    query: Query, hits: list[Hit], k: int, resolve, include_self: bool, left_out: bool = False
) -> Result:
    """The query's result from k+1 hits: its own point (by id, or by file) found and, unless
    `include_self`, left out; the query takes the label stored with that point. `left_out`:
    the engine was asked to leave it out (own_left_out)."""
    own = next((h for h in hits if _is_own(query, h, resolve)), None)
    if left_out:
        return Result(query, hits[:k], True)
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
