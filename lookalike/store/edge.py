"""The embedded `edge` engine: Qdrant's own engine in-process (qdrant-edge-py).

The only module that imports qdrant_edge. Each collection is one edge shard in
`<path>/edge/<collection>/shard`, next to `lookalike.json` holding what the collection was
built with (edge shards have no collection metadata of their own). Shards open on first use
and stay open until the store closes; an open shard is locked against other processes.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import warnings
from collections.abc import Sequence
from dataclasses import replace

import numpy as np
import qdrant_edge as qe

from lookalike.errors import BadQuery, LookalikeError, StoreDamaged, StoreUnavailable
from lookalike.index import IndexSettings, SearchSettings
from lookalike.query import (
    MIXED,
    Examples,
    QueryOptions,
    check_min_score,
    cosine_score,
    engine_min_score,
)
from lookalike.records import (
    CollectionInfo,
    CollectionMeta,
    Hit,
    ImageRecord,
    StoredPoint,
    Tracked,
)
from lookalike.store import disk, integrity
from lookalike.store.base import Store
from lookalike.store.config import NAME, StoreConfig, check_name
from lookalike.store.edge_query import (
    FIELD_TYPES,
    edge_filter,
    grouped,
    hits,
    recommend_query,
    request,
)
from lookalike.store.holders import locked

META_FILE = "lookalike.json"
# Segments under this size (KB) are scanned, not graph-searched: exact and fast when small.
FULL_SCAN_KB = 10_000
# Creating a collection takes seconds at most: a creator holding the lock longer is stuck.
CREATE_WAIT_S = 60


def _is_panic(error: BaseException) -> bool:
    """A Rust panic inside the engine: pyo3 raises it as a BaseException, not an Exception."""
    return type(error).__name__ == "PanicException"


def _quantization(index: IndexSettings):
    if index.quantization == "int8":
        return qe.ScalarQuantizationConfig(type=qe.ScalarType.Int8, quantile=0.99, always_ram=True)
    if index.quantization == "binary":
        return qe.BinaryQuantizationConfig(always_ram=True)
    return None


def _edge_config(dim: int, index: IndexSettings) -> qe.EdgeConfig:
    vectors = qe.EdgeVectorParams(
        size=dim,
        distance=qe.Distance.Cosine,
        memory=qe.Memory.Cold if index.on_disk else None,
    )
    hnsw = qe.HnswIndexConfig(
        m=index.hnsw_m, ef_construct=index.hnsw_ef_construct, full_scan_threshold=FULL_SCAN_KB
    )
    return qe.EdgeConfig(
        vectors=vectors, hnsw_config=hnsw, quantization_config=_quantization(index)
    )


class EdgeStore(Store):
    """Collections as edge shards under one folder."""

    engine = "edge"

    def __init__(self, config: StoreConfig) -> None:
        self.config = config
        self.root = os.path.join(config.path, "edge")
        self._shards: dict[str, qe.EdgeShard] = {}
        self._writing: set[str] = set()  # collections changed since their check record
        self._locks = disk.CollectionLocks(
            self.root, CREATE_WAIT_S, lambda name: locked(config.path, name)
        )

    def _dir(self, name: str) -> str:
        return os.path.join(self.root, check_name(name))

    @property
    def _where(self) -> str:
        return f"the edge store {self.config.path}"

    @contextlib.contextmanager
    def _engine(self, name: str, what: str):
        """Engine failures as the library's errors: a held lock, a full disk, a crash."""
        try:
            yield
        except LookalikeError:
            raise
        except BaseException as e:  # the bindings raise plain Exception, or a panic
            if isinstance(e, (KeyboardInterrupt, SystemExit, GeneratorExit)):
                raise
            if "WouldBlock" in str(e):
                raise locked(self.config.path, name) from e
            if disk.is_disk_full(e):
                raise disk.full(self._where, what, self.config.path) from e
            if _is_panic(e):
                raise self._damaged(name, f"crashed the engine ({e})") from e
            if "Service runtime error" in str(e):  # storage, not a request lookalike made
                raise self._damaged(name, f"could not be read ({e})") from e
            raise StoreUnavailable(self._where, what, str(e)) from e

    def _damaged(self, name: str, reason: str) -> StoreDamaged:
        return StoreDamaged(self.config.path, name, reason)

    def _ensure_free(self, needed: int, action: str, keep_open: str | None = None) -> None:
        """DiskFull unless `needed` bytes are free, and with `keep_open` (a collection about to
        grow) enough beyond them to open it again afterwards: the reserve, or on tmpfs what
        opening it takes, if more."""
        reserve = 0
        if keep_open:
            shard = os.path.join(self._dir(keep_open), "shard")
            reserve = max(self.config.min_free_mb * 2**20, disk.open_bytes(shard))
        disk.ensure_free(self.config.path, needed, reserve, location=self._where, action=action)

    def _load(self, name: str) -> qe.EdgeShard:
        with self._engine(name, f"open collection {name!r}"):
            return qe.EdgeShard.load(os.path.join(self._dir(name), "shard"))

    def _shard(self, name: str) -> qe.EdgeShard:
        if name not in self._shards:
            if not self.exists(name):
                raise self.not_found(name)
            self._locks.hold(name)
            try:
                self._shards[name] = self._open(name)
            except BaseException:
                self._locks.release(name)
                raise
            self._prefetch(name)
        return self._shards[name]

    def _open(self, name: str) -> qe.EdgeShard:
        """Load a collection checked against the record of the last completed ingest, on a
        disk with room for what opening writes (the engine would die mid-write)."""
        folder = self._dir(name)
        points, problem = integrity.verify(folder, os.path.join(folder, "shard"))
        if problem:
            raise self._damaged(name, problem)
        needed = disk.open_bytes(os.path.join(folder, "shard"))
        self._ensure_free(needed, f"open collection {name!r}")
        shard = self._load(name)
        if points is not None:
            with self._engine(name, f"count {name!r}"):
                counted = shard.count(qe.CountRequest(exact=True))
            if counted != points:
                shard.close()
                raise self._damaged(
                    name, f"holds {counted} points; the last completed ingest left {points}"
                )
        return shard

    def _for_writing(self, name: str) -> qe.EdgeShard:
        """The shard, about to change: its check record no longer holds."""
        shard = self._shard(name)
        if name not in self._writing:
            integrity.clear(self._dir(name))
            self._writing.add(name)
        return shard

    def _prefetch(self, name: str) -> None:
        disk.read_ahead(os.path.join(self._dir(name), "shard"), self._index(name).on_disk)

    def _index(self, name: str) -> IndexSettings:
        return IndexSettings.from_dict(self._settings(name)["index"])

    def _settings(self, name: str) -> dict:
        try:
            with open(os.path.join(self._dir(name), META_FILE)) as f:
                settings = json.load(f)
            int(settings["dim"]), IndexSettings.from_dict(settings["index"])
            if settings.get("meta"):
                CollectionMeta.from_dict(settings["meta"])
        except RecursionError as e:
            raise self._damaged(name, f"has a {META_FILE} nested too deeply to read") from e
        except (ValueError, KeyError, TypeError) as e:
            raise self._damaged(
                name, f"has an unreadable {META_FILE} ({type(e).__name__}: {e})"
            ) from e
        return settings

    def close(self) -> None:
        shards, self._shards = self._shards, {}
        for name, shard in shards.items():
            try:
                shard.flush()
            except Exception as e:  # noqa: BLE001 - a full disk, said already: close anyway
                # What is not flushed is in the engine's write-ahead log, replayed on open.
                warnings.warn(f"could not flush collection {name!r} on closing: {e}", stacklevel=2)
            shard.close()
            self._locks.release(name)

    def names(self) -> list[str]:
        if not os.path.isdir(self.root):
            return []
        return [n for n in os.listdir(self.root) if NAME.match(n) and self.exists(n)]

    def exists(self, name: str) -> bool:
        return os.path.isfile(os.path.join(self._dir(name), META_FILE))

    def info(self, name: str) -> CollectionInfo:
        shard = self._shard(name)
        settings = self._settings(name)
        meta = settings.get("meta")
        with self._engine(name, f"describe collection {name!r}"):
            points = shard.count(qe.CountRequest(exact=True))
            indexed = shard.info().indexed_vectors_count
        return CollectionInfo(
            name=name,
            points=points,
            indexed_points=indexed,
            full_scan_points=FULL_SCAN_KB * 1024 // (4 * int(settings["dim"])),
            dim=int(settings["dim"]),
            distance="Cosine",
            meta=CollectionMeta.from_dict(meta) if meta else None,
            engine=self.engine,
            index=self._index(name),
            fields=self.indexed_fields(name),
        )

    def _creating(self, name: str):
        return self._locks.creating(check_name(name))

    def _create(self, name: str, meta: CollectionMeta, index: IndexSettings) -> None:
        folder = self._dir(name)
        self._ensure_free(disk.OPEN_BYTES, f"create collection {name!r}", keep_open=name)
        self._locks.hold(name)
        if os.path.isdir(folder):  # a create that died before its settings file: start over
            shutil.rmtree(folder)
        shard = None
        try:
            with self._engine(name, f"create collection {name!r}"):
                shard = qe.EdgeShard.create(
                    os.path.join(folder, "shard"), _edge_config(meta.dim, index)
                )
                shard.update(
                    qe.UpdateOperation.create_field_index("label", qe.PayloadSchemaType.Integer)
                )
            # Now its files exist: room to open it again? (On tmpfs, its holes take memory.)
            self._ensure_free(0, f"create collection {name!r}", keep_open=name)
        except BaseException:
            if shard is not None:
                shard.close()
                shutil.rmtree(folder, ignore_errors=True)
            self._locks.release(name)
            raise
        self._shards[name] = shard
        self._writing.add(name)
        # Written last: a collection exists once its settings file does.
        self._write_settings(
            name, {"dim": meta.dim, "meta": meta.to_dict(), "index": index.to_dict()}
        )

    def _write_settings(self, name: str, settings: dict) -> None:
        """Atomically: a reader sees the old settings or the new ones, never half."""
        path = os.path.join(self._dir(name), META_FILE)
        with open(path + ".tmp", "w") as f:
            json.dump(settings, f, indent=2)
        os.replace(path + ".tmp", path)

    def _set_meta(self, name: str, meta: CollectionMeta) -> None:
        self._write_settings(name, {**self._settings(name), "meta": meta.to_dict()})

    def _delete(self, name: str) -> None:
        self._locks.hold(name)  # no other process has it open
        shard = self._shards.pop(name, None)
        if shard is not None:
            shard.close()
        self._writing.discard(name)
        shutil.rmtree(self._dir(name))
        self._locks.release(name)

    def upsert(self, name: str, records: Sequence[ImageRecord], vectors: np.ndarray) -> None:
        shard, step = self._for_writing(name), self.config.upsert_batch
        for start in range(0, len(records), step):
            points = [
                qe.Point(r.id, v.tolist(), r.payload())
                for r, v in zip(records[start : start + step], vectors[start : start + step])
            ]
            what = f"store {len(points)} points"
            self._ensure_free(disk.points_bytes(len(points), vectors.shape[-1]), what, name)
            with self._engine(name, what):
                shard.update(qe.UpdateOperation.upsert_points(points))

    def unfinished(self, name: str) -> bool:
        folder = self._dir(name)
        return os.path.isdir(folder) and not os.path.exists(
            os.path.join(folder, integrity.CHECK_FILE)
        )

    def finish(self, name: str) -> None:
        """Build the HNSW graph (and quantized vectors) over what ingest wrote; until then a
        search scans every vector, which is exact but slower at scale."""
        shard = self._shard(name)
        folder = self._dir(name)
        shard_dir = os.path.join(folder, "shard")
        # The optimizer writes the new segments before it removes the old ones.
        self._ensure_free(disk.allocated_bytes(shard_dir), "build the search index", name)
        with self._engine(name, "build the search index"):
            shard.optimize()
            shard.flush()
            points = shard.count(qe.CountRequest(exact=True))
        integrity.record(folder, shard_dir, points)
        self._writing.discard(name)

    def existing_ids(self, name: str, ids: Sequence[str]) -> set[str]:
        if not ids:
            return set()
        shard = self._shard(name)
        with self._engine(name, "look up stored points"):
            found = shard.retrieve(list(ids), with_payload=False, with_vector=False)
        return {str(p.id) for p in found}

    def tracked_page(
        self, name: str, split: str, limit: int, offset: str | None = None
    ) -> tuple[list[Tracked], str | None]:
        shard = self._shard(name)
        only = qe.Filter(must=[qe.FieldCondition(key="split", match=qe.MatchValue(split))])
        request = qe.ScrollRequest(offset=offset, limit=limit, filter=only, with_payload=True)
        with self._engine(name, "list stored points"):
            records, nxt = shard.scroll(request)
        found = [Tracked(str(p.id), dict(p.payload or {})) for p in records]
        return found, None if nxt is None else str(nxt)

    def vectors(self, name: str, ids: Sequence[str]) -> dict[str, np.ndarray]:
        if not ids:
            return {}
        shard = self._shard(name)
        with self._engine(name, "read stored vectors"):
            found = shard.retrieve(list(ids), with_payload=False, with_vector=True)
        return {str(p.id): np.asarray(p.vector, np.float32) for p in found}

    def delete(self, name: str, ids: Sequence[str]) -> None:
        if not ids:
            return
        shard = self._for_writing(name)
        with self._engine(name, f"remove {len(ids)} points"):
            shard.update(qe.UpdateOperation.delete_points(list(ids)))

    def points(self, name: str, ids: Sequence[str]) -> dict[str, StoredPoint]:
        shard = self._shard(name)
        with self._engine(name, "fetch points"):
            try:
                found = shard.retrieve(list(ids), with_payload=True, with_vector=False)
            except ValueError:  # an id that is not a uuid cannot be stored here
                return {}
        return {str(p.id): StoredPoint.from_payload(p.id, p.payload) for p in found}

    def scroll(
        self,
        name: str,
        limit: int,
        offset: str | None = None,
        with_vectors: bool = False,
        where: dict | None = None,
    ) -> tuple[list[StoredPoint], np.ndarray | None, str | None]:
        request = qe.ScrollRequest(
            offset=offset,
            limit=limit,
            filter=edge_filter(where),
            with_payload=True,
            with_vector=with_vectors,
        )
        shard = self._shard(name)
        with self._engine(name, "read points"):
            records, nxt = shard.scroll(request)
        points = [StoredPoint.from_payload(p.id, p.payload) for p in records]
        vectors = np.asarray([p.vector for p in records], np.float32) if with_vectors else None
        return points, vectors, None if nxt is None else str(nxt)

    def read_points(
        self, name: str, limit: int, offset: str | None = None
    ) -> tuple[list[Tracked], np.ndarray, str | None]:
        request = qe.ScrollRequest(offset=offset, limit=limit, with_payload=True, with_vector=True)
        shard = self._shard(name)
        with self._engine(name, "read points"):
            records, nxt = shard.scroll(request)
        points = [Tracked(str(p.id), dict(p.payload or {})) for p in records]
        return points, _matrix([p.vector for p in records]), None if nxt is None else str(nxt)

    def query(
        self,
        name: str,
        vectors: np.ndarray,
        k: int,
        label: int | None = None,
        params: SearchSettings | None = None,
        options: QueryOptions | None = None,
    ) -> list[list[Hit]]:
        if len(vectors) == 0:
            return []
        options = (options or QueryOptions()).with_label(label)
        queries = [qe.Query.Nearest(v.tolist()) for v in np.asarray(vectors, np.float32)]
        if options.group_by:
            return [self._groups(name, q, k, params, options) for q in queries]
        requests = [request(q, k, params, options) for q in queries]
        shard = self._shard(name)
        with self._engine(name, "search"):
            results = shard.query_batch(qe.QueryBatchRequest(requests))
        return [hits(found) for found in results]

    def recommend(
        self,
        name: str,
        examples: Examples,
        k: int,
        params: SearchSettings | None = None,
        options: QueryOptions | None = None,
    ) -> list[Hit]:
        """Edge takes examples as vectors: stored ids are read first (and then excluded)."""
        stored = self.vectors(name, list(examples.ids))
        missing = [i for i in examples.ids if i not in stored]
        if missing:
            raise BadQuery(f"no point with id {missing[0]!r} in {name!r}", field="like")
        query = recommend_query(examples, stored)
        options = options or QueryOptions()
        check_min_score(examples, options.min_score)
        options = replace(
            options,
            exclude=(*options.exclude, *examples.ids),
            min_score=engine_min_score(examples, options.min_score),
        )
        if options.group_by:
            found = self._groups(name, query, k, params, options)
        else:
            with self._engine(name, "recommend"):
                found = hits(self._shard(name).query(request(query, k, params, options)))
        return [replace(h, score=cosine_score(examples, h.score)) for h in found]

    def _groups(self, name: str, query, k: int, params, options: QueryOptions) -> list[Hit]:
        shard = self._shard(name)

        def search(limit: int, step: QueryOptions, exact: bool) -> list:
            scan = replace(params or SearchSettings(), exact=True) if exact else params
            with self._engine(name, "search groups"):
                return shard.query(request(query, limit, scan, step))

        return hits(grouped(search, k, options))

    def indexed_fields(self, name: str) -> dict[str, str]:
        shard = self._shard(name)
        with self._engine(name, "describe collection"):
            schema = shard.info().payload_schema
        return {f: FIELD_TYPES.get(i.data_type, MIXED) for f, i in schema.items()}

    def _index_field(self, name: str, field: str, kind: str) -> None:
        schema = {v: k for k, v in FIELD_TYPES.items()}[kind]
        shard = self._for_writing(name)
        with self._engine(name, f"index the field {field!r}"):
            shard.update(qe.UpdateOperation.create_field_index(field, schema))


def _matrix(vectors: list) -> np.ndarray:
    return np.asarray(vectors, np.float32) if vectors else np.zeros((0, 0), np.float32)
