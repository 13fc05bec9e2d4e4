"""The server path's requests, recorded by a stub Qdrant on 127.0.0.1: what lookalike asks a
real server for (collection options, payload index, batched waited upserts, query params, the
api-key header). tests/test_real_server.py runs the same operations against a real server."""

import json
import uuid

import numpy as np
import pytest
from click.testing import CliRunner

from lookalike.cli.main import cli
from lookalike.index import IndexSettings, SearchSettings
from lookalike.query import QueryOptions
from lookalike.records import CollectionMeta, ImageRecord
from lookalike.store import StoreConfig, connect
from tests.stub_qdrant import StubQdrant

META = CollectionMeta("m", "cls", 4, "d", "image", "label", ("a", "b"))
OK = {"operation_id": 1, "status": "completed"}
PAYLOAD = {"label": 1, "label_name": "b", "split": "train", "row": 3, "path": None}
POINT = {"id": str(uuid.uuid4()), "version": 1, "score": 0.9, "payload": PAYLOAD}
COLLECTION = {  # GET /collections/c: what a server describes (just what the client requires)
    "status": "green",
    "optimizer_status": "ok",
    "segments_count": 1,
    "config": {
        "params": {"vectors": {"size": 4, "distance": "Cosine"}},
        "hnsw_config": {"m": 16, "ef_construct": 100, "full_scan_threshold": 10000},
        "optimizer_config": {
            "deleted_threshold": 0.2,
            "vacuum_min_vector_number": 1000,
            "default_segment_number": 0,
            "flush_interval_sec": 5,
        },
        "wal_config": {"wal_capacity_mb": 32, "wal_segments_ahead": 0},
    },
    "payload_schema": {"label": {"data_type": "integer", "points": 0}},
}


def fresh_server(method, path, n):
    """A server with no collection until one is created."""
    if path.endswith("/exists"):
        return {"exists": False}
    if path.endswith("/points/query/batch"):
        return [{"points": [POINT]}]
    if method == "POST" and path.endswith("/points"):  # retrieve
        return []
    if method == "GET" and path == "/collections/c":
        return COLLECTION
    return OK if method == "PUT" and path.count("/") > 2 else True


@pytest.fixture
def stub():
    server = StubQdrant(fresh_server)
    yield server
    server.close()


def open_store(stub, **kwargs):
    kwargs.setdefault("check_compatibility", False)  # a stub has no version to compare
    return connect(StoreConfig(url=stub.url, retries=0, **kwargs))


def records(n):
    return [
        ImageRecord(str(uuid.uuid4()), "train", i, i % 2, "ab"[i % 2], None, None) for i in range(n)
    ]


@pytest.mark.parametrize(
    "quantization, expected",
    [
        ("int8", {"scalar": {"type": "int8", "quantile": 0.99, "always_ram": True}}),
        ("binary", {"binary": {"always_ram": True}}),
        ("none", None),
    ],
)
def test_create_sends_index_quantization_and_cluster_options(stub, quantization, expected):
    index = IndexSettings(
        hnsw_m=32,
        hnsw_ef_construct=200,
        on_disk=True,
        quantization=quantization,
        shards=3,
        replicas=2,
    )
    with open_store(stub) as store:
        store.prepare("c", META, index=index)
    (body,) = stub.bodies("PUT", "/collections/c")
    assert body["vectors"] == {"size": 4, "distance": "Cosine", "on_disk": True}
    assert body["hnsw_config"] == {"m": 32, "ef_construct": 200}
    assert body.get("quantization_config") == expected
    assert (body["shard_number"], body["replication_factor"]) == (3, 2)
    assert body["metadata"]["model"] == "m" and body["metadata"]["label_names"] == ["a", "b"]
    (request,) = [r for r in stub.requests if r["path"] == "/collections/c/index"]
    assert json.loads(request["body"]) == {"field_name": "label", "field_schema": "integer"}
    assert "wait=true" in request["query"]


