"""Library errors carry fields and plain sentences; the command line adds its flags."""

import pytest

from lookalike.cli.errors import explain, skip_message
from lookalike.errors import (
    BadImage,
    CollectionNotFound,
    DatasetLoadError,
    DiskFull,
    IngestInterrupted,
    LoadErrors,
    ModelLoadError,
    ModelMismatch,
    OutputExists,
    StoreDamaged,
    StoreLocked,
    StoreUnavailable,
    shown,
)


@pytest.mark.parametrize(
    "error, command, advice",
    [
        (DatasetLoadError("x/y", "hub down", kind="unreachable"), "ingest", "--dataset PATH"),
        (DatasetLoadError("d", "no image col", kind="no_image_column"), "ingest", "--image-column"),
        (ModelLoadError("x/y", "hub down", kind="unreachable"), "search", "--model PATH"),
        (CollectionNotFound("c", "edge:./s", ["a"]), "search", "lookalike ingest --collection c"),
        (ModelMismatch("c", "model", "a", "b"), "ingest", "pass --recreate"),
        (ModelMismatch("c", "model", "a", "b"), "search", "leave --model out"),
        (StoreLocked("./s", "c"), "search", "--qdrant-url"),
        (StoreLocked("./s", "c", pid=42, command="ingest"), "search", "kill 42"),
        (
            CollectionNotFound(None, "edge:./s", ["a", "b"]),
            "search",
            "choose one with --collection",
        ),
        (DatasetLoadError("x/y", "not cached", kind="offline"), "ingest", "HF_HUB_OFFLINE"),
        (StoreUnavailable("Qdrant at h", "search", "HTTP 401", status=401), "info", "api-key"),
        (BadImage("a.png", "too many pixels", kind="too_many_pixels"), "ingest", "--max-pixels"),
        (StoreDamaged("./s", "c", "lost a file"), "search", "ingest --recreate --collection c"),
        (DiskFull("edge store ./s", "store 8 points", "./s", 10, 20), "ingest", "--qdrant-path"),
        (OutputExists("out", ["config.json"]), "tune", "--overwrite"),
    ],
)
def test_the_edge_adds_the_flag_and_the_library_does_not(error, command, advice):
    assert "--" not in str(error)
    assert advice in explain(error, command)


def test_fields_say_what_happened():
    missing = CollectionNotFound("c", "edge:./s", ["b", "a"])
    assert (missing.collection, missing.known) == ("c", ("b", "a"))
    assert "(collections there: a, b)" in str(missing)
    failed = StoreUnavailable("Qdrant at h", "store 3 points", "HTTP 503", attempts=5, status=503)
    assert str(failed) == "Qdrant at h failed to store 3 points after 5 attempts: HTTP 503"
    assert not failed.refused_key


def test_an_interrupted_ingest_says_how_to_resume():
    stopped = IngestInterrupted("c", 40, by_user=True)
    assert str(stopped) == "interrupted: 40 images stored in 'c'"
    assert "Run the same command again to resume" in explain(stopped, "ingest")


def test_skip_reasons_gain_the_flag_that_admits_them():
    assert skip_message("too many pixels", "too_many_pixels").endswith(
        "raise --max-pixels to allow it"
    )
    assert skip_message("not a readable image", None) == "not a readable image"


def test_only_ingest_is_told_to_raise_max_pixels():
    # search and serve have no --max-pixels: pointing there would send the user nowhere
    bomb = BadImage("a.png", "too many pixels (400,000,000 > 89,478,485)", kind="too_many_pixels")
    assert "--max-pixels" not in explain(bomb, "search")
    assert "--max-pixels" not in explain(bomb, "serve")


def test_a_full_disk_during_ingest_says_what_to_free_and_how_to_resume():
    full = DiskFull("the edge store ./s", "store 16 points", "./s", 1_000_000, 34_000_000)
    assert str(full) == (
        "the edge store ./s failed to store 16 points: the disk holding ./s has 1.0 MB free, "
        "and about 34.0 MB are needed"
    )
    stopped = IngestInterrupted("c", 48, cause=full, rows="train:48..63")
    words = explain(stopped, "ingest")
    assert "free some space there" in words and "Run the same command again to resume" in words


@pytest.mark.parametrize(
    "name, expected",
    [
        ("photo 1.jpg", "photo 1.jpg"),
        ("été.jpg", "été.jpg"),
        ("a.jpg\nwarning: skipped train:9: x", "'a.jpg\\nwarning: skipped train:9: x'"),
        ("\x1b[2Jclear.jpg", "'\\x1b[2Jclear.jpg'"),
    ],
)
def test_names_with_control_characters_are_quoted(name, expected):
    assert shown(name) == expected
    assert "\n" not in str(BadImage(name, "not a readable image"))


def test_advice_never_names_a_flag_the_command_lacks():
    from lookalike.cli.main import cli

    def options(command):
        return {o for p in cli.commands[command].params for o in getattr(p, "opts", ())}

    unreachable = DatasetLoadError("beans", "hub down", kind="unreachable")
    assert "--dataset PATH" in explain(unreachable, "ingest", options("ingest"))
    in_eval = explain(unreachable, "eval", options("eval"))  # eval has no --dataset
    assert in_eval.startswith("no network") and "--dataset" not in in_eval
    damaged = StoreDamaged("./s", "c", "lost a file")  # a quoted command is not this one's
    assert "`lookalike ingest --recreate --collection c`" in explain(
        damaged, "search", options("search")
    )


def test_no_network_is_one_line_for_the_dataset_and_the_model_together():
    dataset = DatasetLoadError("beans", "no network", kind="unreachable")
    model = ModelLoadError("nateraw/vit-base-beans", "no network", kind="unreachable")
    line = explain(LoadErrors([dataset, model]), "ingest")
    assert line.startswith("no network: the Hugging Face hub cannot be reached to fetch ")
    assert "dataset 'beans' and model 'nateraw/vit-base-beans'" in line
    assert "--dataset PATH and --model PATH" in line and "HF_HUB_OFFLINE=1" in line
    assert 'README, "Offline, or with your own data and model"' in line
    assert "\n" not in line


def test_missing_folders_are_reported_together():
    dataset = DatasetLoadError(
        "../nope/b", "dataset folder '../nope/b' does not exist", kind="missing"
    )
    model = ModelLoadError("../nope/m", "model folder '../nope/m' does not exist", kind="missing")
    line = explain(LoadErrors([dataset, model]), "ingest")
    assert "'../nope/b' does not exist" in line and "'../nope/m' does not exist" in line


def test_a_locked_store_names_its_holder():
    error = StoreLocked("./s", "c", pid=42, command="serve", url="http://127.0.0.1:8000/")
    assert "(pid 42, lookalike serve serving http://127.0.0.1:8000/)" in str(error)
    assert "kill 42" in explain(error, "eval") and "search" not in explain(error, "eval")
    # Each command is told what the running serve does for it, in its own words.
    assert "not with image files" in explain(error, "search")
    assert "serve --watch FOLDER" in explain(error, "ingest")
    assert "http://127.0.0.1:8000/health shows" in explain(error, "info")


def test_a_partly_moved_dataset_names_relocate_for_the_command_that_has_it():
    from lookalike.cli.errors import explain
    from lookalike.errors import DatasetMoved

    error = DatasetMoved("photos", "/a/photos", "/b/photos", 11, 12, 1)
    assert "pass --relocate to make /b/photos its dataset" in explain(error, "ingest")
    assert "run `lookalike ingest --dataset /b/photos --relocate` once" in explain(error, "watch")
