"""--group-by on both embedded engines against brute force: list fields (a point belongs to
each value's group and is shown once), values of mixed types, filters and excluded ids; and
the edge engine's rounds always end, however the field's values fall."""

import time
import uuid

import numpy as np
import pytest

from lookalike.errors import QueryTimeout
from lookalike.index import EXACT
from lookalike.query import QueryOptions, time_budget
from lookalike.records import CollectionMeta, ImageRecord
from lookalike.store import StoreConfig, connect
from lookalike.store.edge_query import grouped

DIM, N = 8, 150
META = CollectionMeta("m", "cls", DIM, "d", "image", None)
TAGS = (["a", "b"], ["b"], ["c", "a"], [], ["d"], ["e", "e"], "f", ["g", 3], [1, True], 2.5)


def _payload(i: int) -> dict:
    return {
        "tags": TAGS[i % len(TAGS)],
        "year": (2020 + i % 3) if i % 4 else "unknown",  # mixed: integers and text
        "sku": f"S{i // 7:02d}",
        "colour": ("red", "blue")[i % 2],
        "shop": {"id": f"shop{i % 4}"},
    }


@pytest.fixture(scope="module", params=["edge", "local"])
def shop(request, tmp_path_factory):
    rng = np.random.default_rng(3)
    vectors = rng.normal(size=(N, DIM)).astype(np.float32)
    payloads = [_payload(i) for i in range(N)]
    records = [
        ImageRecord(str(uuid.UUID(int=i + 1)), "train", None, None, None, f"{i}.jpg", None,
                    metadata=p)
        for i, p in enumerate(payloads)
    ]  # fmt: skip
    store = connect(StoreConfig(path=str(tmp_path_factory.mktemp(request.param)),
                                engine=request.param))  # fmt: skip
    store.prepare("c", META)
    store.upsert("c", records, vectors)
    store.index_fields("c", store.field_types("c"))
    store.finish("c")
    yield store, vectors / np.linalg.norm(vectors, axis=1, keepdims=True), payloads
    store.close()


def _groups_of(value) -> list:
    """Qdrant's rule: each text or whole-number value; no group if any value is another type."""
    if isinstance(value, dict):
        return []
    values = value if isinstance(value, list) else [value]
    if any(type(v) not in (str, int) for v in values):
        return []
    return list(dict.fromkeys(values))


def brute(scores, payloads, field, k, keep=lambda i: True) -> list[int]:
    """The points shown for the best k groups: each group's best point, once."""
    found, shown = set(), []
    for i in np.argsort(-scores, kind="stable"):
        if not keep(int(i)):
            continue
        value = payloads[i]
        for part in field.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        fresh = [v for v in _groups_of(value) if (type(v), v) not in found][: k - len(found)]
        found |= {(type(v), v) for v in fresh}
        if fresh:
            shown.append(int(i))
        if len(found) == k:
            break
    return shown


def positions(hits) -> list[int]:
    return [uuid.UUID(h.id).int - 1 for h in hits]


@pytest.mark.parametrize("field", ["tags", "year", "sku", "shop.id"])
@pytest.mark.parametrize("k", [1, 3, 10, 40])
def test_groups_match_brute_force(shop, field, k):
    store, vectors, payloads = shop
    for q in (vectors[0], vectors[17] + 0.3 * vectors[5]):
        q = q / np.linalg.norm(q)
        hits = store.query("c", q[None], k, params=EXACT, options=QueryOptions(group_by=field))[0]
        assert positions(hits) == brute(vectors @ q, payloads, field, k)
        assert [h.rank for h in hits] == list(range(1, len(hits) + 1))


def test_list_field_groups_are_each_value(shop):
    """Every tag that some point carries is a group: a, b, c, d, e, f, g and 3 (not 1: the
    point [1, true] joins no group, as on a Qdrant server)."""
    store, vectors, payloads = shop
    hits = store.query("c", vectors[:1], 50, params=EXACT, options=QueryOptions(group_by="tags"))
    groups = {v for h in hits[0] for v in _groups_of(payloads[positions([h])[0]]["tags"])}
    assert groups == {"a", "b", "c", "d", "e", "f", "g", 3}


def test_groups_with_filters_and_excluded_ids(shop):
    store, vectors, payloads = shop
    q = vectors[4]
    flt = {"must": [{"key": "colour", "match": {"value": "red"}}]}
    excluded = tuple(str(uuid.UUID(int=i + 1)) for i in range(0, N, 3))
    options = QueryOptions(filter=flt, group_by="tags", exclude=excluded)
    hits = store.query("c", q[None], 6, params=EXACT, options=options)[0]

    def keep(i):
        return payloads[i]["colour"] == "red" and i % 3 != 0

    assert positions(hits) == brute(vectors @ q, payloads, "tags", 6, keep)


class _Point:
    def __init__(self, i: int, group) -> None:
        self.id, self.score, self.payload = str(uuid.UUID(int=i + 1)), 1.0 - i / 1e4, {"g": group}


def test_graph_search_falls_back_to_exact_when_groups_come_back_short():
    """Many identical vectors: HNSW behind a strict filter can return fewer points than asked
    (740 of 1000 groups, found by the red team); a short round is asked again exactly before
    the search counts as exhausted, so every group is found."""
    points = [_Point(i, f"g{i % 600}") for i in range(3000)]
    asked = []

    def search(limit, options, exact):
        asked.append(exact)
        done = {c["has_id"][0] for c in _conditions(options.filter) if "has_id" in c}
        found = set()
        for c in _conditions(options.filter):
            found |= set(c.get("match", {}).get("any", []))
        fresh = [p for p in points if p.payload["g"] not in found and p.id not in done]
        return fresh[: limit if exact else min(limit, 7)]  # the graph gives up early

    best = grouped(search, 500, QueryOptions(group_by="g"))
    assert len(best) == 500 and asked[0] is False and asked[-1] is True


