"""Writing embedded rows into a Qdrant server or cluster from the Ray workers.

Each write task upserts its rows in requests of 64-256 points and waits for each (the store's
`wait=True`); transient failures (timeouts, 429, 5xx, a dropped connection) are retried with
back-off by the store (`StoreConfig.retries`, `backoff`), anything else fails the run at once.
A row is counted, in the driver's `Tally`, only once the server has applied its write: the
count a failed run reports is what is stored. Ids are the local ingest's, so a retried task,
a restarted actor or a second run overwrites instead of duplicating.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import replace

from ray.data import Datasink
from ray.data.block import BlockAccessor

from lookalike.distributed.stages import _cached, unpack
from lookalike.errors import StoreUnavailable
from lookalike.ingest.worker import _rows
from lookalike.query import FLOAT, INTEGER, MIXED, merge_types
from lookalike.records import Skipped
from lookalike.store.config import StoreConfig

MIN_BATCH, MAX_BATCH = 64, 256  # points per upsert: well under Qdrant's request size


class Tally:
    """The driver's account of a run (a Ray actor): ids stored, their payload field types,
    skipped images, and the seconds writes took."""

    def __init__(self) -> None:
        self.ids: set[str] = set()
        self.types: dict[str, str] = {}
        self.skips: dict[tuple, Skipped] = {}
        self.seconds: dict[str, float] = {}
        self.failure: tuple | None = None  # the first refused write: StoreUnavailable's fields

    def written(self, ids: list[str], types: dict[str, str], seconds: dict[str, float]) -> None:
        self.ids.update(ids)
        self.types = merge_kinds(self.types, types)
        for stage, s in seconds.items():
            self.seconds[stage] = self.seconds.get(stage, 0.0) + s

    def skipped(self, items: list[Skipped]) -> None:
        for item in items:  # a block retried reports its skips again: once each
            self.skips[(item.split, item.row, item.path)] = item

    def failed(self, fields: tuple) -> None:
        self.failure = self.failure or fields

    def error(self) -> tuple | None:
        return self.failure

    def count(self) -> int:
        return len(self.ids) + len(self.skips)

    def result(self) -> tuple[list[str], dict[str, str], list[Skipped], dict[str, float]]:
        return sorted(self.ids), dict(self.types), list(self.skips.values()), self.seconds


def merge_kinds(have: dict[str, str], new: dict[str, str]) -> dict[str, str]:
    """Payload field types of two sets of points together, as `merge_types` would see them."""
    merged = dict(have)
    for key, kind in new.items():
        old = merged.get(key)
        if old is None or old == kind:
            merged[key] = kind
        else:
            merged[key] = FLOAT if {old, kind} == {INTEGER, FLOAT} else MIXED
    return merged


def _store(config: StoreConfig):
    from lookalike.store.qdrant import QdrantStore

    return _cached(("store", config), lambda: QdrantStore.open(config))


class QdrantSink(Datasink):
    """Upserts the embedded rows into `collection` on the server of `config`."""

    def __init__(self, config: StoreConfig, collection: str, tally, batch: int = 128) -> None:
        self.batch = max(MIN_BATCH, min(MAX_BATCH, batch))
        # One request at a time per task, each waited for: the workers are the parallelism.
        self.config = replace(config, upsert_batch=self.batch, upload_parallel=1)
        self.collection, self.tally = collection, tally

    def get_name(self) -> str:
        return "QdrantSink"

    @property
    def min_rows_per_write(self) -> int:
        return self.batch  # whole requests, not one per small block

    def write(self, blocks: Iterable, ctx) -> int:
        import ray

        store = _store(self.config)
        written = 0
        for block in blocks:
            batch = BlockAccessor.for_block(block).to_numpy()
            records, vectors, skipped = unpack(batch)
            if skipped:
                ray.get(self.tally.skipped.remote(skipped))
            # Where the seconds went, counted with the block's first write.
            seconds = {f"{s}_s": float(batch[f"t_{s}"].sum()) for s in ("decode", "embed")}
            for start in range(0, len(records), self.batch):
                chunk = records[start : start + self.batch]
                began = time.perf_counter()
                try:
                    store.upsert(self.collection, chunk, vectors[start : start + self.batch])
                except StoreUnavailable as e:  # retried already if it could pass: stop the run
                    fields = (e.location, e.action, e.reason, e.attempts, e.status, _rows(chunk))
                    ray.get(self.tally.failed.remote(fields))
                    # Ray hands the driver the message (the error's own class would not
                    # unpickle there); the tally has its fields.
                    raise RuntimeError(str(e)) from None
                types = merge_types({}, (r.payload() for r in chunk))
                seconds["write_s"] = time.perf_counter() - began
                ray.get(self.tally.written.remote([r.id for r in chunk], types, seconds))
                seconds = {}
                written += len(chunk)
        return written
