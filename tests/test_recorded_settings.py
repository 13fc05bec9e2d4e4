"""A command on an existing collection uses the collection's recorded dataset and model. A
different one typed on the command line is an error; one from an environment variable (the
README's offline block exports LOOKALIKE_DATASET and LOOKALIKE_MODEL) gives way to the record,
with one line naming the variable."""

from __future__ import annotations

import shutil

import pytest
from click.testing import CliRunner

from lookalike.cli.main import cli


def run(*args, env=None):
    return CliRunner().invoke(cli, [str(a) for a in args], env=env)


@pytest.fixture(scope="module")
def built(tmp_path_factory, image_folder, tiny_vit):
    """Collection 'c' of image_folder with tiny_vit; `other`: another folder of images."""
    store = tmp_path_factory.mktemp("recorded") / "store"
    other = tmp_path_factory.mktemp("other") / "elsewhere"
    shutil.copytree(image_folder / "red", other / "red")
    args = ["--qdrant-path", store, "--collection", "c"]
    result = run("ingest", "--dataset", image_folder, "--model", tiny_vit, *args)
    assert result.exit_code == 0, result.output
    return {"args": args, "folder": image_folder, "other": other}


def test_search_with_a_model_from_the_environment_uses_the_collections(built, tiny_vit_other):
    query = built["folder"] / "red" / "red_0.jpg"
    env = {"LOOKALIKE_MODEL": tiny_vit_other}
    result = run("search", query, "--json", *built["args"], env=env)
    assert result.exit_code == 0, result.output
    assert "LOOKALIKE_MODEL" in result.stderr and "using its own" in result.stderr
    assert "leave --model out" not in result.output


def test_a_typed_model_that_differs_is_an_error_that_claims_no_pooling(built, tiny_vit_other):
    query = built["folder"] / "red" / "red_0.jpg"
    result = run("search", query, "--model", tiny_vit_other, *built["args"])
    assert result.exit_code == 1
    assert "leave --model out" in result.stderr
    # The collection's pooling is stated; the other model's is known only once it loads.
    assert result.stderr.count("pooling)") == 1, result.stderr


def test_ingest_with_a_typed_model_that_differs_claims_no_pooling_for_it(built, tiny_vit_other):
    args = ["--dataset", built["folder"], "--model", tiny_vit_other, *built["args"]]
    result = run("ingest", *args)
    assert result.exit_code == 1
    assert "(cls pooling)" in result.stderr and result.stderr.count("pooling)") == 1


def test_ingest_with_a_dataset_and_model_from_the_environment_syncs_the_collection(
    built, tiny_vit_other
):
    env = {"LOOKALIKE_DATASET": str(built["other"]), "LOOKALIKE_MODEL": tiny_vit_other}
    result = run("ingest", "--json", *built["args"], env=env)
    assert result.exit_code == 0, result.output
    assert '"removed": 0' in result.stdout and '"unchanged": 12' in result.stdout
    assert "LOOKALIKE_DATASET" in result.stderr and "LOOKALIKE_MODEL" in result.stderr


def test_ingest_without_a_dataset_syncs_the_collections_own(built):
    result = run("ingest", "--dry-run", "--json", *built["args"])
    assert result.exit_code == 0, result.output
    assert '"unchanged": 12' in result.stdout


def test_a_typed_dataset_that_differs_is_still_an_error(built):
    result = run("ingest", "--dataset", built["other"], *built["args"])
    assert result.exit_code == 1 and "holds images of dataset" in result.stderr


def test_tune_trains_on_the_collections_dataset_not_the_environments(
    built, tiny_vit_other, tmp_path, monkeypatch
):
    import lookalike.tune

    seen = {}

    def fake_tune(settings, train, val, output, *args, **kwargs):
        seen.update(model=settings.model, dataset=train.name)
        raise SystemExit(0)

    monkeypatch.setattr(lookalike.tune, "tune", fake_tune)
    env = {"LOOKALIKE_DATASET": str(built["other"]), "LOOKALIKE_MODEL": tiny_vit_other}
    args = ["--output", tmp_path / "out", "--val-split", "train", "--test-split", ""]
    result = run("tune", *args, *built["args"], env=env)
    assert result.exit_code == 0, result.output
    assert seen["dataset"] == str(built["folder"])
    assert seen["model"] != tiny_vit_other
    assert "LOOKALIKE_DATASET" in result.stderr and "LOOKALIKE_MODEL" in result.stderr


def test_tune_takes_a_typed_dataset(built, tmp_path, monkeypatch):
    import lookalike.tune

    seen = {}
    monkeypatch.setattr(
        lookalike.tune, "tune", lambda s, train, *a, **k: seen.update(d=train.name) or exit(0)
    )
    args = ["--output", tmp_path / "out", "--val-split", "train", "--test-split", ""]
    result = run("tune", "--dataset", built["other"], *args, *built["args"])
    assert result.exit_code == 0, result.output
    assert seen["d"] == str(built["other"])


@pytest.mark.parametrize("option", ["--val-split", "--test-split"])
def test_tune_names_the_option_of_a_missing_split(built, tmp_path, option):
    """image_folder has one split, train: the missing one is said with its own option."""
    splits = {"--val-split": "train", "--test-split": ""}
    splits[option] = "validation"
    args = [a for pair in splits.items() for a in pair]
    result = run("tune", "--output", tmp_path / "out", *args, *built["args"])
    assert result.exit_code == 1
    assert f"choose one with {option}" in result.stderr
    assert "with --split" not in result.stderr
