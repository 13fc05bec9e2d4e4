"""What a newcomer hits in the first hour: wrong paths and no network said at once and
together, checks that need no model made before it loads, a collection named after its
dataset, and a store held by another process (a running serve is asked instead)."""

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from lookalike.cli.main import cli
from lookalike.search.remote import RemoteSearcher
from tests.conftest import make_image

ROOT = Path(__file__).resolve().parents[1]


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


@pytest.fixture(scope="module")
def unloadable(tmp_path_factory, image_folder, tiny_vit):
    """A collection whose model folder has since lost its weights: any command that loads the
    model fails, so one that answers did its checks first."""
    tmp = tmp_path_factory.mktemp("unloadable")
    model = shutil.copytree(tiny_vit, tmp / "model")
    store = ["--qdrant-path", tmp / "store", "--collection", "colours"]
    result = run("ingest", "--dataset", image_folder, "--model", model, *store)
    assert result.exit_code == 0, result.output
    for weights in model.glob("*.safetensors"):
        weights.unlink()
    return store


@pytest.mark.parametrize(
    "args, message",
    [
        (["search", "nope.png"], "no such file: 'nope.png'"),
        (["search", "val:0"], "has no split 'val'; its splits are: train"),
        (["search", "train:99"], "row 99 is out of range"),
        (["search", "train:0", "--label", "mauve"], "unknown label 'mauve'"),
        (["eval", "--split", "val"], "has no split 'val'"),
        (["ingest", "--dataset", "{other}"], "holds images of dataset"),
    ],
)
def test_checks_that_need_no_model_come_before_it_loads(
    unloadable, args, message, tmp_path, image_folder
):
    # Other images elsewhere (a copy of the same images would be the collection's, moved).
    other = tmp_path / "other"
    (other / "grey").mkdir(parents=True)
    for seed in range(3):
        make_image((90, 90, 90), seed=100 + seed).save(other / "grey" / f"{seed}.png")
    args = [a.replace("{other}", str(other)) for a in args]
    result = run(*args, *unloadable)
    assert result.exit_code == 1
    assert message in result.stderr and "could not load model" not in result.stderr


def test_missing_folders_are_said_together_and_at_once(tmp_path):
    started = time.perf_counter()
    result = run("ingest", "--dataset", "../nope/beans", "--model", "../nope/model")
    assert result.exit_code == 1 and time.perf_counter() - started < 5
    assert "dataset folder '../nope/beans' does not exist" in result.stderr
    assert "model folder '../nope/model' does not exist" in result.stderr
    assert "unreachable" not in result.stderr and "network" not in result.stderr


def test_no_network_is_one_line_naming_every_way_out(no_network):
    started = time.perf_counter()
    result = run("ingest")  # the defaults: the hub's beans and nateraw/vit-base-beans
    assert result.exit_code == 1 and time.perf_counter() - started < 5
    line = result.stderr.strip()
    assert "\n" not in line
    assert "no network" in line and "dataset 'beans' and model 'nateraw/vit-base-beans'" in line
    assert "HF_HUB_OFFLINE=1" in line and "--dataset PATH and --model PATH" in line
    assert '"Offline, or with your own data and model"' in line


def test_ingest_names_the_collection_after_the_dataset_and_others_find_it(
    tmp_path, image_folder, tiny_vit
):
    photos = shutil.copytree(image_folder, tmp_path / "holiday photos")
    store = ["--qdrant-path", tmp_path / "store"]
    result = run("ingest", "--dataset", photos, "--model", tiny_vit, "--json", *store)
    assert json.loads(result.stdout)["collection"] == "holiday-photos"
    result = run("search", "train:0", "--json", *store)  # the store's only collection
    assert result.exit_code == 0, result.output
    run("ingest", "--dataset", image_folder, "--model", tiny_vit, *store)
    result = run("search", "train:0", *store)
    assert result.exit_code == 1
    assert "holds 2: holiday-photos, images" in result.stderr
    assert "choose one with --collection" in result.stderr


def test_the_commands_load_without_numpy_or_an_engine(tmp_path):
    """Every command's start (`--help`, options, a search's checks) imports no numpy, no
    store engine and no searcher: those load when a store is opened here, not before."""
    code = """
import sys
from lookalike.cli.main import cli
import lookalike.cli.searching
print(sorted(m for m in ("numpy", "qdrant_edge", "qdrant_client", "lookalike.search.searcher")
             if m in sys.modules))
"""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=tmp_path, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]", done.stdout


def test_info_duplicates_and_a_failed_ingest_never_import_torch(unloadable, tmp_path):
    """Run as a user would, in a fresh process without HF_HUB_OFFLINE and without network."""
    code = f"""
import sys
from lookalike.cli.main import cli
store = {[str(a) for a in unloadable]!r}
for args in (["info", *store], ["duplicates", *store], ["ingest", "--qdrant-path", "s"]):
    try:
        cli(args, standalone_mode=False)
    except Exception as e:
        print(type(e).__name__, e)
print("torch" in sys.modules, "transformers" in sys.modules)
"""
    offline = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")
    env = {k: v for k, v in os.environ.items() if k not in offline}
    env.update(HF_ENDPOINT="http://127.0.0.1:9", PYTHONPATH=str(ROOT))
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=tmp_path, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert lines[-1] == "False False", done.stdout
    assert "points" in done.stdout and "pairs at cosine" in done.stdout
    assert "no network" in done.stdout or "cannot be reached" in done.stdout
    assert time.perf_counter() - started < 60  # no ~45 s of hub retries per id


