"""A filter that matched nothing: the values its fields hold that differ from the asked ones
only in capitals (`--where place=alps` where the photos say "Alps"); Qdrant matches exactly."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

from lookalike.query import KEYWORD, WHERE

if TYPE_CHECKING:
    from lookalike.store import Store

SCAN = 20_000  # points read at most: a hint, not worth reading a huge collection for


def other_capitalisations(
    store: Store, collection: str, where: Iterable[str], types: Mapping[str, str]
) -> list[tuple[str, list[str]]]:
    """(item, the field's values equal to the item's but for capitals) for each FIELD=VALUE
    item on a field of text; an empty list: no other capitalisation exists."""
    said = []
    for item in where:
        match = WHERE.match(item)
        if not match or match["op"] != "=" or types.get(match["field"]) != KEYWORD:
            continue
        name = match["field"]
        asked = {v.strip() for v in match["value"].split(",")}
        lower = {v.lower() for v in asked}
        held = _values(store, collection, name)
        said.append((item, sorted(v for v in held if v.lower() in lower and v not in asked)))
    return said


def _values(store: Store, collection: str, name: str) -> set[str]:
    having = {"must_not": [{"is_empty": {"key": name}}]}
    values: set[str] = set()
    offset, seen = None, 0
    while seen < SCAN:
        page, _, offset = store.scroll(collection, 1024, offset, where=having)
        for point in page:
            value = point.metadata.get(name, getattr(point, name, None))
            for v in value if isinstance(value, list) else [value]:
                if isinstance(v, str):
                    values.add(v)
        seen += len(page)
        if offset is None or not page:
            break
    return values
