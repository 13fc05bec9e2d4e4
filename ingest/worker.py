"""The ingest loop: dataset batches -> embedder -> store."""

from __future__ import annotations

import time
from collections.abc import Callable

from ingest.dataset import Source
from ingest.pipeline import BackgroundWriter, prepared_batches
from lookalike.embedder import Embedder
from lookalike.errors import DatasetLoadError
from lookalike.records import CollectionMeta, IngestReport, Skipped
from lookalike.store import Store


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


def ingest(
    source: Source,
    embedder: Embedder,
    store: Store,
    collection: str,
    *,
    batch_size: int | None = None,
    workers: int | None = None,
    recreate: bool = False,
    on_progress: Callable[[int], None] | None = None,
    on_skip: Callable[[Skipped], None] | None = None,
) -> IngestReport:
    """Embed every image of `source` and upsert it into `collection` under deterministic ids.

    Unreadable images are skipped (reported through `on_skip` and in the report), never fatal.
    Preprocessing, the model and upserts overlap (see ingest.pipeline).
    """
    if len(source) == 0:
        raise DatasetLoadError(f"split {source.split!r} of {source.name!r} has no rows to ingest")
    store.prepare(collection, collection_meta(source, embedder), recreate=recreate)
    started = time.perf_counter()
    embedded, skipped = 0, []

    def write(records, vectors):
        store.upsert(collection, records, vectors)

    with BackgroundWriter(write) as writer:
        batch_size = batch_size or embedder.default_batch_size
        for batch in prepared_batches(source, embedder, batch_size, workers):
            for item in batch.skipped:
                skipped.append(item)
                if on_skip:
                    on_skip(item)
            if batch.records:
                writer.submit(batch.records, embedder.embed_pixels(batch.pixels))
                embedded += len(batch.records)
            if on_progress:
                on_progress(len(batch.records) + len(batch.skipped))
    return IngestReport(collection, embedded, tuple(skipped), time.perf_counter() - started)
