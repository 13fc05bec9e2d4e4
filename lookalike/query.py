"""What a query asks beyond "the nearest k": a filter on payload fields, a score cut-off, one
hit per group, examples to recommend from. Plain records every engine translates to its own
API; filters are Qdrant's own JSON filter syntax, checked here against the collection's fields.
"""

from __future__ import annotations

import contextlib
import datetime
import math
import re
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from lookalike.errors import BadQuery, QueryTimeout

if TYPE_CHECKING:  # numpy is loaded where vectors are: the CLI's options import this module
    import numpy as np

# Payload field types, as Qdrant names its payload indexes.
KEYWORD, INTEGER, FLOAT, BOOL = "keyword", "integer", "float", "bool"
DATETIME, GEO = "datetime", "geo"  # RFC 3339 text; a {"lon": .., "lat": ..} point
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
    # group_by in Qdrant's key syntax as the builder found it among the stored fields (a
    # field named "No." is quoted; a path into an object, "shop.id", is not). None: guessed
    # from the name alone (`group_key`).
    group_path: str | None = None

    def grouped_by_key(self) -> str:
        """The key the engines group by."""
        return self.group_path or group_key(self.group_by or "")

    def with_label(self, label: int | None) -> QueryOptions:
        """This query, also keeping only candidates with `label`."""
        if label is None:
            return self
        only = {"key": "label", "match": {"value": label}}
        return QueryOptions(and_filters(self.filter, {"must": [only]}), *self._rest())

    def _rest(self) -> tuple:
        return self.min_score, self.group_by, self.exclude, self.group_path


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


def is_nearest_example(examples: Examples) -> bool:
    """best_score with positive examples only: a candidate's score is its cosine similarity to
    the nearest example (the engines' sigmoid scaling of it is undone: `cosine_score`)."""
    return examples.strategy == "best_score" and not examples.negative


def check_min_score(examples: Examples, min_score: float | None) -> None:
    """BadQuery for a score cut-off on a scale that is not cosine similarity: best_score with
    negative examples (Qdrant's sigmoid-scaled, signed score) and sum_scores of several
    examples (a sum of similarities)."""
    if min_score is None:
        return
    if examples.strategy == "best_score" and examples.negative:
        raise BadQuery(
            "a minimum score compares cosine similarities, but with negative examples "
            "best_score gives Qdrant's sigmoid-scaled score (see docs/queries.md); leave the "
            "minimum score out, or use the average_vector strategy",
            field="min_score",
        )
    if examples.strategy == "sum_scores" and len(examples.positive) + len(examples.negative) > 1:
        raise BadQuery(
            "a minimum score compares cosine similarities, but sum_scores adds up the "
            "similarities to every example; leave the minimum score out, or use the "
            "best_score or average_vector strategy",
            field="min_score",
        )


def engine_min_score(examples: Examples, min_score: float | None) -> float | None:
    """The cut-off to ask an engine for, on the scale the engine scores with."""
    if min_score is None or not is_nearest_example(examples):
        return min_score
    return 0.5 * (min_score / (1 + abs(min_score)) + 1)  # Qdrant's scaled fast sigmoid


def cosine_score(examples: Examples, score: float) -> float:
    """A recommend score as lookalike gives it: for positive examples only with best_score,
    the engines' sigmoid scaling 0.5 * (s / (1 + |s|) + 1) undone, so it is the cosine
    similarity to the nearest example, the number a plain search gives."""
    if not is_nearest_example(examples):
        return score
    y = 2.0 * score - 1.0
    if math.isnan(y) or abs(y) < 1:
        return y / (1.0 - abs(y))
    return math.copysign(1.0, y)


def average_vector(positive: Sequence[np.ndarray], negative: Sequence[np.ndarray]) -> np.ndarray:
    """Qdrant's average_vector strategy: avg(positive) + avg(positive) - avg(negative)."""
    import numpy as np

    pos = np.mean(positive, axis=0)
    return pos + (pos - np.mean(negative, axis=0)) if len(negative) else pos


_budget = threading.local()  # the deadline of the query this thread is answering


