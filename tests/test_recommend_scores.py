"""More-like-these scores are what docs/queries.md says: with positive examples only, the
cosine similarity to the nearest example (the number a plain search gives) on every engine;
--min-score on that scale, or refused in words; examples never in their own results."""

import uuid

import numpy as np
import pytest

from lookalike.errors import BadQuery
from lookalike.index import EXACT
from lookalike.query import Examples, QueryOptions
from lookalike.records import CollectionMeta, ImageRecord
from lookalike.store import StoreConfig, connect

DIM, N = 8, 80


@pytest.fixture(scope="module", params=["edge", "local"])
def store(request, tmp_path_factory):
    vectors = np.random.default_rng(5).normal(size=(N, DIM)).astype(np.float32)
    records = [
        ImageRecord(str(uuid.UUID(int=i + 1)), "train", None, None, None, f"{i}.jpg", None)
        for i in range(N)
    ]
    store = connect(
        StoreConfig(path=str(tmp_path_factory.mktemp(request.param)), engine=request.param)
    )
    store.prepare("c", CollectionMeta("m", "cls", DIM, "d", "image", None))
    store.upsert("c", records, vectors)
    store.finish("c")
    yield store, vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    store.close()


def _id(i: int) -> str:
    return str(uuid.UUID(int=i + 1))


@pytest.mark.parametrize("positive", [[3], [3, 40], [3, 40, 61]])
def test_positive_examples_score_the_cosine_of_the_nearest(store, positive):
    store, vectors = store
    hits = store.recommend("c", Examples(tuple(map(_id, positive))), 10, params=EXACT)
    nearest = np.max(vectors @ vectors[positive].T, axis=1)
    nearest[positive] = -np.inf  # examples are never their own results
    expected = np.argsort(-nearest, kind="stable")[:10]
    assert [uuid.UUID(h.id).int - 1 for h in hits] == list(expected)
    np.testing.assert_allclose([h.score for h in hits], nearest[expected], atol=1e-5)
    if len(positive) == 1:  # the same number as a search with the example's own vector
        plain = store.query("c", vectors[positive], 11, params=EXACT)[0][1:]
        assert [(h.id, round(h.score, 5)) for h in hits] == [
            (h.id, round(h.score, 5)) for h in plain
        ]


def test_min_score_is_on_the_cosine_scale(store):
    store, vectors = store
    scores = np.sort(vectors @ vectors[7])[::-1]
    cut = float((scores[3] + scores[4]) / 2)  # between the 3rd and 4th neighbour
    options = QueryOptions(min_score=cut)
    hits = store.recommend("c", Examples((_id(7),)), 10, params=EXACT, options=options)
    assert len(hits) == 3 and all(h.score >= cut for h in hits)


@pytest.mark.parametrize(
    "examples, words",
    [
        (Examples((_id(1),), (_id(2),)), "with negative examples best_score"),
        (Examples((_id(1), _id(5)), strategy="sum_scores"), "sum_scores adds up"),
    ],
)
def test_min_score_on_another_scale_is_refused_in_words(store, examples, words):
    store, _ = store
    with pytest.raises(BadQuery, match=words):
        store.recommend("c", examples, 5, options=QueryOptions(min_score=0.5))


def test_average_vector_scores_the_cosine_of_the_blend(store):
    store, vectors = store
    hits = store.recommend("c", Examples((_id(3), _id(9)), strategy="average_vector"), 5)
    blend = vectors[3] + vectors[9]
    expected = vectors @ (blend / np.linalg.norm(blend))
    ids = [uuid.UUID(h.id).int - 1 for h in hits]
    np.testing.assert_allclose([h.score for h in hits], expected[ids], atol=1e-5)


def test_an_example_file_is_left_out_of_its_own_results(tmp_path, image_folder, tiny_vit):
    from lookalike.embed.embedder import Embedder
    from lookalike.ingest import ingest
    from lookalike.search import Searcher
    from lookalike.source import load_source

    with connect(StoreConfig(path=str(tmp_path / "store"))) as store:
        embedder = Embedder(tiny_vit, device="cpu")
        ingest(load_source(str(image_folder)), embedder, store, "c")
        searcher = Searcher("c", store=store, embedder=embedder)
        example = str(image_folder / "red" / "red_0.jpg")
        for like in ([example], [example, "train:5"]):
            hits = searcher.recommend(like, k=11)
            assert "red/red_0.jpg" not in [h.path for h in hits], like
            assert len(hits) == 12 - len(like)
        by_id = searcher.search_id(searcher.query("train:0").point_id, k=3)
        assert hits[0].score <= 1.0 and by_id[0].score <= 1.0
