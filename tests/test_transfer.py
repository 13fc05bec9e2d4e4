"""Moving a collection without embedding again: export to Parquet, import into any engine
(edge, local mode, a server: the stub), copy between stores; and the collections you manage
(`collections`, `drop`). Tiny random model, an image folder made here, real embedded stores."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from lookalike.cli.main import cli
from lookalike.records import CollectionMeta, Tracked
from lookalike.store import StoreConfig, connect
from lookalike.transfer import Header, Page, load, read, read_parquet, write_parquet
from tests.stub_qdrant import StubQdrant


def run(*args: str, ok: bool = True, **kwargs):
    result = CliRunner().invoke(cli, list(args), **kwargs)
    if ok:
        assert result.exit_code == 0, result.output
    return result


@pytest.fixture(scope="module")
def store(tmp_path_factory, image_folder, tiny_vit) -> str:
    """An edge store with collection `photos` (12 images, label classes) and a second one."""
    path = str(tmp_path_factory.mktemp("transfer") / "store")
    for name in ("photos", "spare"):
        run("ingest", "--dataset", str(image_folder), "--model", tiny_vit, "--qdrant-path", path,
            "--collection", name)  # fmt: skip
    return path


def hits(path: str, query: str, engine: str = "auto") -> list:
    out = run("search", query, "--qdrant-path", path, "--embedded-engine", engine,
              "--collection", "photos", "--json", "--k", "5")  # fmt: skip
    return [(h["id"], round(h["score"], 5), h["path"]) for h in json.loads(out.stdout)["hits"]]


def test_round_trip_edge_parquet_local_parquet_is_identical(store, image_folder, tmp_path):
    first, second = tmp_path / "a.parquet", tmp_path / "b.parquet"
    local = str(tmp_path / "local")
    run("export", str(first), "--qdrant-path", store, "--collection", "photos")
    out = run("import", str(first), "--qdrant-path", local, "--embedded-engine", "local", "--json")
    assert json.loads(out.stdout)["points"] == 12
    run("export", str(second), "--qdrant-path", local)
    a, b = pq.read_table(first), pq.read_table(second)
    assert a.equals(b) and a.num_rows == 12
    assert a.schema.metadata == b.schema.metadata  # the same record: model, dataset, labels
    query = str(image_folder / "red" / "red_1.jpg")
    assert hits(store, query) == hits(local, query, "local")


def test_the_file_carries_the_record_and_reads_with_pandas_and_datasets(store, tmp_path):
    file = str(tmp_path / "photos.parquet")
    run("export", file, "--qdrant-path", store, "--collection", "photos")
    header, _ = read_parquet(file)
    with connect(StoreConfig(path=store)) as s:
        assert header.meta == s.info("photos").meta and header.points == 12
    assert header.meta.label_names == ("blue", "green", "red")
    import pandas as pd

    frame = pd.read_parquet(file)
    assert list(frame.columns[:3]) == ["id", "embedding", "label"]
    assert len(frame.embedding[0]) == header.meta.dim
    assert json.loads(frame.payload[0])["path"] == frame.path[0]
    import datasets

    ds = datasets.load_dataset("parquet", data_files=file, split="train")
    ds.add_faiss_index("embedding")
    query = np.asarray(ds[0]["embedding"], np.float32)
    scores, found = ds.get_nearest_examples("embedding", query, k=3)
    assert found["id"][0] == ds[0]["id"]


def test_export_streams_in_pages_of_row_groups(store, tmp_path):
    file = str(tmp_path / "pages.parquet")
    with connect(StoreConfig(path=store)) as s:
        header, pages = read(s, "photos", page=5)
        assert write_parquet(file, header, pages) == 12
    assert pq.ParquetFile(file).metadata.num_row_groups == 3  # 5 + 5 + 2: one page at a time
    _, back = read_parquet(file, page=4)
    assert [len(p.points) for p in back] == [4, 4, 4]


def test_import_refuses_a_collection_built_with_another_model(store, tmp_path, tiny_vit_other):
    file = str(tmp_path / "photos.parquet")
    run("export", file, "--qdrant-path", store, "--collection", "photos")
    other = str(tmp_path / "other")
    folder = str(tmp_path / "imgs")
    shutil.copytree(Path(__file__).parent / "fixtures", folder)
    run("ingest", "--dataset", folder, "--model", tiny_vit_other, "--qdrant-path", other,
        "--collection", "photos")  # fmt: skip
    refused = run("import", file, "--qdrant-path", other, ok=False)
    assert refused.exit_code == 1 and "was built with model" in refused.output
    bad = tmp_path / "bad.parquet"
    bad.write_bytes(b"not parquet")
    refused = run("import", str(bad), "--qdrant-path", other, ok=False)
    assert "is not a Parquet file" in refused.output


def test_copy_between_stores_then_search_the_copy(store, image_folder, tmp_path):
    target = str(tmp_path / "target")
    run("copy", "--qdrant-path", store, "--collection", "photos", "--to-qdrant-path", target)
    query = str(image_folder / "blue" / "blue_2.jpg")
    assert hits(target, query) == hits(store, query)
    refused = run("copy", "--qdrant-path", store, "--collection", "photos",
                  "--to-qdrant-path", store, ok=False)  # fmt: skip
    assert "onto itself" in refused.output


def test_collections_lists_and_drop_asks(store, tmp_path):
    rows = [json.loads(line) for line in run("collections", "--qdrant-path", store, "--json")
            .stdout.splitlines()]  # fmt: skip
    assert [r["collection"] for r in rows] == ["photos", "spare"]
    assert rows[0]["points"] == 12 and rows[0]["synced"] and rows[0]["dataset"]
    table = run("collections", "--qdrant-path", store).stdout
    assert "last sync" in table and "spare" in table
    # No answer, or no: nothing goes. An environment variable cannot say yes.
    run("drop", "spare", "--qdrant-path", store, input="n\n", ok=False)
    run("drop", "spare", "--qdrant-path", store, ok=False, env={"LOOKALIKE_DROP_YES": "1"})
    with connect(StoreConfig(path=store)) as s:
        assert "spare" in s.names()
    assert "dropped 'spare'" in run("drop", "spare", "--qdrant-path", store, input="y\n").stdout
    missing = run("drop", "spare", "--qdrant-path", store, "--yes", ok=False)
    assert "does not exist" in missing.output
    with connect(StoreConfig(path=store)) as s:
        assert s.names() == ["photos"]


# A server, as the stub plays one: the requests of a bulk load, in order.
META = CollectionMeta("m", "cls", 4, "d", "image", "label", ("a", "b"))
COLLECTION = {
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
            "indexing_threshold": 20000,
        },
        "wal_config": {"wal_capacity_mb": 32, "wal_segments_ahead": 0},
    },
    "payload_schema": {"label": {"data_type": "integer", "points": 0}},
}


class Server:
    """No collection until one is created; yellow (indexing) twice after the load."""

    def __init__(self) -> None:
        self.yellow = 2

    def __call__(self, method, path, n):
        if path.endswith("/exists"):
            return {"exists": False}
        if method == "GET" and path == "/collections/c":
            restored = sum(r["method"] == "PATCH" for r in self.stub.requests) == 2
            if restored and self.yellow:
                self.yellow -= 1
                return {**COLLECTION, "status": "yellow"}
            return COLLECTION
        if method == "PUT" and path.count("/") > 2 or method == "PATCH":
            return {"operation_id": 1, "status": "completed"} if method == "PUT" else True
        return True


@pytest.fixture
def server(monkeypatch):
    monkeypatch.setattr("lookalike.store.bulk.POLL", 0.01)
    behave = Server()
    stub = StubQdrant(behave)
    behave.stub = stub
    yield stub
    stub.close()


def test_a_bulk_load_into_a_server_indexes_fields_first_and_the_graph_last(server):
    header = Header("c", META, 6, None, {"label": "integer", "colour": "keyword"})
    rng = np.random.default_rng(0)
    pages = [
        Page(
            [
                Tracked(f"00000000-0000-0000-0000-00000000000{i + j}", {"colour": "red"})
                for j in range(3)
            ],
            rng.random((3, 4), dtype=np.float32),
        )  # fmt: skip
        for i in (0, 3)
    ]
    config = StoreConfig(url=server.url, retries=0, check_compatibility=False)
    with connect(config) as s:
        report = load(s, "c", header, pages)
    assert report.points == 6
    steps = [(r["method"], r["path"], r["body"]) for r in server.requests]
    writes = [(m, p) for m, p, _ in steps if m in ("PUT", "PATCH")]
    assert writes[0] == ("PUT", "/collections/c")  # created, then its payload indexes
    fields = [json.loads(b)["field_name"] for m, p, b in steps if p.endswith("/index")]
    assert fields == ["label", "colour"]
    patches = [json.loads(b)["optimizers_config"] for m, _, b in steps if m == "PATCH"]
    assert patches == [{"indexing_threshold": 0}, {"indexing_threshold": 20000}]
    first_patch = writes.index(("PATCH", "/collections/c"))
    upserts = [i for i, w in enumerate(writes) if w == ("PUT", "/collections/c/points")]
    last_index = max(i for i, w in enumerate(writes) if w[1].endswith("/index"))
    assert last_index < first_patch < min(upserts) and max(upserts) < len(writes) - 1
    assert writes[-1] == ("PATCH", "/collections/c")  # restored after the last point
    gets = [i for i, (m, p, _) in enumerate(steps) if (m, p) == ("GET", "/collections/c")]
    assert gets[-1] > len(steps) - 3  # it looked until green (after two yellows)


def test_a_server_collection_is_created_with_shards_replicas_and_write_consistency(server):
    from lookalike.index import IndexSettings

    config = StoreConfig(url=server.url, retries=0, check_compatibility=False)
    with connect(config) as s:
        s.prepare("c", META, index=IndexSettings(shards=6, replicas=2, write_consistency=2))
    (body,) = server.bodies("PUT", "/collections/c")
    assert (body["shard_number"], body["replication_factor"]) == (6, 2)
    assert body["write_consistency_factor"] == 2
    refused = run("ingest", "--qdrant-url", server.url, "--replicas", "1",
                  "--write-consistency", "2", ok=False)  # fmt: skip
    assert refused.exit_code == 2 and "write consistency 2 needs as many replicas" in refused.output


def test_info_keeps_no_label_that_no_image_has(image_folder, tiny_vit, tmp_path):
    folder = tmp_path / "imgs"
    shutil.copytree(image_folder, folder)
    store = str(tmp_path / "store")
    sync = ("ingest", "--dataset", str(folder), "--model", tiny_vit, "--qdrant-path", store)
    run(*sync)
    shutil.rmtree(folder / "green")
    run(*sync)
    info = json.loads(run("info", "--qdrant-path", store, "--json").stdout)
    assert info["label_names"] == ["blue", "red"] and info["points"] == 8
    assert "labels             blue, red" in run("info", "--qdrant-path", store).stdout
