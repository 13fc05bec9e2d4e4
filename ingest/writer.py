"""Writing while the model works: upserts run in one writer thread, a few batches deep."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait

import numpy as np

from lookalike.records import ImageRecord


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
