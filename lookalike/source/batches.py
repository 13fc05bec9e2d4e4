"""Keeping the model busy: decode and preprocess the next batches in worker threads while the
model embeds this one.

PIL decoding and resizing and the image processors' numpy work release the GIL, so threads
overlap for real. There are as many workers as cores, and at most one batch more in flight
than workers, so the work follows the bottleneck by itself: when decoding is the slow part
(camera photos), every worker is busy and the model waits; when the model is (small images),
batches wait ready and only one worker at a time refills the queue, leaving the cores to the
model. Each worker holds one decoded image at a time, so memory is a few small batches
whatever the photo size.

Workers are daemon threads: Ctrl-C stops the caller at once, whatever a worker is doing (a
slow network disk, a huge image), and the process can exit without waiting for it.
"""

from __future__ import annotations

import os
import queue
import threading
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
from PIL import Image

from lookalike.records import ImageRecord, Skipped

if TYPE_CHECKING:  # annotations only: batches of a photo's query need no datasets
    from lookalike.source.dataset import Source

MAX_WORKERS = 16  # beyond this the GIL-bound parts of each image (records, arrow reads) win


class Preparer(Protocol):
    """What the pipeline needs of the embedder."""

    decode_side: int | None  # decode images at this side or larger (None: full size)

    def prepare(self, images: Iterable[Image.Image]) -> Any: ...


def default_workers() -> int:
    return max(1, min(MAX_WORKERS, os.cpu_count() or 2))


@dataclass(frozen=True)
class PreparedBatch:
    """A batch ready for the model: payload records (images dropped), pixels, and skips."""

    records: list[ImageRecord]
    skipped: list[Skipped]
    pixels: Any  # what the embedder's prepare made (a torch tensor), None if no records


def _prepare(source: Source, preparer: Preparer, positions: np.ndarray) -> PreparedBatch:
    records: list[ImageRecord] = []
    skipped: list[Skipped] = []

    def images() -> Iterator[Image.Image]:
        for item in source.items(positions, preparer.decode_side):
            if isinstance(item, Skipped):
                skipped.append(item)
            else:
                records.append(replace(item, image=None))
                yield item.image

    pixels = preparer.prepare(images())
    return PreparedBatch(records, skipped, pixels if records else None)


def positions(source: Source, batch_size: int) -> Iterator[np.ndarray]:
    """Every position of the source, in batches."""
    for start in range(0, len(source), batch_size):
        yield np.arange(start, min(start + batch_size, len(source)))


class _Workers:
    """Daemon threads running jobs from a queue; `close` tells them to stop after their job."""

    def __init__(self, count: int) -> None:
        self._jobs: queue.SimpleQueue = queue.SimpleQueue()
        self._count = count
        for i in range(count):
            threading.Thread(target=self._run, name=f"lookalike-prep-{i}", daemon=True).start()

    def _run(self) -> None:
        while (job := self._jobs.get()) is not None:
            future, fn, args = job
            if future.set_running_or_notify_cancel():
                try:
                    future.set_result(fn(*args))
                except BaseException as e:  # handed to the caller, as an executor would
                    future.set_exception(e)

    def submit(self, fn, *args) -> Future:
        future: Future = Future()
        self._jobs.put((future, fn, args))
        return future

    def close(self) -> None:
        for _ in range(self._count):
            self._jobs.put(None)


def prepared_batches(
    source: Source,
    preparer: Preparer,
    batch_size: int,
    workers: int | None = None,
    batches: Iterable[np.ndarray] | None = None,
) -> Iterator[PreparedBatch]:
    """Batches in order, each decoded and prepared ahead of need by `workers` threads.

    `batches` (positions per batch) defaults to every position of the source."""
    workers = workers or default_workers()
    batches = positions(source, batch_size) if batches is None else batches
    pool = _Workers(workers)
    pending: deque[Future] = deque()
    try:
        for batch in batches:
            pending.append(pool.submit(_prepare, source, preparer, batch))
            if len(pending) > workers:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
    finally:
        for future in pending:  # stopped early: drop the work not yet started
            future.cancel()
        pool.close()
