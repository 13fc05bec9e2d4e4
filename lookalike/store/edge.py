"""The embedded `edge` engine: Qdrant's own engine in-process (qdrant-edge-py).

The only module that imports qdrant_edge. Each collection is one edge shard in
`<path>/edge/<collection>/shard`, next to `lookalike.json` holding what the collection was
built with (edge shards have no collection metadata of their own). Shards open on first use
and stay open until the store closes; an open shard is locked against other processes.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Sequence

import numpy as np
import qdrant_edge as qe

from lookalike.errors import StoreUnavailable
from lookalike.index import IndexSettings, SearchSettings
from lookalike.records import CollectionInfo, CollectionMeta, Hit, ImageRecord, StoredPoint
from lookalike.store.base import Store, hit
from lookalike.store.config import StoreConfig, check_name
from lookalike.store.holders import locked

META_FILE = "lookalike.json"
# Segments under this size (KB) are scanned, not graph-searched: exact and fast when small.
FULL_SCAN_KB = 10_000


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


def _search_params(params: SearchSettings | None) -> qe.SearchParams | None:
    if params is None or params.is_default:
        return None
    quantization = None
    if params.oversampling is not None or not params.rescore:
        quantization = qe.QuantizationSearchParams(
            rescore=params.rescore, oversampling=params.oversampling
        )
    return qe.SearchParams(hnsw_ef=params.hnsw_ef, exact=params.exact, quantization=quantization)


class EdgeStore(Store):
    """Collections as edge shards under one folder."""

    engine = "edge"

    def __init__(self, config: StoreConfig) -> None:
        self.config = config
        self.root = os.path.join(config.path, "edge")
        self._shards: dict[str, qe.EdgeShard] = {}

    def _dir(self, name: str) -> str:
        return os.path.join(self.root, check_name(name))

    def _fail(self, what: str, error: Exception) -> StoreUnavailable:
        return StoreUnavailable(f"the edge store {self.config.path}", what, str(error))

    def _shard(self, name: str) -> qe.EdgeShard:
        if name not in self._shards:
            if not self.exists(name):
                raise self.not_found(name)
            try:
                self._shards[name] = qe.EdgeShard.load(os.path.join(self._dir(name), "shard"))
            except Exception as e:  # the bindings raise plain Exception
                if "WouldBlock" in str(e):
                    raise locked(self.config.path, name) from e
                raise self._fail(f"open collection {name!r}", e) from e
            self._prefetch(name)
        return self._shards[name]

    def _prefetch(self, name: str) -> None:
        """Ask the kernel to read the collection's graph and vectors ahead, in the background.
        The engine memory-maps them, and the first searches would otherwise fault them in a
        page at a time: ~55 MB/s of random 4 KB reads on our CI disk against ~500 MB/s read
        in order. On-disk originals are left on disk, as asked."""
        if not hasattr(os, "posix_fadvise"):  # not Linux: the page faults it is
            return
        on_disk = self._index(name).on_disk
        for folder, _, files in os.walk(os.path.join(self._dir(name), "shard", "segments")):
            originals = on_disk and "vector_storage" in folder.split(os.sep)
            for file in files:
                if originals and "quantized" not in file:
                    continue
                try:
                    fd = os.open(os.path.join(folder, file), os.O_RDONLY)
                except OSError:
                    continue
                try:
                    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_WILLNEED)
                finally:
                    os.close(fd)

    def _index(self, name: str) -> IndexSettings:
        return IndexSettings.from_dict(self._settings(name)["index"])

    def _settings(self, name: str) -> dict:
        with open(os.path.join(self._dir(name), META_FILE)) as f:
            return json.load(f)

    def close(self) -> None:
        shards, self._shards = self._shards, {}
        for shard in shards.values():
            shard.flush()
            shard.close()

    def names(self) -> list[str]:
        if not os.path.isdir(self.root):
            return []
        return [n for n in os.listdir(self.root) if self.exists(n)]

    def exists(self, name: str) -> bool:
        return os.path.isfile(os.path.join(self._dir(name), META_FILE))

    def info(self, name: str) -> CollectionInfo:
        shard = self._shard(name)
        settings = self._settings(name)
        meta = settings.get("meta")
        return CollectionInfo(
            name=name,
            points=shard.count(qe.CountRequest(exact=True)),
            indexed_points=shard.info().indexed_vectors_count,
            full_scan_points=FULL_SCAN_KB * 1024 // (4 * int(settings["dim"])),
            dim=int(settings["dim"]),
            distance="Cosine",
            meta=CollectionMeta.from_dict(meta) if meta else None,
            engine=self.engine,
            index=self._index(name),
        )

    def _create(self, name: str, meta: CollectionMeta, index: IndexSettings) -> None:
        folder = self._dir(name)
        if os.path.isdir(folder):  # a create that died before its settings file: start over
            shutil.rmtree(folder)
        try:
            shard = qe.EdgeShard.create(
                os.path.join(folder, "shard"), _edge_config(meta.dim, index)
            )
            shard.update(
                qe.UpdateOperation.create_field_index("label", qe.PayloadSchemaType.Integer)
            )
        except Exception as e:
            raise self._fail(f"create collection {name!r}", e) from e
        self._shards[name] = shard
        settings = {"dim": meta.dim, "meta": meta.to_dict(), "index": index.to_dict()}
        # Written last and atomically: a collection exists once its settings file does.
        with open(os.path.join(folder, META_FILE + ".tmp"), "w") as f:
            json.dump(settings, f, indent=2)
        os.replace(os.path.join(folder, META_FILE + ".tmp"), os.path.join(folder, META_FILE))

    def _delete(self, name: str) -> None:
        shard = self._shards.pop(name, None) or self._shard(name)  # locks it against others
        self._shards.pop(name, None)
        shard.close()
        shutil.rmtree(self._dir(name))

    def upsert(self, name: str, records: Sequence[ImageRecord], vectors: np.ndarray) -> None:
        shard, step = self._shard(name), self.config.upsert_batch
        for start in range(0, len(records), step):
            points = [
                qe.Point(r.id, v.tolist(), r.payload())
                for r, v in zip(records[start : start + step], vectors[start : start + step])
            ]
            try:
                shard.update(qe.UpdateOperation.upsert_points(points))
            except Exception as e:
                raise self._fail(f"store {len(points)} points", e) from e

    def finish(self, name: str) -> None:
        """Build the HNSW graph (and quantized vectors) over what ingest wrote; until then a
        search scans every vector, which is exact but slower at scale."""
        shard = self._shard(name)
        shard.optimize()
        shard.flush()

    def existing_ids(self, name: str, ids: Sequence[str]) -> set[str]:
        if not ids:
            return set()
        found = self._shard(name).retrieve(list(ids), with_payload=False, with_vector=False)
        return {str(p.id) for p in found}

    def similar_pairs(
        self, name: str, sample: int, neighbours: int
    ) -> list[tuple[str, str, float]]:
        # No distance-matrix API in edge: query each sampled point's own vector instead.
        points, vectors, _ = self.scroll(name, sample, with_vectors=True)
        results = self.query(name, vectors, neighbours + 1) if points else []
        return [
            (p.id, n.id, n.score)
            for p, found in zip(points, results)
            for n in [n for n in found if n.id != p.id][:neighbours]
        ]

    def points(self, name: str, ids: Sequence[str]) -> dict[str, StoredPoint]:
        try:
            found = self._shard(name).retrieve(list(ids), with_payload=True, with_vector=False)
        except ValueError:  # an id that is not a uuid cannot be stored here
            return {}
        return {str(p.id): StoredPoint.from_payload(p.id, p.payload) for p in found}

    def scroll(
        self, name: str, limit: int, offset: str | None = None, with_vectors: bool = False
    ) -> tuple[list[StoredPoint], np.ndarray | None, str | None]:
        request = qe.ScrollRequest(
            offset=offset, limit=limit, with_payload=True, with_vector=with_vectors
        )
        records, nxt = self._shard(name).scroll(request)
        points = [StoredPoint.from_payload(p.id, p.payload) for p in records]
        vectors = np.asarray([p.vector for p in records], np.float32) if with_vectors else None
        return points, vectors, None if nxt is None else str(nxt)

    def query(
        self,
        name: str,
        vectors: np.ndarray,
        k: int,
        label: int | None = None,
        params: SearchSettings | None = None,
    ) -> list[list[Hit]]:
        if len(vectors) == 0:
            return []
        flt = None
        if label is not None:
            flt = qe.Filter(must=[qe.FieldCondition(key="label", match=qe.MatchValue(label))])
        search = _search_params(params)
        requests = [
            qe.QueryRequest(
                limit=k,
                query=qe.Query.Nearest(v.tolist()),
                filter=flt,
                params=search,
                with_payload=True,
            )
            for v in np.asarray(vectors, np.float32)
        ]
        shard = self._shard(name)
        results = shard.query_batch(qe.QueryBatchRequest(requests))
        return [
            [hit(rank, p.id, p.score, p.payload) for rank, p in enumerate(found, 1)]
            for found in results
        ]
