"""The ingest loop: make a collection's split mirror a source's images, embedding only what is
new or changed; interruptible at any point, and converging when run again."""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from typing import TYPE_CHECKING

import numpy as np

from lookalike.embed import ModelSettings
from lookalike.errors import DatasetLoadError, IngestInterrupted, ModelMismatch, StoreUnavailable
from lookalike.index import IndexSettings
from lookalike.ingest.model import LazyModel, collection_meta
from lookalike.ingest.moved import check_moved, moved_from
from lookalike.ingest.plan import Plan, plan_sync, unindexed_fields
from lookalike.ingest.writer import BackgroundWriter
from lookalike.query import merge_types
from lookalike.records import (
    Change,
    CollectionMeta,
    ImageRecord,
    IngestReport,
    Skipped,
    check_compatible,
)

__all__ = ["collection_meta", "ingest"]
from lookalike.source import Source
from lookalike.source.batches import prepared_batches
from lookalike.store import Store

if TYPE_CHECKING:
    from lookalike.embed import Embedder

STEP = 256  # points per store request when reusing vectors or removing
# What embeds a sync's positions and stores them through its _Run (write, skip, tell, hooks):
# (run, positions, embedder, batch_size, workers). Default: `_Run.embed`, in this process.
EmbedStage = Callable[["_Run", list[int], "Embedder", int, "int | None"], None]


def _rows(records: list[ImageRecord]) -> str:
    """What a failed write was storing, for people: dataset rows, or a folder's images."""
    rows = [r.row for r in records if r.row is not None]
    if not rows:
        return f"images {records[0].path}..{records[-1].path}"
    return f"rows {records[0].split}:{min(rows)}..{max(rows)}"


@dataclass
class Hooks:
    """What the caller hears: the plan before any work, the number of images to embed once
    the model is ready, progress (images embedded or skipped), skips, each change once it is
    stored, and the index build."""

    progress: Callable[[int], None] | None = None
    skip: Callable[[Skipped], None] | None = None
    change: Callable[[Change], None] | None = None
    plan: Callable[[Plan], None] | None = None
    indexing: Callable[[], None] | None = None
    stop: threading.Event | None = None  # set from another thread: stop as Ctrl-C would
    embedding: Callable[[int], None] | None = None


@dataclass
class _Run:
    """One sync's moving parts and outcome; the writer thread calls `write`."""

    source: Source
    store: Store
    collection: str
    hooks: Hooks
    plan: Plan
    written: int = 0
    done: list[Change] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    embedded: int = 0
    embed_seconds: float | None = None
    types: dict[str, str] = field(default_factory=dict)  # of the payload fields written

    def tell(self, ids: list[str]) -> None:
        for point_id in ids:
            change = self.plan.changes.get(point_id)
            if change is not None:
                self.done.append(change)
                if self.hooks.change:
                    self.hooks.change(change)

    def write(self, records: list[ImageRecord], vectors: np.ndarray) -> None:
        """Runs in the writer thread; batches arrive in order."""
        try:
            self.store.upsert(self.collection, records, vectors)
        except StoreUnavailable as e:
            raise IngestInterrupted(
                self.collection, self.written, cause=e, rows=_rows(records)
            ) from e
        self.written += len(records)
        self.types = merge_types(self.types, (r.payload() for r in records))
        self.tell([r.id for r in records])

    def reuse(self) -> list[int]:
        """Store renamed, copied and relabelled images with vectors already stored; returns
        the positions whose vector was not there after all (to embed)."""
        # A vector whose point this sync gives another one (rows that shifted) is read first;
        # a point rewritten with its own vector (new fields only) is read with its chunk.
        moving = {record.id for _, record, o in self.plan.reuse if o != record.id}
        early = self._vectors(sorted({o for _, _, o in self.plan.reuse if o in moving}))
        missing = []
        for start in range(0, len(self.plan.reuse), STEP):
            chunk = self.plan.reuse[start : start + STEP]
            found = {**early, **self._vectors([o for _, _, o in chunk if o not in early])}
            ready = [(r, found[o]) for _, r, o in chunk if o in found]
            missing += [p for p, _, o in chunk if o not in found]
            if ready:
                self.write([r for r, _ in ready], np.stack([v for _, v in ready]))
        return missing

    def _vectors(self, ids: list[str]) -> dict[str, np.ndarray]:
        found: dict[str, np.ndarray] = {}
        for start in range(0, len(ids), STEP):
            found.update(self.store.vectors(self.collection, ids[start : start + STEP]))
        return found

    def embed(self, positions: list[int], embedder: Embedder, batch_size, workers) -> None:
        batches = (
            np.asarray(positions[i : i + batch_size]) for i in range(0, len(positions), batch_size)
        )
        prepared = prepared_batches(self.source, embedder, batch_size, workers, batches)
        started = time.perf_counter()
        with BackgroundWriter(self.write) as writer:
            try:
                for batch in prepared:
                    self.skip(batch.skipped)
                    if batch.records:
                        writer.submit(batch.records, embedder.embed_pixels(batch.pixels))
                        self.embedded += len(batch.records)
                    if self.hooks.progress:
                        self.hooks.progress(len(batch.records) + len(batch.skipped))
                    if self.hooks.stop is not None and self.hooks.stop.is_set():
                        raise KeyboardInterrupt
            except KeyboardInterrupt:
                writer.drain()
                raise IngestInterrupted(self.collection, self.written, by_user=True) from None
        self.embed_seconds = time.perf_counter() - started

    def skip(self, items: list[Skipped]) -> None:
        """An unreadable image is not stored; a point stored for its old content goes."""
        for item in items:
            self.skipped.append(item)
            point_id = self._ids.get((item.path, item.row), "")
            self.plan.changes.pop(point_id, None)
            if point_id in self.plan.stored:
                self.plan.remove.append(point_id)
            if self.hooks.skip:
                self.hooks.skip(item)

    @functools.cached_property
    def _ids(self) -> dict[tuple, str]:
        """The ids of the images to embed, by what a Skipped names (path, row)."""
        return {(r.path, r.row): r.id for r in map(self.source.describe, self.plan.embed)}

    def remove(self) -> None:
        for start in range(0, len(self.plan.remove), STEP):
            chunk = self.plan.remove[start : start + STEP]
            self.store.delete(self.collection, chunk)
            self.written += len(chunk)
            self.tell(chunk)


