"""Read-only commands on a store that a running `lookalike serve` holds go through the server,
as `search` does: `info` prints the report it prints without serve, and `ingest --dry-run`
plans the same sync; the server tells its paths only to processes on its own machine."""

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from click.testing import CliRunner

from lookalike.cli.main import cli
from lookalike.search.remote import RemoteSearcher
from tests.conftest import make_image

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "transformers", "datasets", "pandas")
# What opening the store itself loads: a forwarded command reads the serve's record instead.
OPENING = ("numpy", "qdrant_edge", "qdrant_client", "lookalike.store.edge")


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


@pytest.fixture(scope="module")
def served(tmp_path_factory, image_folder, tiny_vit):
    """A real `lookalike serve` in another process holding an embedded store of a folder that
    has since changed (one image added, one removed), so a sync has something to plan."""
    tmp = tmp_path_factory.mktemp("served")
    folder = shutil.copytree(image_folder, tmp / "colours")
    store = ["--qdrant-path", tmp / "store", "--collection", "colours"]
    assert run("ingest", "--dataset", folder, "--model", tiny_vit, *store).exit_code == 0
    make_image((200, 0, 200), seed=77).save(folder / "red" / "new.png")
    next(folder.glob("blue/*")).unlink()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    serve = subprocess.Popen(
        [sys.executable, "-m", "lookalike.cli", "serve", "--port", str(port), *map(str, store)],
        stderr=subprocess.PIPE,
        text=True,
    )
    said = ""
    while "serving 'colours'" not in said:
        line = serve.stderr.readline()
        assert line, said
        said += line
    url = f"http://127.0.0.1:{port}/"
    assert RemoteSearcher(url).collection() == "colours"
    yield store, serve, folder, url
    if serve.poll() is None:
        serve.kill()
        serve.wait()


ANSWERED = {}  # what the commands printed through serve, compared with serve stopped


def test_info_asks_the_serve_that_holds_the_store(served):
    store, serve, _, _ = served
    table = run("info", *store)
    assert table.exit_code == 0, table.output
    assert f"held by lookalike serve (pid {serve.pid}): asking it at http://127.0.0.1:" in (
        table.stderr
    )
    as_json = run("info", "--json", *store)
    assert as_json.exit_code == 0, as_json.output
    ANSWERED["info"] = table.stdout
    ANSWERED["info --json"] = json.loads(as_json.stdout)
    assert ANSWERED["info --json"]["points"] == 12


def test_ingest_dry_run_plans_through_the_serve(served):
    store, serve, folder, _ = served
    args = ["ingest", "--dataset", folder, "--dry-run", "--json", *store]
    result = run(*args)
    assert result.exit_code == 0, result.output
    assert f"held by lookalike serve (pid {serve.pid})" in result.stderr
    report = json.loads(result.stdout)
    assert (report["added"], report["removed"], report["unchanged"]) == (1, 1, 11)
    ANSWERED["dry-run"] = report


def test_a_real_sync_is_refused_in_its_own_words(served):
    store, _, folder, _ = served
    result = run("ingest", "--dataset", folder, *store)
    assert result.exit_code == 1
    assert "lookalike serve --watch FOLDER" in result.stderr
    assert "asks a running serve itself" not in result.stderr


def test_forwarded_commands_open_no_store_nor_heavy_library(served, image_folder, tmp_path):
    store, _, _, _ = served
    query = str(next(image_folder.glob("green/*")))
    code = f"""
import sys
from lookalike.cli.main import cli
store = {[str(a) for a in store]!r}
for args in (["info", *store], ["search", {query!r}, "--k", "2", *store]):
    cli(args, standalone_mode=False)
print([m for m in {HEAVY + OPENING!r} if m in sys.modules])
"""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=tmp_path, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr.count("asking it at") == 2, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]", done.stdout


def test_the_servers_paths_are_told_to_its_own_machine_only(served):
    store, serve, _, url = served
    record = Path(store[1]) / "holders" / f"{serve.pid}.json"
    token = {"X-Lookalike-Token": json.loads(record.read_text())["token"]}
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(url + "collection")  # without what the store tells
    assert e.value.code == 403
    with urllib.request.urlopen(urllib.request.Request(url + "collection", headers=token)) as r:
        assert json.load(r)["collection"] == "colours"  # a reader of the store, here: answered
    with urllib.request.urlopen(url + "health") as r:
        assert "/" not in json.load(r)["model"]  # the model folder by its name only
    foreign = urllib.request.Request(url + "collection", headers={"Host": "example.com", **token})
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(foreign)
    assert e.value.code == 400  # a foreign Host is refused before any route


def test_the_answers_are_those_given_without_serve(served):
    store, serve, folder, _ = served
    serve.terminate()
    assert serve.wait(timeout=60) == 128 + 15
    assert run("info", *store).stdout == ANSWERED["info"]
    here = json.loads(run("info", "--json", *store).stdout)
    assert here == ANSWERED["info --json"]
    result = run("ingest", "--dataset", folder, "--dry-run", "--json", *store)
    report = json.loads(result.stdout)
    ignore = ("seconds",)
    assert {k: v for k, v in report.items() if k not in ignore} == {
        k: v for k, v in ANSWERED["dry-run"].items() if k not in ignore
    }


@pytest.mark.parametrize("port", ["closed", "silent"])
def test_a_serve_that_no_longer_answers_is_not_asked(served, port, monkeypatch):
    """A serve killed outright leaves its record, and its pid may be another process's by
    now: a command that finds nothing at the recorded URL (a closed port, or a program that
    takes the connection and never answers) opens the store itself, without a long wait."""
    store, serve, _, _ = served
    if serve.poll() is None:  # the test above stops it; run alone, this one does
        serve.terminate()
        serve.wait(timeout=60)
    monkeypatch.setattr("lookalike.cli.stores.SERVE_PROBE_S", 0.5)
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{listener.getsockname()[1]}/"
        if port == "silent":
            listener.listen()  # connections complete in the backlog; nothing ever reads them
        else:
            listener.close()
        record = {"pid": other.pid, "command": "serve", "collection": "colours", "url": url}
        holder = Path(store[1]) / "holders" / f"{other.pid}.json"
        holder.write_text(json.dumps(record))
        try:
            started = time.monotonic()
            info = run("info", "--json", *store)
            assert info.exit_code == 0, info.output
            assert time.monotonic() - started < 15
            assert json.loads(info.stdout)["points"] == 12
            assert "asking it" not in info.stderr
        finally:
            other.kill()
            other.wait()
            holder.unlink(missing_ok=True)
