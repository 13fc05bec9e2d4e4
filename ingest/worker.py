"""The ingest loop: dataset batches -> embedder -> store."""

from __future__ import annotations

import time
from collections.abc import Callable

from ingest.dataset import Source
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
    batch_size: int = 32,
    recreate: bool = False,
    on_progress: Callable[[int], None] | None = None,
    on_skip: Callable[[Skipped], None] | None = None,
) -> IngestReport:
    """Embed every image of `source` and upsert it into `collection` under deterministic ids.

    Unreadable images are skipped (reported through `on_skip` and in the report), never fatal.
    """
    if len(source) == 0:
        raise DatasetLoadError(f"split {source.split!r} of {source.name!r} has no rows to ingest")
    store.prepare(collection, collection_meta(source, embedder), recreate=recreate)
    started = time.perf_counter()
    embedded, skipped = 0, []
    for records, bad in source.batches(batch_size):
        for item in bad:
            skipped.append(item)
            if on_skip:
                on_skip(item)
        if records:
            vectors = embedder.embed([r.image for r in records])
            store.upsert(collection, records, vectors)
            embedded += len(records)
        if on_progress:
            on_progress(len(records) + len(bad))
    return IngestReport(collection, embedded, tuple(skipped), time.perf_counter() - started)
