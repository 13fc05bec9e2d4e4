"""The server path against a real Qdrant: runs when LOOKALIKE_QDRANT_URL is set (and
LOOKALIKE_QDRANT_API_KEY if the server has a key), skipped otherwise. With Docker:

    docker compose up -d
    LOOKALIKE_QDRANT_URL=http://localhost:6333 .venv/bin/python -m pytest tests/test_real_server.py

A cluster (see docker-compose.yml) at http://localhost:7333, with LOOKALIKE_TEST_SHARDS=3,
runs the same tests on sharded collections.
"""

import os
import uuid

import numpy as np
import pytest

from lookalike.embed.embedder import Embedder
from lookalike.index import EXACT, IndexSettings, SearchSettings
from lookalike.ingest import ingest
from lookalike.search import Searcher
from lookalike.search.evaluation import overlap
from lookalike.source import load_source
from lookalike.store import StoreConfig, connect
from tests.conftest import COLOURS, make_image

URL = os.environ.get("LOOKALIKE_QDRANT_URL")
pytestmark = pytest.mark.skipif(not URL, reason="LOOKALIKE_QDRANT_URL is not set: no server")
SHARDS = int(os.environ.get("LOOKALIKE_TEST_SHARDS", "1"))


@pytest.fixture
def store():
    config = StoreConfig(url=URL, api_key=os.environ.get("LOOKALIKE_QDRANT_API_KEY"))
    with connect(config) as store:
        yield store


@pytest.fixture
def collection(store):
    name = f"lookalike-test-{uuid.uuid4().hex[:8]}"
    yield name
    if store.exists(name):
        store.client.delete_collection(name)


@pytest.mark.parametrize("quantization", ["none", "int8", "binary"])
def test_ingest_search_and_recall_on_a_real_server(
    store, collection, image_folder, tiny_vit, quantization
):
    index = IndexSettings(hnsw_m=8, quantization=quantization, shards=SHARDS)
    emb = Embedder(tiny_vit, device="cpu")
    report = ingest(load_source(str(image_folder)), emb, store, collection, index=index)
    info = store.info(collection)
    assert (report.embedded, info.points, info.engine) == (12, 12, "server")
    assert info.index == index
    schema = store.client.get_collection(collection).payload_schema
    assert schema["label"].data_type.value == "integer"

    searcher = Searcher(collection, store=store, embedder=emb)
    query = make_image(COLOURS["green"], seed=99)
    hits = searcher.search(query, k=4)
    assert hits[0].label_name == "green" and [h.rank for h in hits] == [1, 2, 3, 4]
    assert {h.label_name for h in searcher.search(query, k=10, label="red")} == {"red"}
    vectors = emb.embed([query])
    exact = searcher.search_vectors(vectors, k=5, params=EXACT)[0]
    tuned = searcher.search_vectors(vectors, k=5, params=SearchSettings(hnsw_ef=128))[0]
    assert overlap(tuned, exact) == 1.0  # 12 points: the index must find them all


def test_parallel_upserts_all_land(store, collection, image_folder, tiny_vit):
    from lookalike.records import CollectionMeta, ImageRecord

    meta = CollectionMeta("m", "cls", 8, "d", "image", None)
    store.prepare(collection, meta)
    records = [
        ImageRecord(str(uuid.uuid4()), "train", i, None, None, None, None) for i in range(1000)
    ]
    vectors = np.random.default_rng(0).random((1000, 8), dtype=np.float32)
    store.upsert(collection, records, vectors)  # 4 batches of 256 in flight at once
    assert store.info(collection).points == 1000
