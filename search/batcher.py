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

import contextlib
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future, InvalidStateError
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np
from PIL import Image

from lookalike.errors import QueryTimeout
from lookalike.index import SearchSettings
from lookalike.query import QueryOptions, time_budget
from lookalike.records import Hit, Query, Result
from lookalike.search.queries import grouped_options, needs_own, own_result, split_own
from lookalike.search.searcher import MAX_K, Searcher, check_k

DEFAULT_MAX_BATCH = 32  # queries in one forward pass: past this a CPU gains nothing
DEFAULT_MAX_WAIT_S = 0.005  # how long a batch waits for queries still being decoded
# A query's time on the inference thread, waiting included: past it the caller gets
# QueryTimeout, and loops that ask the engine again and again stop (`check_budget`). A plain
# query takes milliseconds; seconds are a pathological one, which must not hold up the rest.
DEFAULT_BUDGET_S = 10.0
# How much longer than its budget a caller waits for a query stuck in one engine call.
GRACE_S = 2.0
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
    deadline: float = float("inf")  # time.monotonic() past which it is not worth answering


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
        budget_s: float = DEFAULT_BUDGET_S,
    ) -> None:
        self.searcher = searcher
        self.budget_s = budget_s
        self.busy_since: float | None = None  # when the batch being answered started
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
        return self._wait(self._enqueue(image, job))

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
        if needs_own(options, include_self):  # left out before grouping, not after
            return [self._grouped(q, k, label_id, options) for q in queries]
        asked = min(k + 1, MAX_K + 1)
        futures = [
            self._enqueue(q.image, _Job(k=asked, label=label_id, options=options)) for q in queries
        ]
        found = [self._wait(f) for f in futures]
        file = self.searcher.gallery.file
        return [split_own(q, hits, k, file, include_self) for q, hits in zip(queries, found)]

    def _grouped(self, query: Query, k: int, label: int | None, options: QueryOptions) -> Result:
        own = self.call(self.searcher.own_point, query)
        chosen = grouped_options(query, options, own and own.id)
        hits = self._wait(self._enqueue(query.image, _Job(k=k, label=label, options=chosen)))
        return own_result(query, hits, k, own)

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
        return [self._wait(f) for f in [self._enqueue(i, j) for i, j in zip(images, jobs)]]

    def call(self, fn: Callable[..., T], *args) -> T:
        """fn(*args) on the batcher's thread (store access), between batches, within the
        time budget."""
        return self._wait(self.post(fn, *args))

    def post(self, fn: Callable[..., T], *args) -> Future:
        """fn(*args) on the batcher's thread, not waited for: its Future."""
        return self._submit(_Job(call=lambda: fn(*args)))

    def _submit(self, job: _Job) -> Future:
        job.deadline = job.future.deadline = time.monotonic() + self.budget_s
        with self._ready:
            if self._closed:
                raise RuntimeError("the query batcher is closed")
            self._jobs.append(job)
            self._ready.notify_all()
        return job.future

    def _wait(self, future: Future) -> Any:
        """A job's answer; QueryTimeout once it is past its budget (and the grace a query
        stuck in one engine call is given): a caller never waits without end."""
        left = future.deadline + GRACE_S - time.monotonic()
        try:
            return future.result(timeout=max(left, 0.0))
        except FutureTimeout:
            future.cancel()
            raise QueryTimeout(self.budget_s) from None

    def overrun_s(self) -> float:
        """How long the batch now on the inference thread has run past the budget (0: none)."""
        since = self.busy_since
        return 0.0 if since is None else max(0.0, time.monotonic() - since - self.budget_s)

    def close(self, timeout: float | None = None) -> bool:
        """Answer what was already handed over, then stop the thread; with `timeout`, wait
        no longer for a query that will not end (the thread is a daemon). Whether it ended."""
        with self._ready:
            self._closed = True
            self._ready.notify_all()
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def __enter__(self) -> QueryBatcher:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _run(self) -> None:
        while (batch := self._next_batch()) is not None:
            self.busy_since = time.monotonic()
            batch = [job for job in batch if _in_time(job, self.budget_s)]
            queries = [job for job in batch if job.call is None]
            for job in batch:
                if job.call is not None:
                    with time_budget(job.deadline - time.monotonic(), self.budget_s):
                        _settle(job.future, job.call)
            if queries:
                self.batches.append(len(queries))
                self._answer(queries)
            self.busy_since = None

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
                    _set(jobs[i].future, error=e)
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
            with time_budget(min(m.deadline for m in members) - time.monotonic(), self.budget_s):
                _settle_many([m.future for m in members], self.searcher.search_vectors, *args)


def _in_time(job: _Job, budget_s: float) -> bool:
    """Whether a job is still worth answering: one whose caller stopped waiting, or whose
    budget passed while it waited, is not run (QueryTimeout, if anyone still listens)."""
    if job.future.cancelled():
        return False
    if time.monotonic() > job.deadline:
        _set(job.future, error=QueryTimeout(budget_s))
        return False
    return True


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
    if len(tensors) == 1:
        return tensors[0]
    if isinstance(tensors[0], np.ndarray):  # a cached OpenVINO model's, prepared without torch
        return np.concatenate(tensors)
    import torch  # loaded with the model already; not before

    return torch.cat(tensors)


def _set(future: Future, result: Any = None, error: BaseException | None = None) -> None:
    """Answer a future, unless its caller gave up waiting (cancelled it)."""
    with contextlib.suppress(InvalidStateError):
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)


def _settle(future: Future, fn: Callable[[], Any]) -> None:
    try:
        result = fn()
    except Exception as e:  # the caller's error, raised in the caller's thread
        _set(future, error=e)
        return
    _set(future, result)


def _settle_many(futures: list[Future], fn: Callable[..., list], *args) -> None:
    try:
        results = fn(*args)
    except Exception as e:
        for future in futures:
            _set(future, error=e)
        return
    for future, result in zip(futures, results):
        _set(future, result)
