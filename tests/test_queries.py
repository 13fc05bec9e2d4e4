"""Application queries on both embedded engines, each checked against a brute-force numpy
answer over the same stored vectors and payloads: filters, score thresholds, groups and
recommend with each strategy."""

import uuid

import numpy as np
import pytest

from lookalike.errors import BadQuery
from lookalike.index import EXACT
from lookalike.query import Examples, QueryOptions, check_filter, parse_where
from lookalike.records import CollectionMeta, ImageRecord
from lookalike.store import StoreConfig, connect

DIM, N = 16, 120
META = CollectionMeta("m", "cls", DIM, "d", "image", None)
COLOURS = ("red", "green", "blue")


def _payloads(rng) -> list[dict]:
    """Your fields, as a catalogue has them: a text sku shared by a few images, a float
    price, an integer year, a list of tags; some images lack price."""
    out = []
    for i in range(N):
        fields = {"sku": f"S{i // 4:03d}", "year": int(2018 + i % 5), "colour": COLOURS[i % 3]}
        fields["tags"] = ["sale"] if i % 7 == 0 else ["new", "sale"] if i % 11 == 0 else []
        fields["organic"] = i % 2 == 0
        if i % 10:
            fields["price"] = float(np.round(rng.uniform(5, 100), 2))
        out.append(fields)
    return out


@pytest.fixture(scope="module", params=["edge", "local"])
def catalogue(request, tmp_path_factory):
    rng = np.random.default_rng(7)
    vectors = rng.normal(size=(N, DIM)).astype(np.float32)
    payloads = _payloads(rng)
    records = [
        ImageRecord(
            str(uuid.UUID(int=i + 1)), "train", None, None, None, f"{i}.jpg", None, metadata=p
        )
        for i, p in enumerate(payloads)
    ]
    path = tmp_path_factory.mktemp(request.param)
    store = connect(StoreConfig(path=str(path), engine=request.param))
    store.prepare("c", META)
    store.upsert("c", records, vectors)
    store.index_fields("c", store.field_types("c"))
    store.finish("c")
    yield store, vectors / np.linalg.norm(vectors, axis=1, keepdims=True), payloads, records
    store.close()


def brute(scores: np.ndarray, keep: np.ndarray, k: int, min_score=None) -> list[int]:
    """Positions of the top-k kept candidates by score (the ground truth)."""
    order = [int(i) for i in np.argsort(-scores, kind="stable") if keep[i]]
    if min_score is not None:
        order = [i for i in order if scores[i] >= min_score]
    return order[:k]


def positions(hits) -> list[int]:
    return [uuid.UUID(h.id).int - 1 for h in hits]


def test_payload_fields_are_typed_and_indexed(catalogue):
    store, *_ = catalogue
    types = store.field_types("c")
    assert {k: types[k] for k in ("sku", "price", "year", "colour", "tags")} == {
        "sku": "keyword",
        "price": "float",
        "year": "integer",
        "colour": "keyword",
        "tags": "keyword",
    }
    indexed = store.indexed_fields("c")
    if store.engine == "edge":  # local mode keeps no payload indexes
        assert {"sku", "price", "year", "colour", "tags"} <= set(indexed)
        assert indexed["price"] == "float" and indexed["year"] == "integer"
    assert "sha256" not in indexed and "path" not in indexed


@pytest.mark.parametrize(
    "where, keep",
    [
        (["colour=red"], lambda p: p["colour"] == "red"),
        (["colour=red,blue"], lambda p: p["colour"] in ("red", "blue")),
        (["colour!=red"], lambda p: p["colour"] != "red"),
        (["year>=2020", "price<50"], lambda p: p["year"] >= 2020 and p.get("price", 99) < 50),
        (["tags=sale"], lambda p: "sale" in p["tags"]),
        (["sku=S003"], lambda p: p["sku"] == "S003"),
        (["year=2019", "colour=green"], lambda p: p["year"] == 2019 and p["colour"] == "green"),
    ],
)
def test_where_filters_inside_the_search(catalogue, where, keep):
    store, vectors, payloads, _ = catalogue
    flt = parse_where(where, store.field_types("c"))
    query = vectors[:3] + 0.1
    hits = store.query("c", query, 10, params=EXACT, options=QueryOptions(filter=flt))
    mask = np.array([keep(p) for p in payloads])
    for q, found in zip(query, hits):
        scores = vectors @ (q / np.linalg.norm(q))
        assert positions(found) == brute(scores, mask, 10)
        np.testing.assert_allclose([h.score for h in found], scores[positions(found)], atol=1e-5)


