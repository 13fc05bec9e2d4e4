"""Queries for the edge engine: Qdrant's JSON filter syntax as qdrant-edge objects (edge takes
no JSON), requests, recommend queries and grouping, which edge lacks. Beside edge.py, the only
module that imports qdrant_edge."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

import numpy as np
import qdrant_edge as qe

from lookalike.errors import BadQuery
from lookalike.index import SearchSettings
from lookalike.query import (
    Examples,
    QueryOptions,
    and_filters,
    average_vector,
    check_budget,
)
from lookalike.records import Hit
from lookalike.store.base import hit

FIELD_TYPES = {
    qe.PayloadSchemaType.Keyword: "keyword",
    qe.PayloadSchemaType.Integer: "integer",
    qe.PayloadSchemaType.Float: "float",
    qe.PayloadSchemaType.Bool: "bool",
    qe.PayloadSchemaType.Datetime: "datetime",
    qe.PayloadSchemaType.Geo: "geo",
}
PARTS = ("must", "should", "must_not")


def edge_filter(f: dict[str, Any] | None) -> qe.Filter | None:
    """The edge Filter for a Qdrant JSON filter (None for none); BadQuery for what edge cannot
    express or values of the wrong kind."""
    if not f:
        return None
    try:
        return _filter(f)
    except (TypeError, ValueError, KeyError, AttributeError, OverflowError) as e:
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise BadQuery(f"filter: {reason}", field="filter") from e


def _filter(f: dict) -> qe.Filter:
    parts = {p: [_condition(c) for c in _listed(f.get(p))] or None for p in PARTS}
    ms = f.get("min_should")
    if ms:
        conditions = [_condition(c) for c in ms["conditions"]]
        parts["min_should"] = qe.MinShould(conditions, int(ms["min_count"]))
    return qe.Filter(**parts)


def _listed(conditions: Any) -> list:
    if conditions is None:
        return []
    return conditions if isinstance(conditions, list) else [conditions]


def _condition(c: dict):
    if any(p in c for p in (*PARTS, "min_should")):
        return _filter(c)
    if "has_id" in c:
        return qe.HasIdCondition(set(map(str, c["has_id"])))
    if "is_empty" in c:
        return qe.IsEmptyCondition(c["is_empty"]["key"])
    if "is_null" in c:
        return qe.IsNullCondition(c["is_null"]["key"])
    if "nested" in c:
        return qe.NestedCondition(c["nested"]["key"], _filter(c["nested"]["filter"]))
    unknown = set(c) - {"key", "match", "range", "values_count", *GEO}
    if unknown:
        raise BadQuery(
            f"the embedded engine cannot filter with {sorted(unknown)[0]!r}", field="filter"
        )
    return qe.FieldCondition(
        c["key"],
        match=_match(c.get("match")),
        range=_range(c["range"]) if c.get("range") else None,
        **{g: _geo(g, c[g]) for g in GEO if g in c},
        values_count=qe.ValuesCount(**c["values_count"]) if c.get("values_count") else None,
    )


GEO = ("geo_radius", "geo_bounding_box")


def _range(bounds: dict):
    """Numbers: a float range; RFC 3339 text: a datetime range."""
    if any(isinstance(v, str) for v in bounds.values()):
        return qe.RangeDateTime(**bounds)
    return qe.RangeFloat(**bounds)


def _point(p: dict) -> qe.GeoPoint:
    return qe.GeoPoint(lon=float(p["lon"]), lat=float(p["lat"]))


def _geo(kind: str, g: dict):
    if kind == "geo_radius":
        return qe.GeoRadius(_point(g["center"]), float(g["radius"]))
    return qe.GeoBoundingBox(_point(g["top_left"]), _point(g["bottom_right"]))


def _match(m: dict | None):
    if m is None:
        return None
    values = m.get("value", m.get("any", m.get("except")))
    if any(isinstance(v, bool) for v in (values if isinstance(values, list) else [values])):
        # qdrant-edge 0.9 reads True as the integer 1: it would match nothing, silently.
        raise BadQuery(
            "the embedded edge engine cannot match true/false values yet; use local mode "
            "or a Qdrant server for this filter",
            field="filter",
        )
    if "value" in m:
        return qe.MatchValue(m["value"])
    if "any" in m:
        return qe.MatchAny(list(m["any"]))
    if "except" in m:
        return qe.MatchExcept(list(m["except"]))
    if "text" in m:
        return qe.MatchText(m["text"])
    if "phrase" in m:
        return qe.MatchPhrase(m["phrase"])
    raise BadQuery(f"the embedded engine cannot match with {sorted(m)}", field="filter")


# A grouped search asks for this many points per group still missing, per round, doubled
# after each round that finds no new group, up to MAX_GROUP_LIMIT.
GROUP_ROUND = 4
MAX_GROUP_LIMIT = 10_000


def search_params(params: SearchSettings | None) -> qe.SearchParams | None:
    if params is None or params.is_default:
        return None
    quantization = None
    if params.oversampling is not None or not params.rescore:
        quantization = qe.QuantizationSearchParams(
            rescore=params.rescore, oversampling=params.oversampling
        )
    return qe.SearchParams(hnsw_ef=params.hnsw_ef, exact=params.exact, quantization=quantization)


def request(
    query, limit: int, params: SearchSettings | None, options: QueryOptions
) -> qe.QueryRequest:
    exclude = {"must_not": [{"has_id": list(options.exclude)}]} if options.exclude else None
    return qe.QueryRequest(
        limit=limit,
        query=query,
        filter=edge_filter(and_filters(options.filter, exclude)),
        score_threshold=options.min_score,
        params=search_params(params),
        with_payload=True,
    )


def hits(found) -> list[Hit]:
    return [hit(rank, p.id, p.score, p.payload) for rank, p in enumerate(found, 1)]


def recommend_query(examples: Examples, stored: dict[str, np.ndarray]) -> qe.Query:
    """The examples' query (ids resolved through `stored`); average_vector, which edge lacks,
    is Qdrant's own formula over unit vectors."""
    positive, negative = (
        [_unit(stored[e] if isinstance(e, str) else e) for e in side]
        for side in (examples.positive, examples.negative)
    )
    if examples.strategy == "average_vector":
        return qe.Query.Nearest(average_vector(positive, negative).tolist())
    reco = qe.RecommendQuery([v.tolist() for v in positive], [v.tolist() for v in negative])
    best = examples.strategy == "best_score"
    return (qe.Query.RecommendBestScore if best else qe.Query.RecommendSumScores)(reco)


