"""Queries as a user writes them (`--where price<=50`, Qdrant filter JSON, a score cut-off, a
field to group by) checked against a collection's fields and turned into `QueryOptions`."""

from __future__ import annotations

import json
import math
import os
import uuid
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from lookalike.errors import BadQuery, LookalikeError
from lookalike.query import (
    GEO,
    INTEGER,
    KEYWORD,
    LOCATION,
    MAX_FILTER_DEPTH,
    MIXED,
    WHERE,
    QueryOptions,
    check_filter,
    check_filter_size,
    field_type,
    near_condition,
    parse_where,
    payload_key,
    unnameable,
    unnameable_message,
)

if TYPE_CHECKING:
    from lookalike.store import Store


class QueryBuilder:
    """Builds checked Queries for one collection. The fields' types are read once; a field
    not among them is looked up again (a sync may have added it since)."""

    def __init__(self, store: Store, collection: str) -> None:
        self.store, self.collection = store, collection
        self._types: dict[str, str] | None = None

    def types(self, names: Iterable[str] = ()) -> dict[str, str]:
        tops = {_top(n) for n in names}
        if self._types is None or not tops <= set(self._types):
            self._types = self.store.field_types(self.collection, sorted(tops))
        return self._types

    def duplicate_threshold(self) -> float:
        """`min_score="dup"`: the collection's calibrated near-duplicate threshold (0.97
        before an ingest has measured one)."""
        return _duplicate_threshold(self.store, self.collection)

    def _origin(self, name: str) -> str | None:
        """Where a field comes from ("FILE line N" of the collection's image folder), for a
        message asking to rename it."""
        from lookalike.source.metadata import field_origin  # reads files: for messages only

        try:
            meta = self.store.info(self.collection).meta
        except LookalikeError:
            return None
        return field_origin(meta.dataset, name) if meta else None

    def _min_score(self, text: str) -> float:
        if text.strip().lower() == "dup":
            return self.duplicate_threshold()
        try:
            return float(text)
        except ValueError:
            reason = f"min_score is a number or 'dup', not {text!r}"
            raise BadQuery(reason, field="min_score") from None

    def build(
        self,
        where: Iterable[str] = (),
        filter: str | Mapping | None = None,
        min_score: float | str | None = None,
        group_by: str | None = None,
        near: str | tuple[float, float] | None = None,
        within: str | float | None = None,
    ) -> QueryOptions:
        """QueryOptions; BadQuery for a field no point has, a value of the wrong type, or a
        filter that is not Qdrant's filter JSON. `near` (LAT,LON) and `within` (5km): only
        photos taken that close (their `location` field)."""
        where = [w for w in where if w and w.strip()]
        flt = _parsed(filter)
        geo = near_condition(near, within)
        names = [m["field"] for m in map(WHERE.match, where) if m]
        names += _keys(flt) + ([group_by] if group_by else []) + ([LOCATION] if geo else [])
        types = self.types(names) if names else {}  # no field named: no store call
        for name in names:
            if name in types and unnameable(name):
                option = "group_by" if name == group_by else "where"
                raise BadQuery(unnameable_message(name, self._origin(name)), field=option)
        if geo:
            _check_location(types)
        geo = {"must": [geo]} if geo else None
        conditions = [f for f in (parse_where(where, types), flt, geo) if f]
        if flt is not None:
            check_filter(flt, types)
        if group_by:
            kind = field_type(group_by, types)
            if kind not in (KEYWORD, INTEGER):
                raise BadQuery(
                    f"group by a field of text or whole numbers; {group_by} holds {kind} values",
                    field="group_by",
                )
        if isinstance(min_score, str):
            min_score = self._min_score(min_score)
        if min_score is not None and not math.isfinite(min_score):
            raise BadQuery(f"min_score must be a number, not {min_score}", field="min_score")
        combined = conditions[0] if len(conditions) == 1 else None
        if len(conditions) > 1:
            combined = {"must": conditions}
        path = payload_key(group_by, types) if group_by else None  # a stored name: quoted
        return QueryOptions(combined, min_score, group_by or None, group_path=path)


def _duplicate_threshold(store: Store, collection: str) -> float:
    from lookalike.search.duplicates import FALLBACK_THRESHOLD, calibrated_threshold

    found = calibrated_threshold(store, collection)
    return FALLBACK_THRESHOLD if found is None else found


def _check_location(types: Mapping[str, str]) -> None:
    kind = types.get(LOCATION)
    if kind is None:
        raise BadQuery(
            f"no image has a {LOCATION!r} (GPS position from EXIF, or your own "
            f'{{"lon": .., "lat": ..}} field): --near has nothing to compare',
            field="near",
        )
    if kind not in (GEO, MIXED):
        raise BadQuery(
            f'{LOCATION} holds {kind} values, not places ({{"lon": .., "lat": ..}}): '
            "--near cannot use it",
            field="near",
        )


def _parsed(filter: str | Mapping | None) -> dict | None:
    if filter is None or (isinstance(filter, str) and not filter.strip()):
        return None
    if isinstance(filter, str):
        try:
            filter = json.loads(filter)
        except json.JSONDecodeError as e:
            raise BadQuery(f"the filter is not JSON: {e}", field="filter") from None
        except RecursionError:
            raise BadQuery(
                f"the filter nests more than {MAX_FILTER_DEPTH} levels deep", field="filter"
            ) from None
    if not isinstance(filter, Mapping):
        raise BadQuery(f"a filter is a JSON object, not {filter!r}", field="filter")
    check_filter_size(filter)
    return dict(filter)


def _keys(obj: Any) -> list[str]:
    """The field names a filter's conditions use."""
    if isinstance(obj, list):
        return [k for item in obj for k in _keys(item)]
    if not isinstance(obj, dict):
        return []
    own = [obj["key"]] if isinstance(obj.get("key"), str) else []
    return own + [k for v in obj.values() for k in _keys(v)]


def _top(name: str) -> str:
    return name.split(".", 1)[0].split("[", 1)[0]


def is_point_id(text: str) -> bool:
    """A stored point's id (a uuid) rather than a file or SPLIT:ROW."""
    if os.path.exists(text):
        return False
    try:
        uuid.UUID(text)
    except ValueError:
        return False
    return True