def test_qdrant_filter_json_and_min_score(catalogue):
    store, vectors, payloads, _ = catalogue
    flt = {
        "should": [
            {"key": "colour", "match": {"value": "red"}},
            {"key": "year", "range": {"gt": 2021}},
        ],
        "must_not": [{"is_empty": {"key": "price"}}],
    }
    check_filter(flt, store.field_types("c"))
    q = vectors[5]
    hits = store.query(
        "c", q[None], 50, params=EXACT, options=QueryOptions(filter=flt, min_score=0.1)
    )[0]
    mask = np.array([(p["colour"] == "red" or p["year"] > 2021) and "price" in p for p in payloads])
    expected = brute(vectors @ q, mask, 50, min_score=0.1)
    assert positions(hits) == expected and len(expected) < 50
    assert all(h.score >= 0.1 for h in hits)


def test_group_by_gives_the_best_hit_of_each_value(catalogue):
    store, vectors, payloads, _ = catalogue
    q = vectors[8]
    for field, k in (("sku", 6), ("year", 5), ("colour", 5)):
        hits = store.query("c", q[None], k, params=EXACT, options=QueryOptions(group_by=field))[0]
        scores, best = vectors @ q, {}
        for i in np.argsort(-scores):
            best.setdefault(payloads[i][field], int(i))
        expected = sorted(best.values(), key=lambda i: -scores[i])[:k]
        assert positions(hits) == expected
        assert [h.rank for h in hits] == list(range(1, len(expected) + 1))


def test_group_by_with_filter_and_threshold(catalogue):
    store, vectors, payloads, _ = catalogue
    q = vectors[1]
    options = QueryOptions(
        filter=parse_where(["colour=red"], store.field_types("c")), group_by="sku"
    )
    hits = store.query("c", q[None], 8, params=EXACT, options=options)[0]
    scores, best = vectors @ q, {}
    for i in np.argsort(-scores):
        if payloads[i]["colour"] == "red":
            best.setdefault(payloads[i]["sku"], int(i))
    assert positions(hits) == sorted(best.values(), key=lambda i: -scores[i])[:8]


def _sigmoid(x):
    return 0.5 * (x / (1 + np.abs(x)) + 1)


def recommend_scores(vectors, positive, negative, strategy):
    """Qdrant's documented recommend scores, in numpy."""
    pos = np.stack([vectors @ p for p in positive])
    neg = np.stack([vectors @ n for n in negative]) if negative else None
    if strategy == "sum_scores":
        return pos.sum(0) - (neg.sum(0) if neg is not None else 0)
    if strategy == "average_vector":
        avg = np.mean(positive, 0)
        target = avg + (avg - np.mean(negative, 0)) if negative else avg
        return vectors @ (target / np.linalg.norm(target))
    best_pos = pos.max(0)
    if neg is None:
        return best_pos
    best_neg = neg.max(0)
    return np.where(best_pos > best_neg, _sigmoid(best_pos), -_sigmoid(best_neg))


@pytest.mark.parametrize("strategy", ["best_score", "average_vector", "sum_scores"])
def test_recommend_by_ids_and_vectors(catalogue, strategy):
    store, vectors, payloads, records = catalogue
    pos, neg = [3, 40], [77]
    examples = Examples((records[3].id, vectors[40] * 3.0), (records[77].id,), strategy=strategy)
    hits = store.recommend("c", examples, 10, params=EXACT)
    scores = recommend_scores(
        vectors, [vectors[i] for i in pos], [vectors[i] for i in neg], strategy
    )
    keep = np.ones(N, bool)
    keep[[3, 77]] = False  # examples given by id are never returned
    expected = brute(scores, keep, 10)
    assert positions(hits) == expected
    if strategy != "average_vector":  # engines score it against the unnormalised vector
        np.testing.assert_allclose([h.score for h in hits], scores[expected], atol=1e-4)