@contextlib.contextmanager
def time_budget(seconds: float | None, budget: float | None = None) -> Iterator[None]:
    """Queries run in this block (on this thread) stop with QueryTimeout once `seconds` have
    passed (what is left of a `budget` given when the query arrived): every loop that asks
    an engine again and again checks it (`check_budget`)."""
    before = getattr(_budget, "deadline", None)
    total = seconds if budget is None else budget
    _budget.deadline = None if seconds is None else (time.monotonic() + seconds, total)
    try:
        yield
    finally:
        _budget.deadline = before


def check_budget(what: str = "the query") -> None:
    """QueryTimeout if this thread's query has run past its time budget."""
    deadline = getattr(_budget, "deadline", None)
    if deadline is not None and time.monotonic() > deadline[0]:
        raise QueryTimeout(deadline[1], what)


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
        return DATETIME if DATETIME_TEXT.match(value) else KEYWORD
    if isinstance(value, dict) and set(value) == {"lon", "lat"}:
        return GEO if all(value_type(v) in NUMBERS for v in value.values()) else MIXED
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
            elif {old, seen} == {KEYWORD, DATETIME}:  # some text is not a date: all text
                types[key] = KEYWORD
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
        if kind == GEO:
            raise BadQuery(
                f"{name} holds places: filter by distance with --near LAT,LON --within 5km",
                field="where",
            )
        if kind == DATETIME:
            (must_not if op == "!=" else must).append(datetime_condition(name, op, text))
            continue
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
    names |= {DATETIME: "dates and times", GEO: "places (lon, lat)"}
    return {**names, FLOAT: "numbers", MIXED: "values of several types"}.get(kind, kind)


# A field name Qdrant's key syntax reads as it is; any other (a space, (), :, /, a tab: a
# spreadsheet's headers) is quoted, or Qdrant reads it as a path and refuses it.
PLAIN_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def payload_key(name: str, types: Mapping[str, str]) -> str:
    """`name` in Qdrant's key syntax: a stored field whose name is not plain is quoted; a
    nested path (`size.w`) is left as written."""
    if name not in types or PLAIN_KEY.match(name):
        return name
    return quoted_key(name)


def group_key(name: str) -> str:
    """A --group-by field in Qdrant's key syntax: a plain name, or a dotted path into objects
    (`shop.id`), as it is; any other name (a spreadsheet header, "Product Name") quoted."""
    if PLAIN_KEY.match(name) or (re.fullmatch(r"[\w.\[\]]+", name) and "." in name):
        return name
    return quoted_key(name, "group_by")


def quoted_key(name: str, option: str = "where") -> str:
    """A field name quoted in Qdrant's key syntax; BadQuery for one it cannot carry."""
    if unnameable(name):
        raise BadQuery(unnameable_message(name), field=option)
    return f'"{name}"'


def unnameable(name: str) -> str | None:
    """What in a field's name Qdrant's key syntax cannot carry, on any engine: a quoted key
    runs to the next double quote and has no escapes, and edge and a server refuse a
    backslash in it. None: the name can be quoted."""
    if '"' in name:
        return "a double quote"
    return "a backslash" if "\\" in name else None


def unnameable_message(name: str, origin: str | None = None) -> str:
    """Why --where, --filter and --group-by cannot name this field, and what to do: rename it
    where it comes from (`origin`: "FILE line N", when known)."""
    where = f" ({origin})" if origin else ""
    there = "there" if origin else "in your metadata"
    return (
        f"field {name!r}{where} has {unnameable(name)} in its name, which Qdrant's key syntax "
        f"cannot carry (it has no escapes): its values are stored and shown, but a filter or "
        f"--group-by cannot name it; rename it {there} and sync again"
    )


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


# A filter's size: a person's filter is a few conditions a few levels deep; more is a mistake
# or an attack (a filter 260 deep broke Python's recursion, one of 230k conditions took GBs).
MAX_FILTER_DEPTH = 32
MAX_FILTER_PARTS = 5_000