@pytest.fixture(scope="module")
def serving(tmp_path_factory, image_folder, tiny_vit):
    """A real `lookalike serve` in another process, holding an embedded store."""
    tmp = tmp_path_factory.mktemp("serving")
    store = ["--qdrant-path", tmp / "store", "--collection", "colours"]
    assert run("ingest", "--dataset", image_folder, "--model", tiny_vit, *store).exit_code == 0
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    serve = subprocess.Popen(
        [sys.executable, "-m", "lookalike.cli", "serve", "--port", str(port), *map(str, store)],
        stderr=subprocess.PIPE,
        text=True,
    )
    said = ""  # until "serving 'colours' on ...": said once it listens
    while "serving 'colours'" not in said:
        line = serve.stderr.readline()
        assert line, said
        said += line
    assert RemoteSearcher(f"http://127.0.0.1:{port}/").collection() == "colours"
    yield store, serve, tmp / "store" / "holders"
    if serve.poll() is None:
        serve.kill()


def test_search_asks_the_serve_that_holds_the_store(serving, image_folder):
    store, serve, _ = serving
    pid = serve.pid
    query = image_folder / "green" / "green_2.jpg"
    result = run("search", query, "train:0", "--k", 3, "--json", *store)
    assert result.exit_code == 0, result.output
    assert f"held by lookalike serve (pid {pid}): asking it at http://127.0.0.1:" in result.stderr
    first, second = [json.loads(line) for line in result.stdout.splitlines()]
    assert first["query_label_name"] == "green" and first["excluded_self"]
    assert [h["rank"] for h in first["hits"]] == [1, 2, 3]
    assert str(query) not in [h["path"] for h in first["hits"]]
    assert second["query"] == "train:0" and second["excluded_self"]


def test_queries_go_to_the_serve_with_their_options(serving, image_folder, tmp_path):
    store, _, _ = serving
    query = image_folder / "green" / "green_2.jpg"
    where = ["--where", "label_name=red,blue", "--group-by", "label_name", "--k", 3, "--json"]
    result = run("search", query, *where, *store)
    assert result.exit_code == 0, result.output
    hits = json.loads(result.stdout)["hits"]
    assert sorted(h["label_name"] for h in hits) == ["blue", "red"]  # one per label, filtered
    by_id = run("search", "--id", hits[0]["id"], "--k", 2, "--json", *store)
    assert by_id.exit_code == 0 and "asking it at" in by_id.stderr, by_id.output
    assert hits[0]["id"] not in [h["id"] for h in json.loads(by_id.stdout)["hits"]]
    folder = tmp_path / "new"
    folder.mkdir()
    (folder / "broken.jpg").write_bytes(b"not a jpeg")
    (folder / "q.jpg").write_bytes(query.read_bytes())
    rows = run("search", folder, "--k", 1, "--csv", *store)
    assert rows.exit_code == 0 and "skipped" in rows.stderr and "broken.jpg" in rows.stderr
    assert len(rows.stdout.splitlines()) == 2  # the header and q.jpg's row


def test_more_like_a_stored_file_asks_the_serve_too(serving, image_folder, tmp_path):
    """serve takes stored ids as examples: a file it holds goes as its point's id (and is not
    its own result); any other image file is refused in words that fit the command."""
    store, _, _ = serving
    example = image_folder / "red" / "red_1.jpg"
    result = run("search", "--like", example, "--k", 3, "--json", *store)
    assert result.exit_code == 0 and "asking it at" in result.stderr, result.output
    hits = json.loads(result.stdout)["hits"]
    assert len(hits) == 3 and "red/red_1.jpg" not in [h["path"] for h in hits]
    other = tmp_path / "new.png"
    make_image((1, 2, 3), seed=99).save(other)
    refused = run("search", "--like", other, *store)
    assert refused.exit_code != 0 and "is not in the collection" in refused.stderr
    assert "Traceback" not in refused.output


def test_other_commands_say_which_process_holds_the_store(serving):
    store, serve, _ = serving
    pid = serve.pid
    result = run("eval", "--split", "train", *store)
    assert result.exit_code == 1
    assert f"(pid {pid}, lookalike serve serving http://127.0.0.1:" in result.stderr
    assert f"kill {pid}" in result.stderr and "--qdrant-url" in result.stderr


def test_a_stopped_serve_leaves_the_store_free(serving):
    store, serve, holders = serving
    assert [p.name for p in holders.iterdir()] == [f"{serve.pid}.json"]
    serve.terminate()  # SIGTERM, as a service manager stops it
    assert serve.wait(timeout=60) == 128 + 15
    assert list(holders.iterdir()) == []
    assert run("search", "train:0", *store).exit_code == 0  # opens the store itself again
