"""An image folder is walked safely: a sub-folder that cannot be read removes nothing, links
that leave the folder are not followed, a name that is not UTF-8 is skipped and named, `search
FOLDER` skips what vanished, and a folder emptied on purpose syncs down with --allow-empty."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from lookalike.cli.main import cli
from lookalike.source import load_source
from tests.conftest import make_image


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


@pytest.fixture
def folder(tmp_path) -> Path:
    """d/a/0.jpg, d/a/1.jpg, d/b/2.jpg, d/b/3.jpg."""
    root = tmp_path / "d"
    for i, sub in enumerate("aabb"):
        (root / sub).mkdir(parents=True, exist_ok=True)
        make_image((40 * i, 90, 200 - 40 * i), seed=i).save(root / sub / f"{i}.jpg")
    return root


@pytest.fixture
def store(tmp_path, tiny_vit):
    return ["--qdrant-path", tmp_path / "store", "--collection", "c", "--model", tiny_vit]


def sync(folder, store, *extra):
    result = run("ingest", "--dataset", folder, "--json", *store, *extra)
    report = json.loads(result.stdout) if result.exit_code == 0 else None
    return result, report


def test_an_unreadable_sub_folder_removes_nothing_and_is_said(folder, store, monkeypatch):
    assert sync(folder, store)[1]["added"] == 4
    real = os.scandir

    def scandir(path="."):  # as chmod 000 does for a user without DAC override
        if os.fspath(path).rstrip("/").endswith("/b"):
            raise PermissionError(13, "Permission denied", os.fspath(path))
        return real(path)

    monkeypatch.setattr(os, "scandir", scandir)
    result, report = sync(folder, store)
    assert result.exit_code == 0, result.output
    assert report["removed"] == 0 and report["unchanged"] == 2
    assert "cannot read the folder b/ (Permission denied)" in result.stderr


def test_links_out_of_the_folder_are_not_followed(folder, tmp_path):
    outside = tmp_path / "secret.jpg"
    make_image((1, 2, 3), seed=5).save(outside)
    (folder / "a" / "root").symlink_to("/")
    (folder / "a" / "secret.jpg").symlink_to(outside)
    (folder / "a" / "loop").symlink_to(folder)  # inside: followed once, loops cut
    source = load_source(str(folder))
    assert sorted(source.paths) == ["a/0.jpg", "a/1.jpg", "b/2.jpg", "b/3.jpg"]
    said = "\n".join(source.notes)
    assert "lead out of the folder, not followed: 2 (a/root, a/secret.jpg)" in said


def test_a_name_that_is_not_utf8_is_skipped_and_named(folder, store):
    with open(os.path.join(os.fsencode(folder / "a"), b"caf\xe9.jpg"), "wb") as f:
        f.write((folder / "a" / "0.jpg").read_bytes())
    result, report = sync(folder, store)
    assert result.exit_code == 0, result.output
    assert report["added"] == 4
    assert "not UTF-8, skipped (rename them): 1 (a/caf\\xe9.jpg)" in result.stderr


def test_search_folder_skips_a_dangling_link(folder, store):
    assert sync(folder, store)[0].exit_code == 0
    (folder / "b" / "gone.jpg").symlink_to(folder / "nowhere.jpg")
    result = run("search", folder, "--k", "1", "--json", *store)
    assert result.exit_code == 0, result.output
    assert len(result.stdout.splitlines()) == 4
    assert "skipped" in result.stderr and "gone.jpg" in result.stderr


def test_an_emptied_folder_syncs_down_only_when_allowed(folder, store):
    assert sync(folder, store)[1]["added"] == 4
    for image in folder.rglob("*.jpg"):
        image.unlink()
    result, _ = sync(folder, store)
    assert result.exit_code == 1 and "is empty" in result.stderr  # an unmounted disk, maybe
    result, report = sync(folder, store, "--allow-empty")
    assert result.exit_code == 0, result.output
    assert report["removed"] == 4


def test_serve_watch_on_a_missing_folder_does_not_advise_dataset(tmp_path):
    result = run("serve", "--watch", tmp_path / "missing", "--qdrant-path", tmp_path / "s")
    assert result.exit_code != 0
    assert "--dataset" not in result.output and "missing" in result.output


def test_serve_watch_losing_its_folder_does_not_advise_dataset(tmp_path, capsys):
    import threading

    from lookalike.cli.sync import _warn_unless_stopping
    from lookalike.errors import DatasetLoadError

    gone = DatasetLoadError(str(tmp_path), "folder is gone", kind="missing")
    _warn_unless_stopping(threading.Event())(gone)
    err = capsys.readouterr().err
    assert "folder is gone" in err and "--dataset" not in err
