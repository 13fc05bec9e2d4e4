"""The embedded edge engine past the size where it stops scanning: the HNSW graph is built,
keeps recall against exact search, quantization with its default oversampling keeps it too;
and the scale options reach the collection and the query from the command line."""

import json
import sys
import uuid
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from lookalike.cli import sync as ingest_commands
from lookalike.cli.main import cli
from lookalike.index import EXACT, IndexSettings, SearchSettings, effective
from lookalike.records import CollectionMeta, ImageRecord
from lookalike.search.evaluation import overlap
from lookalike.store import StoreConfig, connect

sys.path.insert(0, str(Path(__file__).parents[1] / "bench"))
from store_bench import Synthetic, exact_top  # noqa: E402  (the benchmark's own vectors)

# Two segments of 768-d vectors, each past the 10 MB under which edge scans instead.
N = 16_000
META = CollectionMeta("m", "cls", 768, "synthetic", "image", "label", ())


@pytest.fixture(scope="module")
def vectors():
    return Synthetic().points(0, N), Synthetic().queries(N, 100)


def build(path, vectors, **index):
    records = [
        ImageRecord(
            str(uuid.uuid5(uuid.NAMESPACE_URL, str(i))), "train", i, i % 7, None, None, None
        )
        for i in range(N)
    ]
    store = connect(StoreConfig(path=str(path)))
    store.prepare("big", META, index=IndexSettings(**index))
    store.upsert("big", records, vectors)
    store.finish("big")
    return store


def rows(results):
    return [[h.row for h in hits] for hits in results]


@pytest.fixture(scope="module")
def built(tmp_path_factory, vectors):
    """Stores of the synthetic vectors by quantization, each built once and closed."""
    paths = {}

    def get(quantization: str) -> Path:
        if quantization not in paths:
            path = tmp_path_factory.mktemp(f"big-{quantization}")
            build(path, vectors[0], quantization=quantization).close()
            paths[quantization] = path
        return paths[quantization]

    return get


@pytest.mark.parametrize("quantization", ["none", "int8"])
def test_hnsw_is_built_and_keeps_recall_against_exact(built, vectors, quantization):
    points, queries = vectors
    with connect(StoreConfig(path=str(built(quantization)))) as store:
        info = store.info("big")
        params = effective(None, info.index)
        found = rows(store.query("big", queries, 5, params=params))
        exact = rows(store.query("big", queries, 5, params=EXACT))
        filtered = store.query("big", queries[:10], 5, label=3, params=params)
    assert (info.points, info.indexed_points) == (N, N)  # searched through the graph
    assert params.oversampling == (2.0 if quantization == "int8" else None)
    assert exact == exact_top(points, queries).tolist()  # exact really is exact
    recall = np.mean([len(set(a) & set(b)) / 5 for a, b in zip(found, exact)])
    assert recall >= 0.99
    assert all(h.label == 3 for hits in filtered for h in hits)
    assert all(len(hits) == 5 for hits in filtered)


def test_reopened_store_answers_the_same(built, vectors):
    _, queries = vectors
    config = StoreConfig(path=str(built("none")))
    with connect(config) as store:
        before = rows(store.query("big", queries[:20], 5))
    with connect(config) as store:
        assert store.engine == "edge" and store.info("big").indexed_points == N
        assert rows(store.query("big", queries[:20], 5)) == before


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


@pytest.fixture(scope="module")
def quantized(tmp_path_factory, image_folder, tiny_vit):
    store = ["--qdrant-path", tmp_path_factory.mktemp("scale") / "store", "--collection", "q"]
    result = run(
        "ingest",
        "--dataset",
        image_folder,
        "--model",
        tiny_vit,
        "--device",
        "cpu",
        "--quantization",
        "int8",
        "--hnsw-m",
        8,
        "--hnsw-ef-construct",
        32,
        *store,
    )
    assert result.exit_code == 0, result.output
    return store


def test_index_options_reach_the_collection(quantized):
    info = json.loads(run("info", "--json", *quantized).stdout)
    assert info["engine"] == "edge" and info["points"] == 12
    assert info["index"] == {
        "hnsw_m": 8,
        "hnsw_ef_construct": 32,
        "on_disk": False,
        "quantization": "int8",
        "shards": 1,
        "replicas": 1,
        "write_consistency": 1,
    }
    table = run("info", *quantized).stdout
    assert "m=8 ef_construct=32" in table and "int8" in table


def test_search_params_and_recall_from_the_command_line(quantized):
    default = run("search", "train:0", "--json", "--k", 4, *quantized)
    exact = run("search", "train:0", "--json", "--k", 4, "--exact", *quantized)
    wide = run(
        "search", "train:0", "--json", "--k", 4, "--hnsw-ef", 64, "--oversampling", 3, *quantized
    )
    ids = [[h["id"] for h in json.loads(r.stdout)["hits"]] for r in (default, exact, wide)]
    assert ids[0] == ids[1] == ids[2] and len(ids[0]) == 4
    report = run(
        "eval", "--split", "train", "--recall", "--near-duplicates", 0, "--json", *quantized
    )
    assert report.exit_code == 0, report.output
    assert json.loads(report.stdout)["recall_at_k"] == 1.0
    plain = run("eval", "--split", "train", "--near-duplicates", 0, "--json", *quantized)
    assert "recall_at_k" not in json.loads(plain.stdout)  # only when asked for
    table = run("eval", "--split", "train", "--recall", "--near-duplicates", 0, *quantized)
    assert "recall@5 vs exact" in table.stdout


def test_bad_search_params_are_refused(quantized):
    result = run("search", "train:0", "--hnsw-ef", 0, *quantized)
    assert result.exit_code == 2 and "--hnsw-ef" in result.output
    with pytest.raises(Exception, match="oversampling must be at least 1"):
        SearchSettings(oversampling=0.5)


def test_overlap_counts_the_true_neighbours_found():
    from lookalike.records import Hit

    def hits(*ids):
        return [
            Hit(str(x), None, None, None, None, None, rank=i, score=0.0) for i, x in enumerate(ids)
        ]

    assert overlap(hits(1, 2, 3), hits(1, 2, 4)) == pytest.approx(2 / 3)
    assert overlap([], []) == 1.0


def test_local_mode_warns_past_its_size(tmp_path, image_folder, tiny_vit, monkeypatch):
    monkeypatch.setattr(ingest_commands, "LOCAL_MODE_POINTS", 5)
    result = run(
        "ingest",
        "--dataset",
        image_folder,
        "--model",
        tiny_vit,
        "--device",
        "cpu",
        "--qdrant-path",
        tmp_path / "s",
        "--embedded-engine",
        "local",
    )
    assert result.exit_code == 0, result.output
    assert "local-mode folder" in result.stderr and "--qdrant-path" in result.stderr
    info = json.loads(run("info", "--json", "--qdrant-path", tmp_path / "s").stdout)
    assert info["engine"] == "local"  # auto keeps a local-mode folder on local


def test_a_collection_whose_creation_died_is_made_again(tmp_path):
    (tmp_path / "s" / "edge" / "c" / "shard").mkdir(parents=True)  # no lookalike.json
    meta = CollectionMeta("m", "cls", 4, "d", "image", None)
    with connect(StoreConfig(path=str(tmp_path / "s"))) as store:
        assert not store.exists("c") and store.names() == []
        store.prepare("c", meta)
        store.upsert(
            "c",
            [ImageRecord(str(uuid.uuid4()), "train", 0, None, None, None, None)],
            np.ones((1, 4), np.float32),
        )
        assert store.info("c").points == 1 and store.names() == ["c"]
