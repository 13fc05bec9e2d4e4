"""Queries from many threads answered by one: the thread that owns the model and the store.

A server's request threads decode their query, hand it over and wait; the batcher's thread
embeds every query waiting (up to `max_batch`) in one forward pass, asks the store once for
each (k, label) among them, and gives each caller its own hits. One thread, because torch
gives each thread that calls it a team of OpenMP threads of its own (several teams spinning on
the same cores cost more than the model), embedded Qdrant is not thread-safe, and a GPU wants
its transfers on one thread; batches, because a batch of 8 costs the model little more than
one image.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np
from PIL import Image

from lookalike.index import SearchSettings
from lookalike.query import QueryOptions
from lookalike.records import Hit, Query, Result
from lookalike.search.queries import own_left_out, split_own
from lookalike.search.searcher import MAX_K, Searcher, check_k

DEFAULT_MAX_BATCH = 32  # queries in one forward pass: past this a CPU gains nothing
DEFAULT_MAX_WAIT_S = 0.005  # how long a batch waits for queries still being decoded
T = TypeVar("T")


@dataclass(eq=False)
class _Job:
    future: Future = field(default_factory=Future)
    pixels: Any = None  # the prepared query, (1, ...), or None for a call
    k: int = 5
    label: int | None = None
    params: SearchSettings | None = None
    options: QueryOptions | None = None
    call: Callable[[], Any] | None = None


class QueryBatcher:
    """Search one Searcher from any number of threads, in micro-batches.

    >>> with QueryBatcher(searcher) as batcher:           # from request threads:
    ...     hits = batcher.search(image, k=5, label="healthy")

    The caller bounds how many queries wait (the server's admission does); `call` runs any
    other store access on the same thread, between batches.
    """

    def __init__(
        self,
        searcher: Searcher,
        *,
        max_batch: int = DEFAULT_MAX_BATCH,
        max_wait_s: float = DEFAULT_MAX_WAIT_S,
    ) -> None:
        self.searcher = searcher
        self.max_batch = max(1, max_batch)
        self.max_wait_s = max_wait_s
        self._jobs: deque[_Job] = deque()
        self._ready = threading.Condition()
        self._arriving = 0  # queries being prepared by their threads, about to join
        self._closed = False
        self.batches: deque[int] = deque(maxlen=1000)  # recent batch sizes, for tests and stats
        self._thread = threading.Thread(target=self._run, name="lookalike-inference", daemon=True)
        self._thread.start()

    def search(
        self,
        image: Image.Image,
        k: int = 5,
        label: str | int | None = None,
        params: SearchSettings | None = None,
        options: QueryOptions | None = None,
    ) -> list[Hit]:
        """The top-k hits for a decoded image, as `Searcher.search` finds them."""
        check_k(k)  # a bad k or label is the caller's alone: refused here, not in a batch
        job = _Job(k=k, label=self.searcher.label_id(label), params=params, options=options)
        return self._enqueue(image, job).result()

    def search_queries(
        self,
        queries: Sequence[Query],
        k: int = 5,
        label: str | int | None = None,
        *,
        include_self: bool = False,
        options: QueryOptions | None = None,
    ) -> list[Result]:
        """`Searcher.search_queries`, batched with everything else waiting: a query that is
        one of the collection's own images does not find itself unless `include_self`."""
        check_k(k)
        label_id = self.searcher.label_id(label)
        asked = min(k + 1, MAX_K + 1)
        asking = [own_left_out(q, options, include_self) for q in queries]
        futures = [
            self._enqueue(q.image, _Job(k=asked, label=label_id, options=o))
            for q, o in zip(queries, asking)
        ]
        found = [f.result() for f in futures]
        file = self.searcher.gallery.file
        return [
            split_own(q, hits, k, file, include_self, o != options)
            for q, hits, o in zip(queries, found, asking)
        ]

    def _enqueue(self, image, job: _Job) -> Future:
        with self._ready:
            self._arriving += 1
        try:
            # The CPU half of preprocessing runs here, in the caller's thread, in parallel.
            job.pixels = self.searcher.embedder.prepare([image])
        finally:
            with self._ready:
                self._arriving -= 1
                self._ready.notify_all()
        return self._submit(job)

    def search_many(
        self,
        images: Sequence[Image.Image],
        k: int = 5,
        label: str | int | None = None,
        options: QueryOptions | None = None,
    ) -> list[list[Hit]]:
        """One list of hits per image, batched with everything else waiting."""
        check_k(k)
        label_id = self.searcher.label_id(label)
        jobs = [_Job(k=k, label=label_id, options=options) for _ in images]
        return [f.result() for f in [self._enqueue(i, j) for i, j in zip(images, jobs)]]

    def call(self, fn: Callable[..., T], *args) -> T:
        """fn(*args) on the batcher's thread (store access), between batches."""
        return self._submit(_Job(call=lambda: fn(*args))).result()

    def _submit(self, job: _Job) -> Future:
        with self._ready:
            if self._closed:
                raise RuntimeError("the query batcher is closed")
            self._jobs.append(job)
            self._ready.notify_all()
        return job.future

    def close(self) -> None:
        """Answer what was already handed over, then stop the thread."""
        with self._ready:
            self._closed = True
            self._ready.notify_all()
        self._thread.join()

    def __enter__(self) -> QueryBatcher:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _run(self) -> None:
        while (batch := self._next_batch()) is not None:
            queries = [job for job in batch if job.call is None]
            for job in batch:
                if job.call is not None:
                    _settle(job.future, job.call)
            if queries:
                self.batches.append(len(queries))
                self._answer(queries)

    def _next_batch(self) -> list[_Job] | None:
        """What waits, up to max_batch, after waiting up to max_wait_s for queries that are
        being prepared (never for a lone query: one client alone waits for nothing)."""
        with self._ready:
            while not self._jobs and not self._closed:
                self._ready.wait()
            if not self._jobs:
                return None  # closed, and everything answered
            deadline = time.monotonic() + self.max_wait_s
            while len(self._jobs) < self.max_batch and self._arriving and not self._closed:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._ready.wait(left)
            n = min(len(self._jobs), self.max_batch)
            return [self._jobs.popleft() for _ in range(n)]

    def _answer(self, jobs: list[_Job]) -> None:
        """One forward pass per input shape (one, for a processor that crops), then one store
        request per (k, label, params, options); a failure fails only the queries it concerns."""
        vectors: list[np.ndarray | None] = [None] * len(jobs)
        for group in _groups(jobs, lambda j: tuple(j.pixels.shape[1:])):
            try:
                pixels = _cat([jobs[i].pixels for i in group])
                embedded = self.searcher.embedder.embed_pixels(pixels)
            except Exception as e:  # the model failed: these callers get its error
                for i in group:
                    jobs[i].future.set_exception(e)
                continue
            for row, i in enumerate(group):
                vectors[i] = embedded[row]
        ready = [i for i, v in enumerate(vectors) if v is not None]
        asks = [jobs[i] for i in ready]
        for group in _groups(asks, lambda j: (j.k, j.label, j.params, j.options)):
            members = [asks[i] for i in group]
            stacked = np.stack([vectors[ready[i]] for i in group])
            first = members[0]
            args = (stacked, first.k, first.label, first.params, first.options)
            _settle_many([m.future for m in members], self.searcher.search_vectors, *args)


def _groups(jobs: list[_Job], key) -> list[list[int]]:
    """Indices of the jobs with equal keys, in order of first appearance (by equality: query
    options hold filter dicts, which do not hash)."""
    keys: list[Any] = []
    found: list[list[int]] = []
    for i, job in enumerate(jobs):
        k = key(job)
        for j, known in enumerate(keys):
            if known == k:
                found[j].append(i)
                break
        else:
            keys.append(k)
            found.append([i])
    return found


def _cat(tensors: list):
    import torch  # loaded with the model already; not before

    return tensors[0] if len(tensors) == 1 else torch.cat(tensors)


def _settle(future: Future, fn: Callable[[], Any]) -> None:
    try:
        future.set_result(fn())
    except Exception as e:  # the caller's error, raised in the caller's thread
        future.set_exception(e)


def _settle_many(futures: list[Future], fn: Callable[..., list], *args) -> None:
    try:
        results = fn(*args)
    except Exception as e:
        for future in futures:
            future.set_exception(e)
        return
    for future, result in zip(futures, results):
        future.set_result(result)
