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