def check_filter_size(f: Any) -> None:
    """BadQuery for a filter nested deeper than MAX_FILTER_DEPTH or with more than
    MAX_FILTER_PARTS objects, lists and values; walks it without recursion (a deep one must
    not fail on the walk itself)."""
    stack, parts = [(f, 1)], 0
    while stack:
        node, depth = stack.pop()
        parts += 1
        if depth > MAX_FILTER_DEPTH:
            raise BadQuery(
                f"the filter nests more than {MAX_FILTER_DEPTH} levels deep", field="filter"
            )
        if parts > MAX_FILTER_PARTS:
            raise BadQuery(
                f"the filter has more than {MAX_FILTER_PARTS} parts; match many values with "
                'one condition ({"match": {"any": [...]}})',
                field="filter",
            )
        children = (
            node.values() if isinstance(node, dict) else node if isinstance(node, list) else ()
        )
        stack.extend((c, depth + 1) for c in children)


CONDITION_KEYS = {"key", "match", "range", "values_count", "is_empty", "is_null", "has_id"}
CONDITION_KEYS |= {"nested", "filter", "must", "should", "must_not", "min_should"}
CONDITION_KEYS |= {"geo_radius", "geo_bounding_box", "geo_polygon"}


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
        if kind == DATETIME or (kind == MIXED and _datetimes(bounds)):
            if not _datetimes(bounds):
                raise BadQuery(
                    f"{where}: {key} holds dates and times: a range is an object of RFC 3339 "
                    f"times gt, gte, lt, lte; not {bounds!r}",
                    field="filter",
                )
            return
        if kind not in (*NUMBERS, MIXED):
            raise BadQuery(
                f"{where}: {key} holds {_kind(kind)}: a range needs numbers", field="filter"
            )
        ok = isinstance(bounds, dict) and set(bounds) <= set(RANGE_KEYS.values()) and bounds
        numbers = ok and all(value_type(v) in NUMBERS for v in bounds.values())
        if not numbers:
            raise BadQuery(
                f"{where}: a range is an object of numbers gt, gte, lt, lte; not {bounds!r}",
                field="filter",
            )
        if not all(math.isfinite(v) for v in bounds.values()):
            raise BadQuery(
                f"{where}: a range's bounds are finite numbers; not {bounds!r}", field="filter"
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
            fits = (kind, seen) in ((FLOAT, INTEGER), (DATETIME, KEYWORD))
            if seen not in (kind, None) and not fits:
                raise BadQuery(
                    f"{where}: {key} holds {_kind(kind)}; {v!r} can never match", field="filter"
                )


def _datetimes(bounds: Any) -> bool:
    """A range of RFC 3339 times (Qdrant's datetime range)."""
    ok = isinstance(bounds, dict) and bool(bounds) and set(bounds) <= set(RANGE_KEYS.values())
    values = [v for v in bounds.values() if v is not None] if ok else []
    return ok and all(isinstance(v, str) and DATETIME_TEXT.match(v) for v in values)


def check_filter(f: Any, types: Mapping[str, str]) -> list[str]:
    """BadQuery unless `f` is a filter on fields the collection has, with values of their
    types; returns the fields it names."""
    checker = _Checker(types)
    checker.filter(f, "filter")
    return checker.seen


# A date and time as Qdrant's datetime index reads it (RFC 3339, or without a zone: UTC).
DATETIME_TEXT = re.compile(
    r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})?$", re.IGNORECASE
)
DATE_TEXT = re.compile(r"^(\d{4})-(\d{1,2})(?:-(\d{1,2}))?$")


