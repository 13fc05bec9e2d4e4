"""What a query asks beyond "the nearest k": a filter on payload fields, a score cut-off, one
hit per group, examples to recommend from. Plain records every engine translates to its own
API; filters are Qdrant's own JSON filter syntax, checked here against the collection's fields.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from lookalike.errors import BadQuery

# Payload field types, as Qdrant names its payload indexes.
KEYWORD, INTEGER, FLOAT, BOOL = "keyword", "integer", "float", "bool"
NUMBERS = (INTEGER, FLOAT)
MIXED = "mixed"  # values of several types: filterable, but neither indexed nor type-checked
# How recommend scores a candidate against several examples (Qdrant's strategies).
STRATEGIES = ("best_score", "average_vector", "sum_scores")
DEFAULT_STRATEGY = "best_score"


@dataclass(frozen=True)
class QueryOptions:
    """Options of a search: `filter` (Qdrant's filter JSON), `min_score` (drop weaker hits),
    `group_by` (one best hit per value of this field), `exclude` (point ids never returned)."""

    filter: dict[str, Any] | None = None
    min_score: float | None = None
    group_by: str | None = None
    exclude: tuple[str, ...] = ()

    def with_label(self, label: int | None) -> QueryOptions:
        """This query, also keeping only candidates with `label`."""
        if label is None:
            return self
        only = {"key": "label", "match": {"value": label}}
        return QueryOptions(and_filters(self.filter, {"must": [only]}), *self._rest())

    def _rest(self) -> tuple:
        return self.min_score, self.group_by, self.exclude


class PointId(str):
    """A stored point's id given as an example: never read as a file name."""


@dataclass(frozen=True)
class Examples:
    """Recommend: candidates like the `positive` examples and unlike the `negative` ones.
    Each is a vector or a stored point's id (such points are never returned)."""

    positive: tuple[Any, ...]
    negative: tuple[Any, ...] = ()
    strategy: str = DEFAULT_STRATEGY

    def __post_init__(self) -> None:
        if not self.positive:
            raise BadQuery("recommend needs at least one positive example", field="like")
        if self.strategy not in STRATEGIES:
            raise BadQuery(
                f"strategy must be one of {', '.join(STRATEGIES)}, not {self.strategy!r}",
                field="strategy",
            )

    @property
    def ids(self) -> tuple[str, ...]:
        return tuple(e for e in (*self.positive, *self.negative) if isinstance(e, str))


def average_vector(positive: Sequence[np.ndarray], negative: Sequence[np.ndarray]) -> np.ndarray:
    """Qdrant's average_vector strategy: avg(positive) + avg(positive) - avg(negative)."""
    pos = np.mean(positive, axis=0)
    return pos + (pos - np.mean(negative, axis=0)) if len(negative) else pos


def and_filters(*filters: dict | None) -> dict | None:
    """One filter that all of `filters` must match."""
    present = [f for f in filters if f]
    if len(present) <= 1:
        return present[0] if present else None
    return {"must": present}


def value_type(value: Any) -> str | None:
    """The payload index type a value would need (a list: its elements'); None for null."""
    if isinstance(value, list):
        types = {value_type(v) for v in value} - {None}
        return types.pop() if len(types) == 1 else (MIXED if types else None)
    if isinstance(value, bool):
        return BOOL
    if isinstance(value, int):
        return INTEGER
    if isinstance(value, float):
        return FLOAT
    if isinstance(value, str):
        return KEYWORD
    return None if value is None else MIXED  # an object: no index of its own


def merge_types(have: Mapping[str, str], payloads: Iterable[Mapping[str, Any]]) -> dict[str, str]:
    """Field types seen in `have` and in `payloads` (integers and floats together: float)."""
    types = dict(have)
    for payload in payloads:
        for key, value in payload.items():
            seen, old = value_type(value), types.get(key)
            if seen is None or seen == old:
                continue
            if old is None:
                types[key] = seen
            else:
                types[key] = FLOAT if {old, seen} == {INTEGER, FLOAT} else MIXED
    return types


# FIELD OP VALUE; the field is everything before the first operator character.
WHERE = re.compile(r"^\s*(?P<field>[^=!<>\s][^=!<>]*?)\s*(?P<op>>=|<=|!=|=|>|<)\s*(?P<value>.*)$")
RANGE_KEYS = {">=": "gte", "<=": "lte", ">": "gt", "<": "lt"}


def parse_where(items: Iterable[str], types: Mapping[str, str]) -> dict | None:
    """`FIELD=VALUE` (VALUE,VALUE: any of them), `FIELD!=VALUE`, `FIELD>=X` (also <=, >, <)
    as one Qdrant filter, all of them ANDed; values typed as the field's stored values."""
    must, must_not = [], []
    for item in items:
        match = WHERE.match(item)
        if not match:
            raise BadQuery(
                f"--where {item!r} is not FIELD=VALUE, FIELD!=VALUE, FIELD>=X or FIELD<=X",
                field="where",
            )
        name, op, text = match["field"], match["op"], match["value"].strip()
        kind = field_type(name, types)
        if op in RANGE_KEYS:
            if kind not in NUMBERS:
                raise BadQuery(f"{name} holds {_kind(kind)}: {op} needs numbers", field="where")
            bound = _number(name, text, FLOAT)
            must.append({"key": payload_key(name, types), "range": {RANGE_KEYS[op]: bound}})
            continue
        values = [_typed(name, v.strip(), kind) for v in text.split(",")]
        condition = _equals(payload_key(name, types), values, kind)
        (must_not if op == "!=" else must).append(condition)
    if not must and not must_not:
        return None
    return {k: v for k, v in (("must", must), ("must_not", must_not)) if v}


def _equals(name: str, values: list, kind: str) -> dict:
    if kind == FLOAT:  # Qdrant matches text, integers and booleans; a float is a range
        ranges = [{"key": name, "range": {"gte": v, "lte": v}} for v in values]
        return ranges[0] if len(ranges) == 1 else {"should": ranges}
    if len(values) == 1:
        return {"key": name, "match": {"value": values[0]}}
    return {"key": name, "match": {"any": values}}


def _typed(name: str, text: str, kind: str) -> Any:
    if kind == KEYWORD:
        return text
    if kind == BOOL:
        if text.lower() not in ("true", "false"):
            raise BadQuery(f"{name} holds true/false values, not {text!r}", field="where")
        return text.lower() == "true"
    if kind in NUMBERS:
        return _number(name, text, kind)
    # A field of mixed values: the value as written, a number if it reads as one.
    try:
        return int(text)
    except ValueError:
        return text


def _number(name: str, text: str, kind: str) -> int | float:
    try:
        value = int(text) if kind == INTEGER else float(text)
    except ValueError:
        what = "whole numbers" if kind == INTEGER else "numbers"
        raise BadQuery(f"{name} holds {what}, not {text!r}", field="where") from None
    if not math.isfinite(value):
        raise BadQuery(f"{name}: {text!r} is not a finite number", field="where")
    return value


def _kind(kind: str) -> str:
    names = {KEYWORD: "text", BOOL: "true/false values", INTEGER: "whole numbers"}
    return {**names, FLOAT: "numbers", MIXED: "values of several types"}.get(kind, kind)


# A field name Qdrant's key syntax reads as it is; any other (a space, (), :, /, a tab: a
# spreadsheet's headers) is quoted, or Qdrant reads it as a path and refuses it.
PLAIN_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def payload_key(name: str, types: Mapping[str, str]) -> str:
    """`name` in Qdrant's key syntax: a stored field whose name is not plain is quoted; a
    nested path (`size.w`) is left as written."""
    if name not in types or PLAIN_KEY.match(name):
        return name
    if '"' in name:  # the key syntax has no escape for a quote
        raise BadQuery(
            f"field {name!r} has a double quote in its name, which Qdrant's filters cannot "
            "name; rename it in your metadata",
            field="where",
        )
    return f'"{name}"'


def field_type(name: str, types: Mapping[str, str]) -> str:
    """The type of a stored field (a nested key: its top-level field's); BadQuery naming the
    fields there are when no point has it."""
    if name in types:  # a field named as it is, even with a dot in its name
        return types[name]
    top = re.split(r"[.\[]", name, maxsplit=1)[0]
    if top in types:
        return types[name] if name in types else (MIXED if top != name else types[top])
    known = ", ".join(sorted(types)) or "none"
    raise BadQuery(f"no point has a field {name!r}; fields: {known}", field="where")


CONDITION_KEYS = {"key", "match", "range", "values_count", "is_empty", "is_null", "has_id"}
CONDITION_KEYS |= {"nested", "filter", "must", "should", "must_not", "min_should"}


@dataclass
class _Checker:
    types: Mapping[str, str]
    seen: list[str] = field(default_factory=list)

    def filter(self, f: Any, where: str) -> None:
        if not isinstance(f, dict):
            raise BadQuery(f"{where}: a filter is a JSON object, not {f!r}", field="filter")
        unknown = set(f) - {"must", "should", "must_not", "min_should"}
        if unknown:
            raise BadQuery(
                f"{where}: unknown part {sorted(unknown)[0]!r} (a filter has must, should, "
                "must_not, min_should)",
                field="filter",
            )
        for part in ("must", "should", "must_not"):
            conditions = f.get(part) or []
            for i, c in enumerate(conditions if isinstance(conditions, list) else [conditions]):
                self.condition(c, f"{where}.{part}[{i}]")
        if "min_should" in f:
            ms = f["min_should"]
            if not isinstance(ms, dict) or not isinstance(ms.get("conditions"), list):
                raise BadQuery(f"{where}.min_should needs a conditions list", field="filter")
            for i, c in enumerate(ms["conditions"]):
                self.condition(c, f"{where}.min_should.conditions[{i}]")

    def condition(self, c: Any, where: str) -> None:
        if not isinstance(c, dict) or not set(c) & CONDITION_KEYS:
            raise BadQuery(f"{where}: {c!r} is not a filter condition", field="filter")
        if set(c) & {"must", "should", "must_not", "min_should"}:
            return self.filter(c, where)
        if "has_id" in c:
            if not isinstance(c["has_id"], list):
                raise BadQuery(f"{where}: has_id takes a list of point ids", field="filter")
            return None
        for test in ("nested", "is_empty", "is_null"):
            if test in c:
                if not isinstance(c[test], dict):
                    raise BadQuery(f"{where}: {test} takes an object with a key", field="filter")
                self.condition({"key": c[test].get("key")}, where)  # its field exists
                c[test]["key"] = payload_key(c[test]["key"], self.types)
                return None
        key = c.get("key")
        if not isinstance(key, str) or not key:
            raise BadQuery(f"{where}: a condition needs a field name in 'key'", field="filter")
        kind = field_type(key, self.types)
        self.seen.append(key)
        self._match(c.get("match"), key, kind, where)
        if "range" in c:
            self._range(c["range"], key, kind, where)
        c["key"] = payload_key(key, self.types)  # as Qdrant's key syntax reads it
        return None

    def _range(self, bounds: Any, key: str, kind: str, where: str) -> None:
        if kind not in (*NUMBERS, MIXED):
            raise BadQuery(
                f"{where}: {key} holds {_kind(kind)}: a range needs numbers", field="filter"
            )
        ok = isinstance(bounds, dict) and set(bounds) <= set(RANGE_KEYS.values())
        numbers = ok and all(value_type(v) in NUMBERS or v is None for v in bounds.values())
        if not numbers:
            raise BadQuery(
                f"{where}: a range is an object of numbers gt, gte, lt, lte; not {bounds!r}",
                field="filter",
            )

    def _match(self, match: Any, key: str, kind: str, where: str) -> None:
        if match is None:
            return
        if not isinstance(match, dict):
            raise BadQuery(f"{where}: match is an object, not {match!r}", field="filter")
        for several in ("any", "except"):
            if several in match and not isinstance(match[several], list):
                raise BadQuery(f"{where}: match {several} takes a list", field="filter")
        values = match.get("value", match.get("any", match.get("except")))
        values = values if isinstance(values, list) else [values]
        for v in values if kind != MIXED and "text" not in match else ():
            seen = value_type(v)
            if seen not in (kind, None) and not (kind == FLOAT and seen == INTEGER):
                raise BadQuery(
                    f"{where}: {key} holds {_kind(kind)}; {v!r} can never match", field="filter"
                )


def check_filter(f: Any, types: Mapping[str, str]) -> list[str]:
    """BadQuery unless `f` is a filter on fields the collection has, with values of their
    types; returns the fields it names."""
    checker = _Checker(types)
    checker.filter(f, "filter")
    return checker.seen
