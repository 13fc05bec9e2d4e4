"""Keeping the model busy: decode and preprocess the next batches in worker threads while the
model embeds this one, and upsert in a writer thread while the model embeds the next.

PIL decoding, the image processors' numpy work and torch kernels all release the GIL, so
threads overlap for real; memory stays bounded by the few batches in flight.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, replace

import numpy as np
import torch

from ingest.dataset import Source
from lookalike.embedder import Embedder
from lookalike.records import ImageRecord, Skipped


def default_workers() -> int:
    # One core is left to the model, whose kernels use every core they get.
    return max(1, min(4, (os.cpu_count() or 2) - 1))


@dataclass(frozen=True)
class PreparedBatch:
    """A batch ready for the model: payload records (images dropped), pixels, and skips."""

    records: list[ImageRecord]
    skipped: list[Skipped]
    pixels: torch.Tensor | None


def _prepare(source: Source, embedder: Embedder, positions: np.ndarray) -> PreparedBatch:
    records, skipped = source.load(positions)
    pixels = embedder.preprocess([r.image for r in records]) if records else None
    return PreparedBatch([replace(r, image=None) for r in records], skipped, pixels)


def positions(source: Source, batch_size: int) -> Iterator[np.ndarray]:
    """Every position of the source, in batches."""
    for start in range(0, len(source), batch_size):
        yield np.arange(start, min(start + batch_size, len(source)))


def prepared_batches(
    source: Source,
    embedder: Embedder,
    batch_size: int,
    workers: int | None = None,
    batches: Iterable[np.ndarray] | None = None,
) -> Iterator[PreparedBatch]:
    """Batches in order, each decoded and preprocessed ahead of need by `workers` threads.

    `batches` (positions per batch) defaults to every position of the source."""
    workers = workers or default_workers()
    batches = positions(source, batch_size) if batches is None else batches
    with ThreadPoolExecutor(workers, thread_name_prefix="lookalike-prep") as pool:
        pending: deque[Future] = deque()
        try:
            for batch in batches:
                pending.append(pool.submit(_prepare, source, embedder, batch))
                if len(pending) > workers:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:
            for future in pending:  # stopped early: drop the work not yet started
                future.cancel()


class BackgroundWriter:
    """Runs writes in one thread, at most `depth` waiting; the first failure is re-raised."""

    def __init__(self, write: Callable[[list[ImageRecord], np.ndarray], None], depth: int = 2):
        self._write = write
        self._depth = depth
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="lookalike-upsert")
        self._pending: deque[Future] = deque()

    def call(self, fn: Callable, *args):
        """Run fn in the writer thread, after the writes before it, and return its result:
        the one thread then owns the store, which embedded Qdrant needs."""
        return self._pool.submit(fn, *args).result()

    def submit(self, records: list[ImageRecord], vectors: np.ndarray) -> None:
        self._pending.append(self._pool.submit(self._write, records, vectors))
        while len(self._pending) > self._depth:
            self._pending.popleft().result()

    def drain(self) -> None:
        """Wait for the writes already submitted (after an interruption: keep what is done)."""
        wait(self._pending)  # failures are not re-raised: the caller is already reporting one
        self._pending.clear()

    def __enter__(self) -> BackgroundWriter:
        return self

    def __exit__(self, exc_type, *exc) -> None:
        try:
            while self._pending:
                future = self._pending.popleft()
                if exc_type is None:
                    future.result()
                else:
                    future.cancel()
        finally:
            self._pool.shutdown(wait=True)