def _when(name: str, text: str) -> tuple[datetime.datetime, datetime.datetime | None]:
    """A date (the whole day: its start and the next day's), a month (2024-06) or a date and
    time (that instant, no end), as naive UTC datetimes; BadQuery for anything else."""
    match = DATE_TEXT.match(text)
    try:
        if match:
            year, month, day = int(match[1]), int(match[2]), match[3]
            start = datetime.datetime(year, month, int(day) if day else 1)
            if day:
                return start, start + datetime.timedelta(days=1)
            return start, datetime.datetime(year + month // 12, month % 12 + 1, 1)
        if DATETIME_TEXT.match(text):
            when = datetime.datetime.fromisoformat(text.replace("z", "Z").replace("Z", "+00:00"))
            if when.tzinfo is not None:
                when = when.astimezone(datetime.timezone.utc).replace(tzinfo=None)
            return when, None
    except ValueError:
        pass
    raise BadQuery(
        f"{name} holds dates and times: {text!r} is not a date such as 2024-06-01, a month "
        "such as 2024-06, or a time such as 2024-06-01T14:30",
        field="where",
    )


def _rfc3339(when: datetime.datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%S") + (
        f".{when.microsecond:06d}Z" if when.microsecond else "Z"
    )


def datetime_condition(name: str, op: str, text: str) -> dict:
    """`taken>=2024-06-01` (from the start of that day), `taken<2024-07` (before July),
    `taken=2024-06-01` (any time that day) as a Qdrant datetime range condition."""
    start, end = _when(name, text)
    if end is None:  # an instant: the bound is that time
        bounds = {RANGE_KEYS[op]: _rfc3339(start)} if op in RANGE_KEYS else None
        bounds = bounds or {"gte": _rfc3339(start), "lte": _rfc3339(start)}
    else:  # a day or a month: a span
        first, after = _rfc3339(start), _rfc3339(end)
        bounds = {
            ">=": {"gte": first},
            ">": {"gte": after},
            "<": {"lt": first},
            "<=": {"lt": after},
        }.get(op, {"gte": first, "lt": after})
    return {"key": name, "range": bounds}


EARTH_RADIUS_M = 6_371_008.8
UNITS = {"m": 1.0, "km": 1000.0, "mi": 1609.344, "ft": 0.3048}
DISTANCE = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*(m|km|mi|ft)?\s*$", re.IGNORECASE)
# The payload field where a photo's place is stored (source/exif.py writes it).
LOCATION = "location"


def parse_near(near: str | Sequence[float]) -> tuple[float, float]:
    """ "LAT,LON" (decimal degrees) or a (lat, lon) pair, checked."""
    parts = near.split(",") if isinstance(near, str) else list(near)
    try:
        lat, lon = (float(p) for p in parts)
    except (TypeError, ValueError):
        raise BadQuery(
            f"--near takes LAT,LON in decimal degrees (e.g. 46.55,7.98), not {near!r}",
            field="near",
        ) from None
    if not (-90 <= lat <= 90 and -180 <= lon <= 180):
        raise BadQuery(
            f"--near {lat},{lon}: latitude is -90..90 and longitude -180..180 (LAT,LON order)",
            field="near",
        )
    return lat, lon


def parse_distance(within: str | float) -> float:
    """ "5km", "800m", "2mi", or a number of metres, as metres."""
    if isinstance(within, (int, float)) and not isinstance(within, bool):
        meters = float(within)
    else:
        match = DISTANCE.match(str(within))
        if not match:
            raise BadQuery(
                f"--within takes a distance such as 5km, 800m or 2mi, not {within!r}",
                field="within",
            )
        meters = float(match[1]) * UNITS[(match[2] or "m").lower()]
    if not math.isfinite(meters) or meters <= 0:
        raise BadQuery(f"--within must be a distance above 0, not {within!r}", field="within")
    return meters


def near_condition(near, within, field_name: str = LOCATION) -> dict | None:
    """A geo radius condition on `field_name`: within `within` of `near` (None for neither);
    BadQuery for one without the other."""
    if near is None and within is None:
        return None
    if near is None or within is None:
        raise BadQuery(
            "--near LAT,LON and --within DISTANCE go together (e.g. --near 46.55,7.98 "
            "--within 5km)",
            field="near" if near is None else "within",
        )
    lat, lon = parse_near(near)
    radius = parse_distance(within)
    return {"key": field_name, "geo_radius": {"center": {"lon": lon, "lat": lat}, "radius": radius}}


def distance_m(a: Mapping[str, float], b: Mapping[str, float]) -> float:
    """Great-circle distance in metres between two {"lon", "lat"} points (haversine)."""
    lat1, lat2 = math.radians(a["lat"]), math.radians(b["lat"])
    dlat, dlon = lat2 - lat1, math.radians(b["lon"] - a["lon"])
    h = math.sin(dlat / 2) ** 2 + math.cos(lat1) * math.cos(lat2) * math.sin(dlon / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(h)))
