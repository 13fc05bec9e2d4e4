"""`serve` under concurrent clients, on the wire: queries that wait are embedded together, yet
each client gets exactly the answer an in-process search gives; beyond the queue a client is
told when to come back; stopping the server answers what it took in and stops its threads."""

import io
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from lookalike.cli.web import create_app
from lookalike.embed.embedder import Embedder
from lookalike.ingest import ingest
from lookalike.search import Searcher
from lookalike.source import load_source
from lookalike.store import StoreConfig, connect
from tests.conftest import COLOURS, make_image
from tests.live import Live


@pytest.fixture(scope="module")
def searcher(tmp_path_factory, image_folder, tiny_vit):
    store = connect(StoreConfig(path=str(tmp_path_factory.mktemp("batching") / "store")))
    emb = Embedder(tiny_vit, device="cpu", precision="fp32")
    ingest(load_source(str(image_folder)), emb, store, "colours")
    yield Searcher("colours", store=store, embedder=emb)
    store.close()


def jpeg(image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, "JPEG", quality=95)
    return buf.getvalue()


def post(url: str, data: bytes, **form) -> httpx.Response:
    return httpx.post(f"{url}/search", files={"image": ("q.jpg", data)}, data=form, timeout=60)


def wait_for(condition, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def occupy(batcher) -> threading.Event:
    """Keep the inference thread busy until the returned event is set: requests pile up."""
    running, release = threading.Event(), threading.Event()
    threading.Thread(target=batcher.call, args=(lambda: running.set() or release.wait(),)).start()
    running.wait()
    return release


def test_concurrent_clients_each_get_the_in_process_answer(searcher):
    colours = list(COLOURS.values())
    labels = ["", "red", "", "green"]
    asked = [
        (jpeg(make_image(colours[i % 3], seed=200 + i, size=40 + 2 * i)), 1 + i % 6, labels[i % 4])
        for i in range(12)
    ]
    expected = [searcher.search(data, k=k, label=label or None) for data, k, label in asked]
    live = Live(create_app(searcher))
    batcher = live.app.state.batcher
    try:
        release = occupy(batcher)
        with ThreadPoolExecutor(len(asked)) as pool:
            futures = [pool.submit(post, live.url, d, k=k, label=lb) for d, k, lb in asked]
            try:
                wait_for(lambda: len(batcher._jobs) == len(asked))  # all in the queue
            finally:
                release.set()
            answers = [f.result().json()["hits"] for f in futures]
    finally:
        live.stop()
    assert max(batcher.batches) == len(asked)  # one forward pass answered them all
    for got, want in zip(answers, expected):
        assert [h["id"] for h in got] == [h.id for h in want]
        assert [h["score"] for h in got] == pytest.approx([h.score for h in want], abs=1e-4)


def test_beyond_the_queue_a_client_is_told_to_come_back(searcher):
    live = Live(create_app(searcher, decoding=1, queue=2))
    batcher = live.app.state.batcher
    data = jpeg(make_image(COLOURS["red"], seed=5))
    try:
        release = occupy(batcher)
        with ThreadPoolExecutor(3) as pool:
            waiting = [pool.submit(post, live.url, data) for _ in range(3)]
            try:
                wait_for(lambda: len(batcher._jobs) == 3)  # every place taken
                busy = post(live.url, data)
            finally:
                release.set()
            statuses = [f.result().status_code for f in waiting]
        after = post(live.url, data)
    finally:
        live.stop()
    assert busy.status_code == 503 and busy.headers["retry-after"] == "2"
    assert "try again" in busy.json()["detail"]
    assert statuses == [200, 200, 200] and after.status_code == 200


def test_stopping_answers_the_requests_taken_in_and_stops_the_threads(searcher):
    live = Live(create_app(searcher))
    batcher = live.app.state.batcher
    data = jpeg(make_image(COLOURS["blue"], seed=6))
    release = occupy(batcher)
    with ThreadPoolExecutor(4) as pool:
        waiting = [pool.submit(post, live.url, data, k="2") for _ in range(4)]
        wait_for(lambda: len(batcher._jobs) == 4)
        live.server.should_exit = True  # as on Ctrl-C: uvicorn waits for these requests
        release.set()
        answers = [f.result() for f in waiting]
    live.thread.join(timeout=30)
    assert [a.status_code for a in answers] == [200] * 4
    assert all(len(a.json()["hits"]) == 2 for a in answers)
    assert not live.thread.is_alive() and not batcher._thread.is_alive()
    with pytest.raises(RuntimeError, match="closed"):
        batcher.call(lambda: None)