def _conditions(f):
    for part in ("must", "must_not", "should"):
        for c in (f or {}).get(part, []) if isinstance(f, dict) else []:
            yield c
            yield from _conditions(c)


def test_grouping_rounds_always_end_and_keep_to_the_time_budget():
    """A search that always returns the same full page (as a broken filter would) ends at the
    budget with QueryTimeout, never spins."""

    def search(limit, options, exact):
        time.sleep(0.01)
        return [_Point(1, 1.5)] * limit  # a value no group takes

    started = time.monotonic()
    with pytest.raises(QueryTimeout), time_budget(0.3):
        grouped(search, 5, QueryOptions(group_by="g"))
    assert time.monotonic() - started < 2


@pytest.fixture(scope="module")
def colours(tmp_path_factory, image_folder, tiny_vit):
    from lookalike.embed.embedder import Embedder
    from lookalike.ingest import ingest
    from lookalike.search import Searcher
    from lookalike.source import load_source

    store = connect(StoreConfig(path=str(tmp_path_factory.mktemp("own") / "store")))
    embedder = Embedder(tiny_vit, device="cpu")
    ingest(load_source(str(image_folder)), embedder, store, "c")
    yield Searcher("c", store=store, embedder=embedder)
    store.close()


def test_a_stored_query_keeps_its_own_group(colours, image_folder):
    """The query's own point is left out before grouping: its label's group is still there,
    with its next best image (the red team saw `--group-by label_name` on an ant give bees)."""
    from lookalike.search.batcher import QueryBatcher

    options = QueryOptions(group_by="label_name")
    asked = [colours.query(str(image_folder / "red" / "red_0.jpg")), colours.query("train:0")]
    stored = {p.path: p.id for p in colours.store.scroll("c", 100)[0]}
    own = [stored["red/red_0.jpg"], asked[1].point_id]
    with QueryBatcher(colours) as batcher:
        for search in (colours.search_queries, batcher.search_queries):
            for query, own_id in zip(asked, own):
                [result] = search([query], k=3, options=options)
                assert sorted(h.label_name for h in result.hits) == ["blue", "green", "red"]
                assert own_id not in [h.id for h in result.hits] and result.excluded_self
                assert result.query.label_name is not None
                [kept] = search([query], k=3, options=options, include_self=True)
                assert kept.hits[0].id == own_id and not kept.excluded_self


def test_group_by_a_spreadsheet_header(tmp_path):
    """A field named like a spreadsheet's column ("Product Name") groups on edge too."""
    store = connect(StoreConfig(path=str(tmp_path), engine="edge"))
    store.prepare("c", META)
    vectors = np.random.default_rng(1).normal(size=(20, DIM)).astype(np.float32)
    records = [
        ImageRecord(str(uuid.UUID(int=i + 1)), "train", None, None, None, f"{i}.jpg", None,
                    metadata={"Product Name": f"p{i % 4}"})
        for i in range(20)
    ]  # fmt: skip
    store.upsert("c", records, vectors)
    store.finish("c")
    try:
        hits = store.query("c", vectors[:1], 10, options=QueryOptions(group_by="Product Name"))
        assert sorted(h.metadata["Product Name"] for h in hits[0]) == ["p0", "p1", "p2", "p3"]
    finally:
        store.close()


# Field names a spreadsheet's headers have, which Qdrant's key syntax must quote.
ODD_NAMES = ["Product Name", "size (cm)", "time:zone", "w/h", "tab\there", "Größe", "a-b"]
ODD_NAMES += ["No.", "v1.2"]  # dotted, yet one field: not a path into an object


@pytest.mark.parametrize("engine", ["edge", "local"])
def test_group_by_fields_whose_names_need_quoting(tmp_path, engine):
    """Each such field groups on both embedded engines, checked as a query names it (the
    collection's field types known), against brute force."""
    from lookalike.ingest.plan import unindexed_fields
    from lookalike.search.builder import QueryBuilder

    store = connect(StoreConfig(path=str(tmp_path), engine=engine))
    store.prepare("c", META)
    vectors = np.random.default_rng(1).normal(size=(24, DIM)).astype(np.float32)
    payloads = [{name: f"v{(i + j) % 4}" for j, name in enumerate(ODD_NAMES)} for i in range(24)]
    records = [
        ImageRecord(str(uuid.UUID(int=i + 1)), "train", None, None, None, f"{i}.jpg", None,
                    metadata=p)
        for i, p in enumerate(payloads)
    ]  # fmt: skip
    store.upsert("c", records, vectors)
    odd = set(unindexed_fields(tuple(ODD_NAMES)))  # as a sync indexes them: not these
    store.index_fields("c", {k: v for k, v in store.field_types("c").items() if k not in odd})
    store.finish("c")
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    try:
        queries = QueryBuilder(store, "c")
        for name in ODD_NAMES:
            options = queries.build(group_by=name)
            hits = store.query("c", unit[:1], 3, params=EXACT, options=options)[0]
            assert positions(hits) == brute(unit @ unit[0], _flat(payloads, name), "g", 3), name
    finally:
        store.close()


def _flat(payloads: list[dict], name: str) -> list[dict]:
    """The payloads with `name` as a plain field "g" (brute force reads dotted paths)."""
    return [{"g": p[name]} for p in payloads]
