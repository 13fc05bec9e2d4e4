"""A store, its photo folder and its model copied to other paths (another folder, another
machine) work there: search takes the model at its new place when its files match, and a sync
of the moved folder changes nothing and embeds nothing. Only a partial match asks for
--relocate. Tiny random model, an image folder made here, real embedded stores."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from lookalike.cli.main import cli
from lookalike.errors import DatasetMoved, ModelMismatch
from lookalike.identity import model_hash, same_model
from lookalike.store import StoreConfig, connect


def run(*args: str, ok: bool = True):
    result = CliRunner().invoke(cli, list(args))
    if ok:
        assert result.exit_code == 0, result.output
    return result


@pytest.fixture(scope="module")
def built(tmp_path_factory, image_folder, tiny_vit) -> Path:
    """~/a: lookalike-data, photos and model side by side, the photos ingested from there."""
    home = tmp_path_factory.mktemp("machine1")
    shutil.copytree(image_folder, home / "photos")
    shutil.copytree(tiny_vit, home / "model")
    store = str(home / "lookalike-data")
    run("ingest", "--dataset", str(home / "photos"), "--model", str(home / "model"),
        "--qdrant-path", store, "--json")  # fmt: skip
    return home


def search(store: str, query: str, *more: str) -> list[dict]:
    out = run("search", query, "--qdrant-path", store, "--collection", "photos", "--json", *more)
    return [(h["id"], round(h["score"], 5)) for h in json.loads(out.stdout)["hits"]]


@pytest.fixture
def moved(built, tmp_path) -> Path:
    """The three folders copied elsewhere (new times, new inodes), the originals gone."""
    there = tmp_path / "machine2"
    for name in ("lookalike-data", "photos", "model"):
        shutil.copytree(built / name, there / name)  # copytree keeps times: copy2
    for f in (there / "photos").rglob("*.jpg"):
        os.utime(f)  # as `cp -r` leaves them: a new time, the same bytes
    return there


def test_search_and_a_sync_after_a_move_change_nothing(built, moved, monkeypatch):
    before = search(str(built / "lookalike-data"), str(built / "photos/red/red_0.jpg"))
    monkeypatch.chdir(moved)
    hidden = built.with_name(built.name + "-away")
    built.rename(hidden)  # the old places are gone, as on another machine
    try:
        store = str(moved / "lookalike-data")
        # The model recorded at the old path is found beside the store by its files' hash...
        assert search(store, "photos/red/red_0.jpg") == before
        # ...and taken when given at its new path.
        assert search(store, "photos/red/red_0.jpg", "--model", "model") == before
        sync = run("ingest", "--dataset", "photos", "--qdrant-path", store, "--json")
        report = json.loads(sync.stdout)
        assert (report["unchanged"], report["embedded"]) == (12, 0)
        assert not any(report[k] for k in ("added", "updated", "renamed", "removed"))
        info = json.loads(run("info", "--qdrant-path", store, "--json").stdout)
        assert (info["dataset"], info["model"]) == (str(moved / "photos"), str(moved / "model"))
        # The recorded places are now the new ones: ids stay, the next sync is as quiet.
        again = json.loads(run("ingest", "--dataset", "photos", "--qdrant-path", store,
                               "--json").stdout)  # fmt: skip
        assert (again["unchanged"], again["embedded"]) == (12, 0)
        assert search(store, "photos/red/red_0.jpg") == before
    finally:
        hidden.rename(built)


def test_a_symlink_to_the_folder_is_the_same_dataset(built, tmp_path):
    link = tmp_path / "link"
    link.symlink_to(built / "photos")
    store = str(built / "lookalike-data")
    out = run("ingest", "--dataset", str(link), "--collection", "photos", "--qdrant-path", store,
              "--json")  # fmt: skip
    report = json.loads(out.stdout)
    assert (report["unchanged"], report["embedded"], report["added"]) == (12, 0, 0)
    run("ingest", "--dataset", str(built / "photos"), "--qdrant-path", store)


def test_a_partial_match_asks_for_relocate(moved, monkeypatch):
    monkeypatch.chdir(moved)
    (moved / "photos/red/red_0.jpg").unlink()
    store = str(moved / "lookalike-data")
    refused = run("ingest", "--dataset", "photos", "--qdrant-path", store, ok=False)
    assert refused.exit_code != 0
    assert "11 of its 12 images are in" in refused.output and "--relocate" in refused.output
    out = run("ingest", "--dataset", "photos", "--qdrant-path", store, "--relocate", "--json")
    report = json.loads(out.stdout)
    assert (report["unchanged"], report["removed"], report["embedded"]) == (11, 1, 0)


def test_another_folder_is_still_another_dataset(moved, tmp_path, monkeypatch):
    other = tmp_path / "other"
    other.mkdir()
    shutil.copy(moved / "photos/red/red_0.jpg", other / "x.jpg")
    os.truncate(other / "x.jpg", 100)  # no image in common
    refused = run("ingest", "--dataset", str(other), "--collection", "photos",
                  "--qdrant-path", str(moved / "lookalike-data"), ok=False)  # fmt: skip
    assert "holds images of dataset" in refused.output and "--relocate" not in refused.output


def test_another_model_is_refused_and_an_old_record_still_searches(moved, tiny_vit_other):
    other = tiny_vit_other
    assert model_hash(other) != model_hash(str(moved / "model"))
    assert same_model(str(moved / "model"), None, str(moved / "model"))
    store = str(moved / "lookalike-data")
    refused = run("search", str(moved / "photos/red/red_0.jpg"), "--qdrant-path", store,
                  "--model", other, ok=False)  # fmt: skip
    assert "was built with model" in refused.output
    # A record written before lookalike kept hashes: no new fields, and search still works.
    with connect(StoreConfig(path=store)) as s:
        meta = s.info("photos").meta
        assert meta.model_hash is not None
        s._set_meta("photos", type(meta).from_dict({**meta.to_dict(), "model_hash": None}))
        assert "model_hash" not in s.info("photos").meta.to_dict()
    assert search(store, str(moved / "photos/red/red_0.jpg"))


def test_errors_say_what_matched():
    e = DatasetMoved("photos", "/a/photos", "/b/photos", 11, 12, 1)
    assert isinstance(e, ModelMismatch)
    assert str(e).startswith("collection 'photos' holds images of dataset '/a/photos'; 11 of its")
