"""Keeping the model busy: decode and preprocess the next batches in worker threads while the
model embeds this one.

PIL decoding, the image processors' numpy work and torch kernels all release the GIL, so
threads overlap for real; memory stays bounded by the few batches in flight.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from PIL import Image

from lookalike.records import ImageRecord, Skipped
from lookalike.source.dataset import Source

# The embedder's preprocess: RGB images -> a pixel tensor for the model.
Preprocess = Callable[[Sequence[Image.Image]], Any]


def default_workers() -> int:
    # One core is left to the model, whose kernels use every core they get.
    return max(1, min(4, (os.cpu_count() or 2) - 1))


@dataclass(frozen=True)
class PreparedBatch:
    """A batch ready for the model: payload records (images dropped), pixels, and skips."""

    records: list[ImageRecord]
    skipped: list[Skipped]
    pixels: Any  # what the embedder's preprocess made (a torch tensor), None if no records


def _prepare(source: Source, preprocess: Preprocess, positions: np.ndarray) -> PreparedBatch:
    records, skipped = source.load(positions)
    pixels = preprocess([r.image for r in records]) if records else None
    return PreparedBatch([replace(r, image=None) for r in records], skipped, pixels)


def positions(source: Source, batch_size: int) -> Iterator[np.ndarray]:
    """Every position of the source, in batches."""
    for start in range(0, len(source), batch_size):
        yield np.arange(start, min(start + batch_size, len(source)))


def prepared_batches(
    source: Source,
    preprocess: Preprocess,
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
                pending.append(pool.submit(_prepare, source, preprocess, batch))
                if len(pending) > workers:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:
            for future in pending:  # stopped early: drop the work not yet started
                future.cancel()
