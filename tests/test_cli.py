"""The command line through click's CliRunner: outputs, JSON shapes, errors as one line."""

import json

import pytest
from click.testing import CliRunner

from lookalike.cli.main import cli


def run(*args, env=None):
    result = CliRunner().invoke(cli, [str(a) for a in args], env=env)
    return result


@pytest.fixture(scope="module")
def built(tmp_path_factory, image_folder, tiny_vit):
    """A collection ingested through the CLI, once for the module (the tests below leave it as
    it was); returns the store options to reuse."""
    store = ["--qdrant-path", tmp_path_factory.mktemp("cli") / "store", "--collection", "colours"]
    result = run(
        "ingest", "--dataset", image_folder, "--model", tiny_vit, "--device", "cpu", *store
    )
    assert result.exit_code == 0, result.output
    assert "12 added, 0 updated, 0 renamed, 0 removed, 0 unchanged, 0 skipped" in result.stdout
    return store


def built_model(store_args) -> str:
    return json.loads(run("info", "--json", *store_args).stdout)["model"]


def test_search_json_lines_shape(built, image_folder):
    query = image_folder / "red" / "red_1.jpg"
    result = run("search", query, "train:0", "--k", 3, "--json", *built)
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [line["query"] for line in lines] == [str(query), "train:0"]
    hit = lines[0]["hits"][0]
    assert set(hit) == {
        *("rank", "id", "score", "label", "label_name", "split", "row", "path"),
        *("sha256", "metadata"),
    }
    assert set(lines[0]) == {"query", "query_label", "query_label_name", "excluded_self", "hits"}
    # The query file is one of the collection's images: not its own first hit, but its label
    # is known and the output says it was left out.
    assert (lines[0]["query_label_name"], lines[0]["excluded_self"]) == ("red", True)
    assert (hit["rank"], hit["label_name"]) == (1, "red") and hit["path"] != "red/red_1.jpg"
    # The path is relative to the dataset folder, the row none (a file's place shifts).
    assert hit["path"].startswith("red/") and hit["row"] is None and hit["metadata"] == {}
    assert [h["rank"] for h in lines[1]["hits"]] == [1, 2, 3]
    assert lines[1]["excluded_self"] and lines[1]["query_label_name"] == "blue"


def test_include_self_keeps_the_query_as_its_own_first_hit(built, image_folder):
    query = image_folder / "red" / "red_1.jpg"
    result = run("search", query, "--k", 3, "--json", "--include-self", *built)
    line = json.loads(result.stdout)
    assert (line["hits"][0]["path"], line["excluded_self"]) == ("red/red_1.jpg", False)
    assert line["hits"][0]["score"] == pytest.approx(1.0, abs=1e-4)
    assert line["query_label_name"] == "red"


def test_search_table_for_people(built):
    result = run("search", "train:4", "--label", "green", *built)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == "query: train:4 (label green)"
    assert lines[1].split() == ["rank", "score", "label", "path", "id"]  # a plain folder
    rows = [ln for ln in lines[3:] if ln.strip() and not ln.startswith("(")]
    assert len(rows) == 3  # 4 green candidates, the query itself left out
    assert all(" green " in ln for ln in rows)
    assert "left out; --include-self keeps it" in result.stdout


def test_grid_says_where_it_wrote(built, tmp_path):
    result = run("search", "train:0", "train:5", "--grid", "grid.png", *built)
    assert result.exit_code == 0, result.output
    assert f"wrote 2 queries and their neighbours to {tmp_path / 'grid.png'}" in result.stderr
    from PIL import Image

    assert Image.open(tmp_path / "grid.png").size[1] > 2 * 192


def test_env_vars_shared_and_per_command(built, image_folder):
    env = {
        "LOOKALIKE_QDRANT_PATH": str(built[1]),  # shared: the store is the same for every command
        "LOOKALIKE_COLLECTION": "colours",
        "LOOKALIKE_SEARCH_K": "2",  # per command
        "LOOKALIKE_EVAL_K": "4",  # not search's
    }
    result = run("search", "train:0", "--json", env=env)
    assert result.exit_code == 0, result.output
    assert len(json.loads(result.stdout)["hits"]) == 2
    assert "warning" not in result.stderr


def test_old_shared_variables_are_not_read_and_say_so(built, image_folder, tiny_vit):
    """LOOKALIKE_SPLIT meant test for eval and train for ingest: exported for eval, it once put
    the test split into the gallery at the next ingest."""
    env = {"LOOKALIKE_SPLIT": "nonexistent", "LOOKALIKE_RECREATE": "1"}
    args = ["ingest", "--dataset", image_folder, "--model", tiny_vit, "--json", *built]
    result = run(*args, env=env)
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["unchanged"] == 12  # not recreated, and the train split as before
    assert "LOOKALIKE_SPLIT is not read by lookalike: set " in result.stderr
    assert "LOOKALIKE_EVAL_SPLIT" in result.stderr and "LOOKALIKE_INGEST_SPLIT" in result.stderr


