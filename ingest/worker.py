"""The ingest loop: dataset batches -> embedder -> store, resumable and interruptible."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from lookalike.errors import DatasetLoadError, IngestInterrupted, StoreUnavailable
from lookalike.index import IndexSettings
from lookalike.ingest.writer import BackgroundWriter
from lookalike.records import CollectionMeta, ImageRecord, IngestReport, Skipped
from lookalike.source import Source
from lookalike.source.batches import positions, prepared_batches
from lookalike.store import Store

if TYPE_CHECKING:  # torch loads with the model, not with this module
    from lookalike.embed import Embedder


def collection_meta(source: Source, embedder: Embedder) -> CollectionMeta:
    return CollectionMeta(
        model=embedder.model_id,
        pooling=embedder.pooling,
        dim=embedder.dim,
        dataset=source.name,
        image_column=source.image_column,
        label_column=source.label_column,
        label_names=source.label_names,
    )


def _rows(records: list[ImageRecord]) -> str:
    rows = [r.row for r in records]
    return f"{records[0].split}:{min(rows)}..{max(rows)}"


@dataclass
class _Run:
    """One ingest's moving parts and counts, shared by the main and the writer thread."""

    source: Source
    store: Store
    collection: str
    on_progress: Callable[[int], None] | None
    stored: int = 0
    already_stored: int = 0

    def write(self, records: list[ImageRecord], vectors: np.ndarray) -> None:
        """Runs in the writer thread; batches arrive in order, so `stored` is a prefix."""
        try:
            self.store.upsert(self.collection, records, vectors)
        except StoreUnavailable as e:
            raise IngestInterrupted(
                self.collection, self.stored, cause=e, rows=_rows(records)
            ) from e
        self.stored += len(records)

    def todo(self, batch_size: int, resume: bool, writer: BackgroundWriter) -> Iterator[np.ndarray]:
        """Positions still to embed, batch by batch; with resume, stored points are left out.
        The look-up runs in the writer thread, which owns the store."""
        for batch in positions(self.source, batch_size):
            if resume:
                ids = [self.source.point_id(int(p)) for p in batch]
                have = writer.call(self.store.existing_ids, self.collection, ids)
                keep = np.array([i not in have for i in ids], dtype=bool)
                self.already_stored += int((~keep).sum())
                if self.on_progress and not keep.all():
                    self.on_progress(int((~keep).sum()))
                batch = batch[keep]
            if len(batch):
                yield batch


def ingest(
    source: Source,
    embedder: Embedder,
    store: Store,
    collection: str,
    *,
    batch_size: int | None = None,
    workers: int | None = None,
    recreate: bool = False,
    resume: bool = True,
    index: IndexSettings | None = None,
    on_progress: Callable[[int], None] | None = None,
    on_skip: Callable[[Skipped], None] | None = None,
    on_indexing: Callable[[], None] | None = None,
) -> IngestReport:
    """Embed every image of `source` and upsert it into `collection` under deterministic ids.

    Unreadable images are skipped (through `on_skip` and in the report), never fatal. With
    `resume`, images whose point is already stored are not embedded again, so an interrupted
    ingest picks up where it stopped. Preprocessing, the model and upserts overlap.
    """
    if len(source) == 0:
        raise DatasetLoadError(
            source.name,
            f"split {source.split!r} of {source.name!r} has no rows to ingest",
            kind="no_rows",
            split=source.split,
        )
    store.prepare(collection, collection_meta(source, embedder), recreate=recreate, index=index)
    batch_size = batch_size or embedder.default_batch_size
    run, skipped, started = _Run(source, store, collection, on_progress), [], time.perf_counter()
    with BackgroundWriter(run.write) as writer:
        todo = run.todo(batch_size, resume, writer)
        try:
            prepared = prepared_batches(
                source, embedder.preprocess, batch_size, workers, batches=todo
            )
            for batch in prepared:
                skipped += batch.skipped
                for item in batch.skipped if on_skip else ():
                    on_skip(item)
                if batch.records:
                    writer.submit(batch.records, embedder.embed_pixels(batch.pixels))
                if on_progress:
                    on_progress(len(batch.records) + len(batch.skipped))
        except KeyboardInterrupt:
            writer.drain()
            raise IngestInterrupted(collection, run.stored, by_user=True) from None
    if on_indexing:
        on_indexing()
    store.finish(collection)
    seconds = time.perf_counter() - started
    return IngestReport(collection, run.stored, tuple(skipped), seconds, run.already_stored)