def ingest(
    source: Source,
    embedder: Embedder | ModelSettings,
    store: Store,
    collection: str,
    *,
    batch_size: int | None = None,
    workers: int | None = None,
    recreate: bool = False,
    resume: bool = True,
    keep_missing: bool = False,
    dry_run: bool = False,
    settle: float = 0.0,
    allow_empty: bool = False,
    index: IndexSettings | None = None,
    on_progress: Callable[[int], None] | None = None,
    on_skip: Callable[[Skipped], None] | None = None,
    on_indexing: Callable[[], None] | None = None,
    on_change: Callable[[Change], None] | None = None,
    on_plan: Callable[[Plan], None] | None = None,
    on_embedding: Callable[[int], None] | None = None,
    stop: threading.Event | None = None,
    relocate: bool = False,
    embed_stage: EmbedStage | None = None,
) -> IngestReport:
    """Sync `collection`'s points of `source.split` with `source`'s images.

    New images and images whose content changed are embedded; renamed, moved or copied ones
    reuse their stored vector; a changed label or metadata field is rewritten; points whose
    images are gone are removed once everything else is stored (`keep_missing` keeps them,
    and a sampled source never removes). So a run stopped at any point (Ctrl-C, `stop`, a
    kill) and run again ends with the collection mirroring the images. Unreadable images are
    skipped (through `on_skip` and in the report), never fatal. `resume=False` embeds every
    image again. `allow_empty`: a source with no rows syncs an existing collection down to
    nothing (else it is an error: a folder whose disk is not mounted looks empty). `dry_run`
    only plans: nothing is embedded or written, and no model loads.
    `embedder` may be ModelSettings: the model then loads only if something needs embedding.
    `embed_stage` embeds and writes the planned positions instead of this process's pipeline
    (`lookalike.distributed`: on Ray); everything else, plan and removals included, stays here.
    A dataset folder that moved (or another name of it) whose images all match the stored ones
    is the same dataset: the sync changes nothing and records its new place; where only some
    match, `relocate` consents (else DatasetMoved).
    """
    info = store.info(collection) if not recreate and store.exists(collection) else None
    if len(source) == 0 and not (allow_empty and info):
        raise DatasetLoadError(
            source.name,
            f"split {source.split!r} of {source.name!r} has no rows to ingest",
            kind="no_rows",
            split=source.split,
        )
    hooks = Hooks(on_progress, on_skip, on_change, on_plan, on_indexing, stop, on_embedding)
    started, model = time.perf_counter(), LazyModel(embedder)
    if info and info.meta:  # label ids as the collection numbers them
        source = source.relabel(info.meta.label_names)
    moved = info is not None and moved_from(info.meta, source)
    if moved:  # ids as the collection made them; whether the images match is seen below
        source = replace(source, id_name=info.meta.identity)
    if info:  # refuse another model or dataset before reading anything
        check_compatible(info, model.target(source, info.meta), ingest=True)
    stored = store.tracked(collection, source.split) if info else []
    keeping = keep_missing or source.sampled
    if keeping and any(t.sha256 is None for t in stored):
        # An older lookalike's points (keyed by row, no fingerprint) can be replaced by a
        # full sync, not by one that keeps what it does not see.
        raise ModelMismatch(collection, "legacy")
    plan = plan_sync(source, stored, keep_missing=keeping, reembed=not resume, settle=settle)
    del stored  # every stored payload: compared now, and not kept while writing
    if moved:
        check_moved(collection, info.meta, source, plan, relocate)
    plan.unindexed = unindexed_fields(source.payload_columns)
    if hooks.plan:
        hooks.plan(plan)
    if dry_run:
        return _report(collection, plan, list(plan.changes.values()), [], 0, started, True)
    # Only now, with every image described and its metadata checked, is anything written.
    have = _prepare(source, model, store, collection, info, recreate, index)
    run = _Run(source, store, collection, hooks, plan)
    plan.embed += run.reuse()
    if plan.embed:
        embedder = model.load(have)
        if info is not None:  # the model that loaded must be the collection's
            check_compatible(info, collection_meta(source, embedder), ingest=True)
        if hooks.embedding:
            hooks.embedding(len(plan.embed))
        stage = embed_stage or _Run.embed
        stage(run, plan.embed, embedder, batch_size or embedder.default_batch_size, workers)
    run.remove()
    # A sync with nothing to write still finishes what a killed one left unfinished (its
    # payload indexes, the engine's index and integrity record).
    if run.written or store.unfinished(collection):
        if hooks.indexing:
            hooks.indexing()
        types = run.types or store.field_types(collection, source.payload_columns)
        store.index_fields(collection, plan.indexable(types))  # what filters will ask for
        store.finish(collection)
    if plan.embed and not (info and info.meta and info.meta.duplicates):
        _calibrate(source, model.load(have), store, collection)
    store.mark_synced(collection, datetime.now(timezone.utc).isoformat(timespec="seconds"))
    report = _report(collection, plan, run.done, run.skipped, run.embedded, started, False)
    return replace(report, embed_seconds=run.embed_seconds)


