"""A store left unfinished or damaged is finished or refused in one line: an ingest killed
after writing leaves no integrity record, and the next sync (with nothing to write) writes it
and builds the payload indexes; a check.json nested too deep is reported, not a traceback."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from lookalike.cli.main import cli
from lookalike.store import StoreConfig, connect
from lookalike.store.integrity import CHECK_FILE


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


@pytest.fixture
def built(image_folder, tiny_vit, tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    for sub in ("red", "green"):
        (folder / sub).mkdir()
        for f in (image_folder / sub).iterdir():
            (folder / sub / f.name).write_bytes(f.read_bytes())
    rows = [{"file_name": f"red/red_{i}.jpg", "n": i} for i in range(4)]
    (folder / "metadata.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    store = tmp_path / "store"
    args = ["--dataset", folder, "--qdrant-path", store, "--collection", "c", "--model", tiny_vit]
    result = run("ingest", *args)
    assert result.exit_code == 0, result.output
    return args, store / "collections" / "c" if (store / "collections").is_dir() else store


def check_file(store: Path) -> Path:
    found = list(store.rglob(CHECK_FILE))
    assert len(found) == 1, found
    return found[0]


def test_a_sync_with_nothing_to_write_finishes_a_killed_ingest(built):
    args, store = built
    record = check_file(store)
    record.unlink()  # as an ingest killed between its writes and its finish leaves it
    folder = record.parent
    with connect(StoreConfig(path=str(args[3]))) as s:  # and without its payload index
        assert "n" in s.indexed_fields("c")
    result = run("ingest", "--json", *args)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["unchanged"] == 8
    assert (folder / CHECK_FILE).exists()


def test_a_check_file_nested_too_deep_is_one_line(built):
    args, store = built
    check_file(store).write_text("[" * 100_000 + "]" * 100_000)
    result = run("info", "--qdrant-path", args[3], "--collection", "c")
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output and "nested too deeply" in result.stderr
    assert "check.json" in result.stderr


def test_a_collection_record_nested_too_deep_is_one_line(built, tmp_path):
    """lookalike.json (edge) and local mode's meta.json: a RecursionError was a traceback."""
    args, store = built
    copy = tmp_path / "copy"
    shutil.copytree(args[3], copy)
    (check_file(copy).parent / "lookalike.json").write_text("[" * 100_000 + "]" * 100_000)
    result = run("info", "--qdrant-path", str(copy), "--collection", "c")
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    assert "lookalike.json nested too deeply" in result.stderr
    local = tmp_path / "local"
    local.mkdir()
    (local / "meta.json").write_text("[" * 100_000 + "]" * 100_000)
    result = run("info", "--qdrant-path", str(local))
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    assert "nests JSON too deeply" in result.stderr and len(result.stderr.splitlines()) == 1
