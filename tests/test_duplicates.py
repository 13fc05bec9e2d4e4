"""`lookalike duplicates` finds copies inside a collection and across its splits."""

import json
import shutil

import pytest
from click.testing import CliRunner
from PIL import Image

from lookalike.cli.main import cli
from tests.conftest import make_image


@pytest.fixture(scope="module")
def store_with_copies(tmp_path_factory, image_folder, effnet_dir):
    """train: the colour folder plus a resaved copy of red_0; test: another copy of red_0.
    A real model: a tiny random one finds all noise images of one colour near-identical."""
    tmp_path = tmp_path_factory.mktemp("duplicates")
    root = tmp_path / "data"
    shutil.copytree(image_folder, root / "train")
    Image.open(image_folder / "red" / "red_0.jpg").save(root / "train" / "red" / "copy.png")
    (root / "test" / "red").mkdir(parents=True)
    shutil.copy(image_folder / "red" / "red_0.jpg", root / "test" / "red" / "leak.jpg")
    make_image((10, 10, 10), seed=99).save(root / "test" / "red" / "other.jpg")
    store = ["--qdrant-path", str(tmp_path / "store")]
    for split in ("train", "test"):
        args = ["ingest", "--dataset", str(root), "--split", split, "--model", effnet_dir, *store]
        assert CliRunner().invoke(cli, args).exit_code == 0
    return store


def test_duplicates_finds_the_copies_and_the_leak(store_with_copies, tmp_path):
    grid = tmp_path / "pairs.png"
    args = [
        "duplicates",
        "--threshold",
        "0.9999",
        "--json",
        "--grid",
        str(grid),
        *store_with_copies,
    ]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    *pairs, summary = [json.loads(line) for line in result.stdout.splitlines()]
    names = [{p["a"]["path"].rsplit("/", 1)[1], p["b"]["path"].rsplit("/", 1)[1]} for p in pairs]
    assert {"red_0.jpg", "copy.png"} in names and {"leak.jpg", "red_0.jpg"} in names
    assert all(p["score"] >= 0.9999 for p in pairs)
    assert summary["points"] == 15 and summary["cross_split_pairs"] >= 2
    assert max(len(g) for g in summary["groups"]) == 3  # red_0, its copy and the leaked one
    assert Image.open(grid).size[0] > 0
    assert f"wrote the best 3 of 3 pairs to {grid}" in result.stderr


def test_duplicates_table_for_people(store_with_copies):
    result = CliRunner().invoke(cli, ["duplicates", "--threshold", "0.9999", *store_with_copies])
    assert result.exit_code == 0
    assert "of them cross splits (leakage)" in result.stdout
    assert result.stdout.splitlines()[0].split()[:4] == ["score", "a", "b", "cross-split"]


def _all_at_once(store, collection, threshold, neighbours=3):
    """The report as lookalike made it before streaming: every point's vector and payload
    read at once, every neighbour list kept (local mode: qdrant-client's distance matrix)."""
    from lookalike.search.duplicates import DuplicatePair, DuplicateReport, _groups

    points = store.info(collection).points
    if store.engine == "local":
        matrix = store.client.search_matrix_pairs(collection, sample=points, limit=neighbours)
        raw = [(str(p.a), str(p.b), p.score) for p in matrix.pairs]
    else:
        stored, vectors, _ = store.scroll(collection, points, with_vectors=True)
        found = store.query(collection, vectors, neighbours + 1)
        raw = [
            (p.id, n.id, n.score)
            for p, hits in zip(stored, found)
            for n in [n for n in hits if n.id != p.id][:neighbours]
        ]
    best = {}
    for a, b, score in raw:
        if a != b and score >= threshold:
            best[frozenset((a, b))] = max(score, best.get(frozenset((a, b)), -1.0))
    payloads = store.points(collection, sorted({i for key in best for i in key}))
    pairs = [
        DuplicatePair(score, *sorted((payloads[i] for i in key), key=lambda p: p.order()))
        for key, score in best.items()
    ]
    pairs.sort(key=lambda p: -p.score)
    return DuplicateReport(points, threshold, pairs, _groups(pairs), "given")


def _as_local(edge_path, local_path):
    """The same points (vectors and payloads) in a qdrant-client local-mode store."""
    from lookalike.records import ImageRecord
    from lookalike.store import StoreConfig, connect

    with connect(StoreConfig(path=edge_path)) as edge:
        meta = edge.info("beans").meta
        tracked, vectors, _ = edge.read_points("beans", 10_000)
    records = [
        ImageRecord(
            t.id,
            p["split"],
            p["row"],
            p["label"],
            p["label_name"],
            p["path"],
            None,
            sha256=p.get("sha256"),
        )
        for t in tracked
        for p in [t.payload]
    ]
    with connect(StoreConfig(path=local_path, engine="local")) as local:
        local.prepare("beans", meta)
        local.upsert("beans", records, vectors)


@pytest.mark.parametrize("engine", ["edge", "local"])
def test_streamed_report_equals_the_all_at_once_one(beans_store, tmp_path, engine):
    """300 real Beans leaves: the same pairs, scores, groups and cross-split flags as when
    every vector was read at once, while never more than a page of points is read at a time."""
    from lookalike.search.duplicates import find_duplicates
    from lookalike.store import StoreConfig, connect
    from lookalike.store.base import PAIRS_PAGE

    path = beans_store[1]
    if engine == "local":
        _as_local(path, str(tmp_path / "local"))
        path = str(tmp_path / "local")
    with connect(StoreConfig(path=path, engine=engine)) as store:
        scrolled = []
        scroll = store.scroll

        def counted(name, limit, *args, **kwargs):
            scrolled.append(limit)
            return scroll(name, limit, *args, **kwargs)

        # (local mode's all-at-once reference is slow: one threshold there)
        for threshold in (0.8, 0.9) if engine == "edge" else (0.9,):
            store.scroll = counted
            streamed = find_duplicates(store, "beans", threshold=threshold)
            store.scroll = scroll
            before = _all_at_once(store, "beans", threshold)
            assert len(streamed.pairs) > 0
            assert [p.to_dict() for p in streamed.pairs] == [p.to_dict() for p in before.pairs]
            assert streamed.to_dict() == before.to_dict()
        assert store.info("beans").points > PAIRS_PAGE and max(scrolled) <= PAIRS_PAGE
