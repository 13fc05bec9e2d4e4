"""The query batcher: many threads searching at once each get exactly the answer a search of
their own would give, in batches, and a closed batcher leaves nobody waiting."""

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from lookalike.embed.embedder import Embedder
from lookalike.errors import BadQuery
from lookalike.ingest import ingest
from lookalike.search import Searcher
from lookalike.search.batcher import QueryBatcher
from lookalike.source import load_source
from lookalike.store import StoreConfig, connect
from tests.conftest import COLOURS, make_image


@pytest.fixture(scope="module")
def searcher(tmp_path_factory, image_folder, tiny_vit):
    path = tmp_path_factory.mktemp("batcher") / "store"
    store = connect(StoreConfig(path=str(path)))
    embedder = Embedder(tiny_vit, device="cpu", precision="fp32")
    ingest(load_source(str(image_folder)), embedder, store, "colours")
    yield Searcher("colours", store=store, embedder=embedder)
    store.close()


def queries() -> list[tuple]:
    """(image, k, label): different images, k and labels, so that answers cannot be swapped."""
    colours = list(COLOURS.values())
    labels = [None, "red", None, "blue"]
    return [
        (make_image(colours[i % 3], seed=100 + i, size=40 + i), 1 + i % 5, labels[i % 4])
        for i in range(16)
    ]


def wait_for(condition, timeout=60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def occupy(batcher: QueryBatcher) -> tuple[threading.Event, threading.Thread]:
    """Keep the batcher's thread busy until the event is set."""
    running, release = threading.Event(), threading.Event()
    busy = threading.Thread(target=batcher.call, args=(lambda: running.set() or release.wait(),))
    busy.start()
    running.wait()
    return release, busy


def same(got, want) -> bool:
    return [h.id for h in got] == [h.id for h in want] and all(
        g.score == pytest.approx(w.score, abs=1e-4) for g, w in zip(got, want)
    )


def test_concurrent_callers_each_get_their_own_answer(searcher):
    asked = queries()
    expected = [searcher.search(image, k=k, label=label) for image, k, label in asked]
    with QueryBatcher(searcher) as batcher:
        # The batcher's thread is kept busy while every query arrives: they wait together.
        release, batcher_busy = occupy(batcher)
        with ThreadPoolExecutor(len(asked)) as pool:
            futures = [pool.submit(batcher.search, *q) for q in asked]
            try:
                wait_for(lambda: len(batcher._jobs) == len(asked))
            finally:
                release.set()
            answers = [f.result(timeout=60) for f in futures]
        batcher_busy.join()
    assert all(same(got, want) for got, want in zip(answers, expected))
    assert max(batcher.batches) == len(asked)  # one forward pass for all of them


def test_a_bad_query_is_refused_alone(searcher):
    image = make_image(COLOURS["red"], seed=1)
    with QueryBatcher(searcher) as batcher, ThreadPoolExecutor(4) as pool:
        good = [pool.submit(batcher.search, image, 3) for _ in range(3)]
        bad = pool.submit(batcher.search, image, 3, "purple")
        with pytest.raises(BadQuery, match="unknown label 'purple'"):
            bad.result(timeout=60)
        answers = [f.result(timeout=60) for f in good]
    assert all(same(a, searcher.search(image, k=3)) for a in answers)


def test_close_answers_what_waits_then_refuses(searcher):
    batcher = QueryBatcher(searcher)
    release, batcher_busy = occupy(batcher)
    with ThreadPoolExecutor(4) as pool:
        waiting = [pool.submit(batcher.search, make_image(c, seed=3)) for c in COLOURS.values()]
        wait_for(lambda: len(batcher._jobs) == len(waiting))
        closing = pool.submit(batcher.close)
        release.set()
        closing.result(timeout=60)
        assert all(len(f.result(timeout=1)) == 5 for f in waiting)
    batcher_busy.join()
    assert not batcher._thread.is_alive()
    with pytest.raises(RuntimeError, match="closed"):
        batcher.search(make_image(COLOURS["red"], seed=4))


def test_store_calls_run_on_the_batchers_thread(searcher):
    with QueryBatcher(searcher) as batcher:
        name = batcher.call(lambda: threading.current_thread().name)
        info = batcher.call(searcher.store.info, "colours")
    assert name == "lookalike-inference" and info.points == 12


def test_search_many_is_one_batch(searcher):
    images = [make_image(c, seed=50 + i) for i, c in enumerate(list(COLOURS.values()) * 2)]
    with QueryBatcher(searcher) as batcher:
        release, batcher_busy = occupy(batcher)
        with ThreadPoolExecutor(1) as pool:
            answer = pool.submit(batcher.search_many, images, 4)
            wait_for(lambda: len(batcher._jobs) == len(images))
            release.set()
            answers = answer.result(timeout=60)
        batcher_busy.join()
    assert list(batcher.batches) == [len(images)]
    assert all(same(a, b) for a, b in zip(answers, searcher.search_many(images, k=4)))


def test_callers_with_different_query_options_each_get_their_own(searcher):
    """Options are part of what a caller asked: equal ones share a store request, others not."""
    only_red = searcher.options(filter={"must": [{"key": "label", "match": {"value": 0}}]})
    floor = searcher.options(min_score=-1.0)
    asked = [
        (make_image(COLOURS[c], seed=300 + i), opts)
        for i, (c, opts) in enumerate(
            [("red", only_red), ("blue", only_red), ("blue", floor), ("green", None)] * 2
        )
    ]
    expected = [searcher.search(image, k=4, options=opts) for image, opts in asked]
    with QueryBatcher(searcher) as batcher:
        release, busy = occupy(batcher)
        with ThreadPoolExecutor(len(asked)) as pool:
            futures = [pool.submit(batcher.search, i, 4, None, None, o) for i, o in asked]
            try:
                wait_for(lambda: len(batcher._jobs) == len(asked))
            finally:
                release.set()
            answers = [f.result() for f in futures]
        busy.join()
    assert max(batcher.batches) == len(asked)
    assert all(same(got, want) for got, want in zip(answers, expected))
    assert {h.label for h in answers[1]} == {0}  # the filter held in a shared batch