def grouped(search: Callable[..., list], k: int, options: QueryOptions) -> list:
    """Qdrant's grouping (one best point per value of options.group_by) for edge, which has
    none: search, give each point to the group of each of its values (a list field: several),
    search again without what is done, until there are k groups or no more points.

    Every round leaves out every point it returned: one with a single value by that value
    (its group is found), any other by its id. So each round brings points never seen, in
    score order, and the loop ends; a round that finds no new group asks for twice as many.
    A round that comes back short of its limit on the graph index (HNSW can miss points
    behind a strict filter, e.g. many identical vectors) is asked again exactly before the
    search counts as exhausted. `search(limit, options, exact)` runs one round; the query's
    time budget is checked between rounds."""
    field, found, best, seen = options.group_by, {}, [], []
    key = options.grouped_by_key()
    has_field = {"must_not": [{"is_empty": {"key": key}}]}
    stale, exact = 0, False
    while len(found) < k:
        check_budget("a grouped search")
        limit = min(GROUP_ROUND * (k - len(found)) * 2**stale, MAX_GROUP_LIMIT)
        flt = and_filters(options.filter, has_field, _done(key, found), _not_ids(seen))
        points = search(limit, replace(options, filter=flt), exact)
        before = len(found)
        for p in points:
            values, single = group_values(p.payload, field)
            if not single:
                seen.append(str(p.id))
            fresh = [v for v in values if _key(v) not in found][: k - len(found)]
            for v in fresh:
                found[_key(v)] = v
            if fresh:
                best.append(p)
        if len(points) < limit:
            if exact:
                break
            exact = True  # short: the graph may have missed some; the scan cannot
        stale = 0 if len(found) > before else stale + 1
    return best


def group_values(payload: dict | None, field: str) -> tuple[list, bool]:
    """The groups a point belongs to, as Qdrant forms them: each text or whole-number value
    of the field (a list: each element); none at all if any value is of another type. And
    whether the point holds exactly one value (a value filter can then leave it out)."""
    value = _value(payload or {}, field)
    if value is None:
        return [], False
    values = value if isinstance(value, list) else [value]
    if not values or any(type(v) not in (str, int) for v in values):
        return [], False
    return list(dict.fromkeys(values)), len(values) == 1


def _value(payload: dict, field: str):
    """A payload's value at `field`, a dotted path into objects ("shop.sku")."""
    if field in payload:
        return payload[field]
    value = payload
    for part in field.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


def _key(value) -> tuple:
    return (type(value), value)


def _done(field: str, found: dict) -> dict | None:
    """Leave out the points holding one value whose group is found (a point with several
    values may still have a group to give; those are left out by id once seen)."""
    is_found = _not_in(field, set(found.values()))
    if is_found is None:
        return None
    any_found = {"should": is_found["must_not"]}
    return {"must_not": [{"must": [any_found, {"key": field, "values_count": {"lt": 2}}]}]}


def _not_ids(ids: list[str]) -> dict | None:
    return {"must_not": [{"has_id": ids}]} if ids else None


def _unit(vector) -> np.ndarray:
    """A vector as a cosine collection stores it (Qdrant normalises on the way in)."""
    v = np.asarray(vector, np.float32)
    return v / (np.linalg.norm(v) or 1.0)


def _not_in(field: str, values: set) -> dict | None:
    """A filter leaving out the points whose `field` is one of `values` (edge matches text
    and integers in separate lists)."""
    kinds = [sorted(v for v in values if isinstance(v, t)) for t in (str, int)]
    conditions = [{"key": field, "match": {"any": vs}} for vs in kinds if vs]
    return {"must_not": conditions} if conditions else None
