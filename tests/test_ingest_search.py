"""Ingest into a real embedded Qdrant, then search it: ids, payloads, metadata, refusals."""

import numpy as np
import pytest

from lookalike.embed import ModelSettings
from lookalike.embed.embedder import Embedder
from lookalike.errors import BadQuery, CollectionNotFound, ModelMismatch
from lookalike.ingest import ingest
from lookalike.search import Searcher
from lookalike.source import load_source
from lookalike.store import StoreConfig, connect
from tests.conftest import COLOURS, make_image


@pytest.fixture(params=["edge", "local"])
def config(tmp_path, request):
    """Both embedded engines must behave the same."""
    return StoreConfig(path=str(tmp_path / "store"), engine=request.param)


@pytest.fixture(scope="module", params=["edge", "local"])
def ingested(request, tmp_path_factory, image_folder, tiny_vit):
    """A collection "c" of the colour folder, ingested once per engine for the tests that only
    read it."""
    config = StoreConfig(path=str(tmp_path_factory.mktemp("store")), engine=request.param)
    run_ingest(config, str(image_folder), tiny_vit)
    return config


def run_ingest(config, dataset, model, collection="c", **kwargs):
    with connect(config) as store:
        return ingest(
            load_source(dataset), Embedder(model, device="cpu"), store, collection, **kwargs
        )


def test_ingest_stores_every_image_with_readable_payloads(config, image_folder, tiny_vit):
    report = run_ingest(config, str(image_folder), tiny_vit, batch_size=5)
    assert (report.embedded, report.skipped) == (12, ())
    with connect(config) as store:
        info = store.info("c")
        points, _, _ = store.scroll("c", limit=100)
    assert (info.points, info.dim, info.distance) == (12, 32, "Cosine")
    assert info.meta.pooling == "cls" and info.meta.label_names == ("blue", "green", "red")
    assert info.engine == config.engine
    # Paths relative to the folder, no rows (a file's place shifts), a fingerprint each.
    assert sorted(p.path for p in points) == sorted(
        f"{c}/{c}_{i}.jpg" for c in ("red", "green", "blue") for i in range(4)
    )
    assert all(p.row is None and p.split == "train" and len(p.sha256) == 64 for p in points)
    first = next(p for p in points if p.path == "blue/blue_0.jpg")
    assert first.label_name == "blue" and first.label == 0


def test_reingest_upserts_instead_of_appending(config, image_folder, tiny_vit):
    run_ingest(config, str(image_folder), tiny_vit)
    run_ingest(config, str(image_folder), tiny_vit)
    with connect(config) as store:
        assert store.info("c").points == 12


def test_search_right_after_ingest_finds_the_same_colour(ingested):
    with connect(ingested) as store:
        searcher = Searcher("c", store=store)
        hits = searcher.search(make_image(COLOURS["green"], seed=99), k=4)
        only_red = searcher.search(make_image(COLOURS["green"], seed=99), k=10, label="red")
    assert [h.rank for h in hits] == [1, 2, 3, 4]
    assert hits[0].label_name == "green"
    assert all(a.score >= b.score for a, b in zip(hits, hits[1:]))
    assert {h.label_name for h in only_red} == {"red"} and len(only_red) == 4


def test_exact_search_matches_numpy_brute_force(ingested, image_folder, tiny_vit):
    """The tutorial's method: cosine similarity of the query to every candidate, top-k."""
    source = load_source(str(image_folder))
    records = [r for batch, _ in source.batches(32) for r in batch]
    emb = Embedder(tiny_vit, device="cpu")
    gallery = emb.embed([r.image for r in records])
    queries = [make_image(c, seed=50 + i) for i, c in enumerate(COLOURS.values())]
    q = emb.embed(queries)
    sims = (q @ gallery.T) / np.outer(np.linalg.norm(q, axis=1), np.linalg.norm(gallery, axis=1))
    with connect(ingested) as store:
        results = Searcher("c", store=store, embedder=emb).search_many(queries, k=6)
    for row, hits in zip(sims, results):
        expected = [records[i].id for i in np.argsort(-row)[:6]]
        assert [h.id for h in hits] == expected
        np.testing.assert_allclose([h.score for h in hits], np.sort(row)[::-1][:6], atol=1e-5)


def test_collection_built_with_another_model_is_refused(
    config, image_folder, tiny_vit, tiny_vit_other, tiny_vit_wide
):
    run_ingest(config, str(image_folder), tiny_vit)
    with pytest.raises(ModelMismatch, match="was built with model .*tiny-vit0"):
        run_ingest(config, str(image_folder), tiny_vit_other)
    with pytest.raises(ModelMismatch, match="holds 32-d vectors, but the model makes 48-d"):
        run_ingest(config, str(image_folder), tiny_vit_wide)
    with connect(config) as store:
        with pytest.raises(ModelMismatch, match="was built with model") as err:
            Searcher("c", store=store, settings=ModelSettings(model=tiny_vit_other))
        assert (err.value.collection, err.value.what) == ("c", "model")
        assert store.info("c").points == 12  # nothing was mixed in


def test_recreate_rebuilds_with_the_new_model(config, image_folder, tiny_vit, tiny_vit_wide):
    run_ingest(config, str(image_folder), tiny_vit)
    run_ingest(config, str(image_folder), tiny_vit_wide, recreate=True)
    with connect(config) as store:
        info = store.info("c")
    assert (info.points, info.dim) == (12, 48)


def test_missing_collection_names_what_exists(ingested):
    with (
        connect(ingested) as store,
        pytest.raises(CollectionNotFound, match=r"collections there: c\)"),
    ):
        Searcher("beans", store=store)


@pytest.mark.parametrize(
    "query, k, label, message",
    [
        ("nope.png", 5, None, "no such file: 'nope.png'"),
        ("train:99", 5, None, "row 99 is out of range"),
        ("validation:0", 5, None, "has no split 'validation'"),
        ("train:0", 0, None, "k must be between 1 and 1000"),
        ("train:0", 5, "purple", "unknown label 'purple'; labels are: blue, green, red"),
        ("train:0", 5, "7", "label id 7 is out of range 0..2"),
    ],
)
def test_bad_queries_are_refused_clearly(ingested, query, k, label, message):
    with connect(ingested) as store:
        searcher = Searcher("c", store=store)
        with pytest.raises(BadQuery, match=message):
            searcher.search(searcher.load_query(query), k=k, label=label)


def test_average_precision_and_near_duplicates(ingested):
    from lookalike.search.evaluation import average_precision, near_duplicate_score

    assert average_precision([True, False, True]) == pytest.approx((1 + 2 / 3) / 2)
    assert average_precision([False, False]) == 0.0
    with connect(ingested) as store:
        score = near_duplicate_score(Searcher("c", store=store), 12)
    assert 0.5 <= score <= 1.0  # 12 images x 4 edits; most find their original first