def test_recommend_with_filter_and_groups(catalogue):
    store, vectors, payloads, records = catalogue
    options = QueryOptions(
        filter=parse_where(["year<=2020"], store.field_types("c")), group_by="sku"
    )
    hits = store.recommend("c", Examples((records[9].id,)), 5, params=EXACT, options=options)
    scores, best = vectors @ vectors[9], {}
    for i in np.argsort(-scores):
        if payloads[i]["year"] <= 2020 and i != 9:
            best.setdefault(payloads[i]["sku"], int(i))
    assert positions(hits) == sorted(best.values(), key=lambda i: -scores[i])[:5]


def test_unknown_example_id_is_a_clear_error(catalogue):
    store, *_ = catalogue
    with pytest.raises(BadQuery, match="no point with id"):
        store.recommend("c", Examples((str(uuid.UUID(int=9999)),)), 5)


@pytest.mark.parametrize(
    "where, message",
    [
        (["brand=acme"], "no point has a field 'brand'; fields: colour, label, label_name"),
        (["year=recent"], "year holds whole numbers, not 'recent'"),
        (["colour>=3"], "colour holds text: >= needs numbers"),
        (["price"], "is not FIELD=VALUE"),
    ],
)
def test_where_errors_name_the_problem(catalogue, where, message):
    store, *_ = catalogue
    with pytest.raises(BadQuery, match=message.replace("(", r"\(")):
        parse_where(where, store.field_types("c"))


@pytest.mark.parametrize(
    "flt, message",
    [
        ({"must": [{"key": "brand", "match": {"value": "x"}}]}, "no point has a field 'brand'"),
        (
            {"must": [{"key": "year", "match": {"value": "2020"}}]},
            "year holds whole numbers; '2020' can never match",
        ),
        ({"must": [{"key": "colour", "range": {"gte": 1}}]}, "a range needs numbers"),
        ({"mustnt": []}, "unknown part 'mustnt'"),
        ([1], "a filter is a JSON object"),
    ],
)
def test_filter_errors_name_the_problem(catalogue, flt, message):
    store, *_ = catalogue
    with pytest.raises(BadQuery, match=message):
        check_filter(flt, store.field_types("c"))


ODD_FILTERS = [
    {"must": {"key": "colour", "match": {"value": "red"}}},
    {"must": [{"is_empty": "x"}]},
    {"must": [{"nested": {"key": "colour", "filter": 3}}]},
    {"must": [{"key": "year", "match": {"value": 10**30}}]},
    {"must": [{"key": "year", "range": {"gte": "a"}}]},
    {"must": [{"key": "year", "range": {"foo": 1}}]},
    {"must": [{"key": "colour", "match": {"any": "red"}}]},
    {"must": [{"key": "colour", "match": {"foo": 1}}]},
    {"must": [{"has_id": ["not-a-uuid"]}]},
    {"min_should": {"conditions": [], "min_count": "x"}},
    {"must": [{"key": "colour", "values_count": {"gt": "x"}}]},
    {"must": [{"key": "a b[", "match": {"value": "x"}}]},
    {"should": None},
]


@pytest.mark.parametrize("flt", ODD_FILTERS, ids=[str(i) for i in range(len(ODD_FILTERS))])
def test_an_odd_filter_is_answered_or_refused_in_words(catalogue, flt):
    """Whatever a client sends as a filter: hits, or a BadQuery, never an engine's crash."""
    from lookalike.search.builder import QueryBuilder

    store, vectors, *_ = catalogue
    try:
        query = QueryBuilder(store, "c").build(filter=flt)
        store.query("c", vectors[:1], 3, options=query)
    except BadQuery as e:
        assert "Error" not in str(e) and len(str(e)) < 300


def test_true_false_fields(catalogue):
    """Answered on engines that can match them, refused in words on edge (which reads true
    as 1 and would answer nothing)."""
    store, vectors, payloads, _ = catalogue
    flt = parse_where(["organic=true"], store.field_types("c"))
    if store.engine == "edge":
        with pytest.raises(BadQuery, match="cannot match true/false values"):
            store.query("c", vectors[:1], 5, options=QueryOptions(filter=flt))
        return
    hits = store.query("c", vectors[:1], 5, params=EXACT, options=QueryOptions(filter=flt))[0]
    mask = np.array([p["organic"] for p in payloads])
    assert positions(hits) == brute(vectors @ vectors[0], mask, 5)
