"""One query must not take the server down: a query past its time budget is stopped and its
client told (HTTP 504, in words); /health answers at once meanwhile; later queries are
answered; and SIGTERM stops `serve` within seconds, a query running or not."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
import urllib.error
import urllib.request

import pytest

from lookalike.cli.web import create_app
from lookalike.embed.embedder import Embedder
from lookalike.ingest import ingest
from lookalike.query import check_budget
from lookalike.search import Searcher
from lookalike.source import load_source
from lookalike.store import StoreConfig, connect
from tests.live import serving

BUDGET_S = 1.0


@pytest.fixture(scope="module")
def store_path(tmp_path_factory, image_folder, tiny_vit):
    path = str(tmp_path_factory.mktemp("hang") / "store")
    with connect(StoreConfig(path=path)) as store:
        ingest(load_source(str(image_folder)), Embedder(tiny_vit, device="cpu"), store, "c")
    return path


@pytest.fixture
def slow_searcher(store_path, tiny_vit, monkeypatch):
    """A searcher whose engine spins on grouped queries (as the edge grouping loop did on a
    list field before it was fixed): politely (checking the budget) or stuck in one call."""
    store = connect(StoreConfig(path=store_path))
    query = store.query

    def spinning(name, vectors, k, label=None, params=None, options=None):
        if options is not None and options.group_by == "label_name":
            while True:
                check_budget("a grouped search")
                time.sleep(0.01)
        if options is not None and options.group_by == "split":
            time.sleep(4 * BUDGET_S)  # one engine call that ignores the budget
        return query(name, vectors, k, label=label, params=params, options=options)

    monkeypatch.setattr(store, "query", spinning)
    yield Searcher("c", store=store, embedder=Embedder(tiny_vit, device="cpu"))
    store.close()


def _post(url: str, fields: dict, timeout: float = 30) -> tuple[int, dict]:
    data = "&".join(f"{k}={v}" for k, v in fields.items()).encode()
    request = urllib.request.Request(url + "search", data=data)
    request.add_header("Content-Type", "application/x-www-form-urlencoded")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as r:
            return r.status, json.load(r)
    except urllib.error.HTTPError as e:
        return e.code, json.load(e)


def _health_times(url: str, stop: threading.Event, times: list, bodies: list) -> None:
    while not stop.is_set():
        started = time.perf_counter()
        with urllib.request.urlopen(url + "health", timeout=10) as r:
            bodies.append(json.load(r))
        times.append(time.perf_counter() - started)
        time.sleep(0.02)


@pytest.mark.parametrize("group_by", ["label_name", "split"], ids=["polite", "stuck"])
def test_a_query_past_its_budget_is_stopped_and_health_never_waits(slow_searcher, group_by):
    app = create_app(slow_searcher, budget_s=BUDGET_S)
    with serving(app) as url:
        stop, times, bodies = threading.Event(), [], []
        poller = threading.Thread(target=_health_times, args=(url, stop, times, bodies))
        poller.start()
        started = time.monotonic()
        status, body = _post(url, {"query": "train:0", "group_by": group_by, "k": "3"})
        took = time.monotonic() - started
        time.sleep(0.3)
        stop.set()
        poller.join()
        assert status == 504, body
        assert "time budget of 1 s" in body["detail"] and "smaller k" in body["detail"]
        assert took < BUDGET_S + 3  # the budget, and the grace for a stuck engine call
        assert len(times) > 10 and max(times) < 0.5, max(times)  # never behind the query
        if group_by == "split":
            assert "busy" in {b["status"] for b in bodies}
        time.sleep(4 * BUDGET_S)  # a stuck call ends; the server answers again
        status, body = _post(url, {"query": "train:0", "k": "2"})
        assert status == 200 and len(body["hits"]) == 2


def test_health_does_not_show_the_models_path(slow_searcher):
    app = create_app(slow_searcher, budget_s=BUDGET_S)
    with serving(app) as url, urllib.request.urlopen(url + "health", timeout=10) as r:
        body = json.load(r)
    assert body["model"] == os.path.basename(slow_searcher.meta.model.rstrip("/"))
    assert os.sep not in body["model"]


SERVE = """
import signal, sys, time
from lookalike.cli.web import create_app, run_app
from lookalike.embed.embedder import Embedder
from lookalike.search import Searcher
from lookalike.store import StoreConfig, connect

store = connect(StoreConfig(path={store!r}))
query = store.query
def stuck(*args, **kwargs):
    time.sleep(600)  # a query that will never end, deaf to every budget
store.query = stuck
searcher = Searcher("c", store=store, embedder=Embedder({model!r}, device="cpu"))
signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))  # as `serve` does
with store:
    run_app(create_app(searcher), "127.0.0.1", {port}, lambda: print("listening", flush=True))
"""


def test_sigterm_stops_serve_within_seconds_while_a_query_hangs(store_path, tiny_vit, tmp_path):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    script = tmp_path / "serve.py"
    script.write_text(textwrap.dedent(SERVE).format(store=store_path, model=tiny_vit, port=port))
    proc = subprocess.Popen(
        [sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        assert proc.stdout.readline().strip() == b"listening"
        url = f"http://127.0.0.1:{port}/"

        def ask() -> None:
            with contextlib.suppress(OSError, ValueError):  # stopped under it: any answer, or none
                _post(url, {"query": "train:0", "k": "2"}, 60)

        threading.Thread(target=ask, daemon=True).start()
        time.sleep(1.0)  # the query is on the inference thread, stuck
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=30)
        took = time.monotonic() - started
    finally:
        proc.kill()
    assert took < 9, took  # gone within seconds (`serve` never waits past ~5 s)
    assert code in (128 + signal.SIGTERM, 143), proc.stderr.read().decode()[-2000:]


def test_sigterm_stops_watch_within_seconds(image_folder, tiny_vit, tmp_path):
    import shutil
    from pathlib import Path

    from tests.test_interrupt import lookalike
    from tests.test_sync_live import Stderr, wait_for

    folder = Path(shutil.copytree(image_folder, tmp_path / "photos"))
    store = ["--qdrant-path", tmp_path / "store", "--collection", "c", "--device", "cpu"]
    args = ["watch", "--dataset", folder, *store, "--model", tiny_vit, "--interval", 0.2]
    proc = subprocess.Popen(
        lookalike(*args), stderr=subprocess.PIPE, env={**os.environ, "PYTHONUNBUFFERED": "1"}
    )
    log = Stderr(proc)
    try:
        wait_for(lambda: "watching" in log.text, "the first sync")
        for i in range(8):  # a change, so a sync is likely under way
            shutil.copy(folder / "red" / "red_0.jpg", folder / "red" / f"copy{i}.jpg")
        time.sleep(0.3)
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
        took = time.monotonic() - started
    finally:
        proc.kill()
    # 5 s once the signal is handled, after the step under way (a batch embedding on a
    # machine shared with other jobs can take seconds); it took over 40 s before.
    assert took < 15, (took, log.text[-2000:])