def test_upserts_are_waited_batches_under_the_request_limit_sent_in_parallel(stub):
    vectors = np.random.default_rng(0).random((1000, 1280), dtype=np.float32)
    # 1 MB requests: 19 points of 1280 floats fit in half of one, as JSON text.
    with open_store(stub, request_limit_mb=1, upload_parallel=4) as store:
        store.upsert("c", records(1000), vectors)
    upserts = [
        r for r in stub.requests if (r["method"], r["path"]) == ("PUT", "/collections/c/points")
    ]
    assert len(upserts) == -(-1000 // 19)
    assert all("wait=true" in r["query"] for r in upserts)
    assert max(len(r["body"]) for r in upserts) < 2**20
    batches = [json.loads(r["body"])["batch"] for r in upserts]
    assert sorted(row for b in batches for row in (p["row"] for p in b["payloads"])) == list(
        range(1000)
    )


def test_query_sends_filter_and_search_params(stub):
    q = np.ones((2, 4), np.float32)
    with open_store(stub) as store:
        hits = store.query("c", q, 5, label=1, params=SearchSettings(hnsw_ef=64, oversampling=2.0))
        store.query("c", q[:1], 3, params=SearchSettings(exact=True))
        store.query("c", q[:1], 3)
    tuned, exact, default = stub.bodies("POST", "/collections/c/points/query/batch")
    first = tuned["searches"][0]
    assert len(tuned["searches"]) == 2 and first["limit"] == 5 and first["with_payload"] is True
    assert first["filter"] == {"must": [{"key": "label", "match": {"value": 1}}]}
    assert first["params"]["hnsw_ef"] == 64 and first["params"]["exact"] is False
    assert first["params"]["quantization"] == {"rescore": True, "oversampling": 2.0}
    assert exact["searches"][0]["params"]["exact"] is True
    assert "params" not in default["searches"][0]  # the server's own defaults
    assert hits[0][0].label_name == "b" and hits[0][0].row == 3


@pytest.mark.parametrize("name", ["Product Name", "size (cm)", "time:zone", "w/h", "tab\there"])
def test_group_by_a_field_whose_name_needs_quoting(name):
    """A spreadsheet header goes to the server quoted in Qdrant's key syntax (unquoted, the
    server reads it as a path and refuses it), and the groups' hits come back."""
    point = {**POINT, "payload": {**PAYLOAD, name: "p0"}}

    def server(method, path, n):
        if path.endswith("/points/query/groups"):
            return {"groups": [{"id": "p0", "hits": [point]}]}
        return fresh_server(method, path, n)

    stub = StubQdrant(server)
    try:
        with open_store(stub) as store:
            options = QueryOptions(group_by=name)
            [hits] = store.query("c", np.ones((1, 4), np.float32), 3, options=options)
        [body] = stub.bodies("POST", "/collections/c/points/query/groups")
        assert body["group_by"] == f'"{name}"' and body["group_size"] == 1
        assert [h.metadata[name] for h in hits] == ["p0"]
    finally:
        stub.close()


def test_every_request_carries_the_api_key(stub):
    with pytest.warns(UserWarning, match="plain HTTP"):
        store = open_store(stub, api_key="s3cret")
    with store:
        store.prepare("c", META)
        store.upsert("c", records(3), np.ones((3, 4), np.float32))
    assert stub.requests and all(r["headers"].get("api-key") == "s3cret" for r in stub.requests)


def test_ingest_command_passes_cluster_options_through(stub, image_folder, tiny_vit, monkeypatch):
    monkeypatch.setenv("LOOKALIKE_QDRANT_URL", stub.url)
    result = CliRunner().invoke(
        cli,
        [
            "ingest",
            "--dataset",
            str(image_folder),
            "--model",
            tiny_vit,
            "--collection",
            "c",
            "--shards",
            "2",
            "--replicas",
            "2",
            "--quantization",
            "binary",
            "--on-disk",
            "--hnsw-m",
            "8",
            "--upsert-batch",
            "5",
            "--device",
            "cpu",
        ],
    )
    assert result.exit_code == 0, result.output
    (body,) = stub.bodies("PUT", "/collections/c")
    assert (body["shard_number"], body["replication_factor"]) == (2, 2)
    assert body["quantization_config"] == {"binary": {"always_ram": True}}
    assert body["hnsw_config"]["m"] == 8 and body["vectors"]["on_disk"] is True
    upserts = stub.bodies("PUT", "/collections/c/points")
    assert sum(len(b["batch"]["ids"]) for b in upserts) == 12 and len(upserts) >= 3
    # Only label is indexed: the folder has no fields of its own (lookalike's are not indexed).
    indexes = {
        b["field_name"]: b["field_schema"] for b in stub.bodies("PUT", "/collections/c/index")
    }
    assert indexes == {"label": "integer"}