@pytest.mark.parametrize(
    "variable", ["LOOKALIKE_INGEST_RECREATE", "LOOKALIKE_RECREATE", "LOOKALIKE_TRUST_REMOTE_CODE"]
)
def test_destructive_and_trust_flags_come_only_from_the_command_line(variable):
    from lookalike.cli.environment import read_variables

    assert variable not in read_variables(cli)
    flags = {opt for opts in read_variables(cli).values() for opt in opts}
    assert not any("--recreate" in f or "--trust-remote-code" in f for f in flags)


def test_reingest_keeps_one_point_per_image(built, image_folder, tiny_vit):
    again = ["ingest", "--dataset", image_folder, "--model", tiny_vit, "--json", *built]
    report = json.loads(run(*again).stdout)
    assert (report["embedded"], report["unchanged"]) == (0, 12)  # a sync: nothing to do
    report = json.loads(run(*again, "--no-resume").stdout)
    assert (report["embedded"], report["updated"]) == (12, 12)  # embedded again, upserted
    info = json.loads(run("info", "--json", *built).stdout)
    assert (info["points"], info["dim"], info["distance"]) == (12, 32, "Cosine")
    assert info["model"] == tiny_vit and info["dataset"] == str(image_folder)


def test_eval_json(built):
    result = run("eval", "--split", "train", "--k", 3, "--near-duplicates", 6, "--json", *built)
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert set(report) >= {
        "k",
        "queries",
        "precision_at_k",
        "precision_at_1",
        "knn_accuracy",
        "map_at_k",
        "per_class_precision_at_k",
        "near_duplicate_top1",
        "near_identical_queries",
    }
    assert (report["k"], report["queries"]) == (3, 12)
    assert 0.0 <= report["precision_at_k"] <= report["map_at_k"] <= 1.0
    assert set(report["per_class_precision_at_k"]) == {"blue", "green", "red"}
    assert 0.0 <= report["near_duplicate_top1"] <= 1.0
    assert "near-duplicates: 100%" in result.stderr and "6/6" in result.stderr  # its own bar


def test_eval_warns_when_queries_leak_into_the_gallery(built, image_folder, tmp_path):
    import shutil

    # A "test" split holding copies of two train images: the same pictures on both sides.
    leaky = tmp_path / "leaky"
    shutil.copytree(image_folder, leaky / "train")
    (leaky / "test" / "red").mkdir(parents=True)
    for name in ("red_0.jpg", "red_1.jpg"):
        shutil.copy(image_folder / "red" / name, leaky / "test" / "red" / name)
    store = ["--qdrant-path", tmp_path / "leak-store", "--collection", "leaky"]
    assert run("ingest", "--dataset", leaky, "--model", built_model(built), *store).exit_code == 0
    result = run("eval", "--split", "test", "--near-duplicates", 0, *store)
    assert result.exit_code == 0, result.output
    assert "2 of 2 test queries have a near-identical image in the collection" in result.stderr


@pytest.mark.parametrize(
    "args, message",
    [
        (["search", "nope.png"], "no such file: 'nope.png'"),
        (["search", "val:0"], "has no split 'val'"),
        (["search", "train:500"], "row 500 is out of range"),
        (["search", "train:0", "--k", "0"], "k must be between 1 and 1000"),
        (["search", "train:0", "--k", "100000"], "k must be between 1 and 1000"),
        (["search", "notes.jpg"], "notes.jpg: not a readable image"),
        (["search", "train:0", "--label", "mauve"], "unknown label 'mauve'"),
        (["search", "train:0", "--collection", "nope"], "collection 'nope' does not exist"),
        (["eval", "--split", "test"], "has no split 'test'"),
        (["info", "--collection", "nope"], "collections there: colours"),
    ],
)
def test_errors_are_one_clear_line(built, args, message, tmp_path):
    (tmp_path / "notes.jpg").write_text("not an image")  # the tests run in tmp_path
    # Later options win in click, so the parametrised --collection overrides the fixture's.
    result = run(*args[:1], *built, *args[1:])
    assert result.exit_code == 1
    assert message in result.stderr and "Traceback" not in result.output
    assert result.stderr.startswith("Error: ")


def test_search_with_another_model_is_refused(built, tiny_vit_wide):
    result = run("search", "train:0", "--model", tiny_vit_wide, *built)
    assert result.exit_code == 1
    assert "was built with model" in result.stderr and "leave --model out" in result.stderr


def test_a_hub_model_missing_from_the_offline_cache_says_how_to_pass_a_folder(
    tmp_path, image_folder
):
    result = run("ingest", "--dataset", image_folder, "--qdrant-path", tmp_path / "s")
    assert result.exit_code == 1  # a folder of photos gets the general model, not the Beans one
    assert "model 'openai/clip-vit-base-patch32' is not a local folder, and not in the" in (
        result.stderr
    )
    assert "--model PATH" in result.stderr
