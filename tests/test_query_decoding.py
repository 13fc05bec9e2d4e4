"""A query is embedded the same way everywhere: the command line decodes a query photo at the
model's size, as ingest and the Searcher (HTTP, Python) do, so a stored 12 MP photo scores
1.0 against itself, not 0.999."""

from __future__ import annotations

import json

from click.testing import CliRunner

from lookalike.cli.main import cli


def test_a_stored_camera_photo_finds_itself_at_one(photo_folder, effnet_dir, tmp_path):
    store = ["--qdrant-path", tmp_path / "store", "--collection", "c", "--model", effnet_dir]
    store += ["--precision", "fp32"]
    args = [str(a) for a in ["ingest", "--dataset", photo_folder, *store]]
    assert CliRunner().invoke(cli, args).exit_code == 0
    query = photo_folder / "photo0.jpg"
    args = [str(a) for a in ["search", query, "--include-self", "--k", "1", "--json", *store]]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    hit = json.loads(result.stdout)["hits"][0]
    assert hit["path"] == "photo0.jpg"
    assert hit["score"] >= 0.99999, hit["score"]
