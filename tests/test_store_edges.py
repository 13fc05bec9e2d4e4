"""A store that cannot be written, a disk full or out of inodes, and text that is not UTF-8:
each one line, never a traceback."""

from __future__ import annotations

import os

import pytest
from click.testing import CliRunner

from lookalike.cli.main import cli
from lookalike.errors import DiskFull
from lookalike.store import disk


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


@pytest.fixture(scope="module")
def built(tmp_path_factory, image_folder, tiny_vit):
    store = ["--qdrant-path", tmp_path_factory.mktemp("edges") / "store", "--collection", "c"]
    result = run("ingest", "--dataset", image_folder, "--model", tiny_vit, *store)
    assert result.exit_code == 0, result.output
    return store


def one_line(result) -> str:
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output and result.exception.__class__ is SystemExit
    return result.stderr


@pytest.mark.parametrize("command", [["info"], ["search", "--text", "leaf"]])
def test_a_read_only_store_is_refused_in_one_line(built, monkeypatch, command):
    real = open

    def read_only(path, *args, **kwargs):  # a read-only mount (root is exempt from chmod)
        if os.path.basename(str(path)).startswith(".") and args and "a" in args[0]:
            raise OSError(30, "Read-only file system", str(path))
        return real(path, *args, **kwargs)

    monkeypatch.setattr(disk, "open", read_only, raising=False)
    err = one_line(run(*command, *built))
    assert "Read-only file system" in err and "must be writable" in err


def test_text_that_is_not_utf8_is_one_line(built):
    err = one_line(run("search", "--text", "caf\udce9", *built))
    assert "not UTF-8" in err


def test_a_disk_out_of_inodes_says_so_not_zero_bytes_needed(tmp_path, monkeypatch):
    real = os.statvfs

    def statvfs(path):
        st = real(path)
        fields = list(st)
        fields[5], fields[7] = 1000, 0  # f_files, f_favail
        return os.statvfs_result(fields)

    monkeypatch.setattr(disk.os, "statvfs", statvfs)
    error = disk.full("the edge store", "store images", str(tmp_path))
    assert isinstance(error, DiskFull) and "no free inodes" in str(error)
    assert "0 B are needed" not in str(error)
    monkeypatch.setattr(disk.os, "statvfs", real)
    assert "0 B" not in str(disk.full("the edge store", "store images", str(tmp_path)))


def test_closing_a_store_whose_flush_fails_raises_nothing(built, monkeypatch):
    import qdrant_edge as qe

    from lookalike.store import StoreConfig, connect

    def full(self):
        raise OSError(28, "No space left on device")

    path = built[1]
    store = connect(StoreConfig(path=str(path)))
    assert store.info("c").points == 12
    monkeypatch.setattr(qe.EdgeShard, "flush", full)
    with pytest.warns(UserWarning, match="could not flush"):
        store.close()