def _calibrate(source: Source, embedder: Embedder, store: Store, collection: str) -> None:
    """Measure and record the collection's near-duplicate threshold (ingest/calibrate.py)."""
    from lookalike.ingest.calibrate import calibrate  # torch is loaded by now

    found = calibrate(source, embedder, store, collection)
    meta = store.info(collection).meta if found else None
    if meta is not None:
        store.update_meta(collection, replace(meta, duplicates=found))


def _prepare(source, model, store, collection, info, recreate, index) -> CollectionMeta:
    """Create the collection (loading the model, whose output sizes it), or record the label
    names it gains; returns its meta."""
    if info is not None:
        target = model.target(source, info.meta)
        store.prepare(collection, target)
        return replace(info.meta, label_names=target.label_names)
    target = model.target(source, None) or collection_meta(source, model.load(None))
    store.prepare(collection, target, recreate=recreate, index=index)
    return target


def _report(collection, plan, done, skipped, embedded, started, dry_run) -> IngestReport:
    payload_columns = plan.payload_columns

    def count(kind: str) -> int:
        return sum(c.kind == kind for c in done)

    return IngestReport(
        collection,
        embedded,
        tuple(skipped),
        time.perf_counter() - started,
        added=count("added"),
        updated=count("updated"),
        renamed=count("renamed"),
        removed=count("removed"),
        unchanged=plan.unchanged,
        migrated=plan.legacy,
        pending=plan.pending,
        dry_run=dry_run,
        changes=tuple(done) if dry_run else (),
        payload_columns=payload_columns,
    )
