"""The qdrant-client engine: a Qdrant server or cluster, or qdrant-client's local mode.

The only module that imports qdrant_client. Retries, timeouts, the API key, request sizes and
parallel uploads are handled here.
"""

from __future__ import annotations

import contextlib
import json
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import TypeVar

import httpx
import numpy as np
import pydantic
from qdrant_client import QdrantClient, models
from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

from lookalike.errors import BadQuery, StoreDamaged, StoreUnavailable
from lookalike.index import IndexSettings, SearchSettings
from lookalike.query import (
    Examples,
    QueryOptions,
    and_filters,
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
from lookalike.store import bulk, disk
from lookalike.store.base import Store, hit
from lookalike.store.config import StoreConfig
from lookalike.store.holders import locked

# Worth another try: the server is restarting, overloaded or briefly unreachable.
TRANSIENT_STATUS = {408, 429, 500, 502, 503, 504}
T = TypeVar("T")


def _transient(error: Exception) -> bool:
    if isinstance(error, UnexpectedResponse):
        return error.status_code in TRANSIENT_STATUS
    return isinstance(error, (ResponseHandlingException, httpx.TransportError, ConnectionError))


def _describe(error: Exception) -> str:
    if isinstance(error, (json.JSONDecodeError, pydantic.ValidationError)):
        return "its answer is not Qdrant's (is it a Qdrant server, at its REST port?)"
    if isinstance(error, UnexpectedResponse):
        if error.status_code in (401, 403):
            return f"HTTP {error.status_code}: the server refused the API key"
        return f"HTTP {error.status_code} {error.reason_phrase}".strip()
    cause = error.__cause__ or error.__context__ or error
    return f"{type(cause).__name__}: {cause}".rstrip(": ")


def _quantization(index: IndexSettings) -> models.QuantizationConfig | None:
    if index.quantization == "int8":
        # quantile 0.99 clips the rare extreme components that would waste the int8 range.
        config = models.ScalarQuantizationConfig(
            type=models.ScalarType.INT8, quantile=0.99, always_ram=True
        )
        return models.ScalarQuantization(scalar=config)
    if index.quantization == "binary":
        return models.BinaryQuantization(binary=models.BinaryQuantizationConfig(always_ram=True))
    return None


def _index_settings(config: models.CollectionConfig) -> IndexSettings:
    q = config.quantization_config
    kind = "int8" if isinstance(q, models.ScalarQuantization) else "none"
    kind = "binary" if isinstance(q, models.BinaryQuantization) else kind
    return IndexSettings(
        hnsw_m=config.hnsw_config.m,
        hnsw_ef_construct=config.hnsw_config.ef_construct,
        on_disk=bool(config.params.vectors.on_disk),
        quantization=kind,
        shards=config.params.shard_number or 1,
        replicas=config.params.replication_factor or 1,
        write_consistency=config.params.write_consistency_factor or 1,
    )


def search_params(params: SearchSettings | None) -> models.SearchParams | None:
    if params is None or params.is_default:
        return None  # the server's own defaults
    quantization = None
    if params.oversampling is not None or not params.rescore:
        quantization = models.QuantizationSearchParams(
            rescore=params.rescore, oversampling=params.oversampling
        )
    return models.SearchParams(
        hnsw_ef=params.hnsw_ef, exact=params.exact, quantization=quantization
    )


class QdrantStore(Store):
    """A Qdrant server (or cluster) through qdrant-client, or its embedded local mode."""

    def __init__(self, client: QdrantClient, config: StoreConfig) -> None:
        self.client = client
        self.config = config
        self.engine = "server" if config.url else "local"

    @classmethod
    def open(cls, config: StoreConfig) -> QdrantStore:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # the client's own warnings repeat ours or mislead
                if config.url:
                    client = QdrantClient(
                        url=config.url,
                        api_key=config.api_key,
                        timeout=config.timeout,
                        check_compatibility=config.check_compatibility,
                    )
                else:
                    # Ingest writes from one writer thread while the main thread embeds; the
                    # accesses never overlap, so sqlite's same-thread check can go.
                    client = QdrantClient(path=config.path, force_disable_check_same_thread=True)
        except RecursionError as e:  # a RuntimeError too: JSON nested thousands deep
            raise StoreDamaged(
                config.path, None, "cannot be opened (a file of it nests JSON too deeply to read)"
            ) from e
        except RuntimeError as e:
            if "already accessed" in str(e):
                raise locked(config.path) from e
            raise
        except Exception as e:  # local mode unpickles its files: any failure means damage
            if config.url:
                raise
            raise StoreDamaged(config.path, None, f"cannot be opened ({e})") from e
        return cls(client, config)

    def close(self) -> None:
        self.client.close()

    def _call(self, what: str, fn: Callable[..., T], *args, **kwargs) -> T:
        """Call the client; retry transient server errors with exponential backoff, then fail
        with one StoreUnavailable that says what was being done and why it failed."""
        attempts = 1 + (self.config.retries if self.config.url else 0)
        for attempt in range(1, attempts + 1):
            try:
                return fn(*args, **kwargs)
            except (
                ResponseHandlingException,
                UnexpectedResponse,
                httpx.HTTPError,
                OSError,
                json.JSONDecodeError,
                pydantic.ValidationError,
            ) as e:
                if attempt == attempts or not _transient(e):
                    status = e.status_code if isinstance(e, UnexpectedResponse) else None
                    reason = _describe(e)
                    for secret in self.config.secrets:  # a client's message may quote the URL
                        reason = reason.replace(secret, "***")
                    raise StoreUnavailable(
                        f"Qdrant at {self.config.location}",
                        what,
                        reason,
                        attempts=attempt,
                        status=status,
                    ) from e
                time.sleep(self.config.backoff * 2 ** (attempt - 1))
        raise AssertionError("unreachable")

    def names(self) -> list[str]:
        found = self._call("list collections", self.client.get_collections).collections
        return [c.name for c in found]

    def exists(self, name: str) -> bool:
        return self._call("check collection " + repr(name), self.client.collection_exists, name)

    def info(self, name: str) -> CollectionInfo:
        if not self.exists(name):
            raise self.not_found(name)
        desc = self._call(f"describe collection {name!r}", self.client.get_collection, name)
        points = self._call(f"count {name!r}", self.client.count, name, exact=True).count
        params = desc.config.params.vectors
        meta = desc.config.metadata
        return CollectionInfo(
            name=name,
            points=points,
            dim=params.size,
            distance=str(params.distance.value),
            meta=CollectionMeta.from_dict(meta) if meta and "model" in meta else None,
            engine=self.engine,
            index=_index_settings(desc.config),
            indexed_points=desc.indexed_vectors_count if self.config.url else None,
            full_scan_points=_full_scan_points(desc.config) if self.config.url else None,
            fields=_schema(desc) if self.config.url else {},
        )

    def _create(self, name: str, meta: CollectionMeta, index: IndexSettings) -> None:
        vectors = models.VectorParams(
            size=meta.dim, distance=models.Distance.COSINE, on_disk=index.on_disk
        )
        self._call(
            f"create collection {name!r}",
            self.client.create_collection,
            name,
            vectors_config=vectors,
            hnsw_config=models.HnswConfigDiff(m=index.hnsw_m, ef_construct=index.hnsw_ef_construct),
            quantization_config=_quantization(index),
            shard_number=index.shards,
            replication_factor=index.replicas,
            write_consistency_factor=index.write_consistency,
            metadata=meta.to_dict(),
        )
        if self.config.url:  # local mode has no payload indexes (and says so in a warning)
            self._call(
                "index the label field",
                self.client.create_payload_index,
                name,
                field_name="label",
                field_schema=models.PayloadSchemaType.INTEGER,
                wait=True,
            )

    def _set_meta(self, name: str, meta: CollectionMeta) -> None:
        self._call(
            f"update collection {name!r}",
            self.client.update_collection,
            name,
            metadata=meta.to_dict(),
        )

    def _delete(self, name: str) -> None:
        self._call(f"delete collection {name!r}", self.client.delete_collection, name)

    def upsert(self, name: str, records: Sequence[ImageRecord], vectors: np.ndarray) -> None:
        """Batches sized under the server's request limit, several in flight on a server; each
        waits (wait=True) until the server has applied it, so a search right after sees it."""
        dim = vectors.shape[1] if vectors.ndim == 2 else 1
        if not self.config.url:  # local mode: a full disk would fail inside sqlite
            reserve = self.config.min_free_mb * 2**20
            disk.ensure_free(
                self.config.path,
                disk.points_bytes(len(records), dim),
                reserve,
                location=f"the local store {self.config.path}",
                action=f"store {len(records)} points",
            )
        step = self.config.points_per_request(dim)
        chunks = [
            models.Batch(
                ids=[r.id for r in records[i : i + step]],
                vectors=vectors[i : i + step].tolist(),
                payloads=[r.payload() for r in records[i : i + step]],
            )
            for i in range(0, len(records), step)
        ]

        def send(batch: models.Batch) -> None:
            what = f"store {len(batch.ids)} points"
            self._call(what, self.client.upsert, name, batch, wait=True)

        parallel = min(self.config.upload_parallel, len(chunks)) if self.config.url else 1
        if parallel <= 1:
            for batch in chunks:
                send(batch)
            return
        with ThreadPoolExecutor(parallel, thread_name_prefix="lookalike-upload") as pool:
            list(pool.map(send, chunks))  # list() re-raises the first failure

    def read_points(
        self, name: str, limit: int, offset: str | None = None
    ) -> tuple[list[Tracked], np.ndarray, str | None]:
        records, nxt = self._call(
            "read points",
            self.client.scroll,
            name,
            limit=limit,
            offset=offset,
            with_payload=True,
            with_vectors=True,
        )
        points = [Tracked(str(p.id), dict(p.payload or {})) for p in records]
        vectors = [p.vector for p in records]
        matrix = np.asarray(vectors, np.float32) if vectors else np.zeros((0, 0), np.float32)
        return points, matrix, None if nxt is None else str(nxt)

    def bulk_load(self, name: str) -> contextlib.AbstractContextManager:
        if not self.config.url:
            return contextlib.nullcontext()  # local mode scans: there is no index to defer
        return bulk.deferred_index(self, name)

    def indexing_threshold(self, name: str) -> int | None:
        """The collection's optimizer indexing threshold (KB of vectors per segment before a
        graph is built); None: the server's default."""
        desc = self._call(f"describe {name!r}", self.client.get_collection, name)
        return getattr(desc.config.optimizer_config, "indexing_threshold", None)

    def set_indexing_threshold(self, name: str, threshold: int | None) -> None:
        """0 stops graph building; None or a size restores it."""
        optimizers = models.OptimizersConfigDiff(indexing_threshold=threshold)
        what = f"{'defer' if threshold == 0 else 'restore'} the index of {name!r}"
        self._call(what, self.client.update_collection, name, optimizers_config=optimizers)

    def status(self, name: str) -> str:
        """green (ready), yellow (optimizing), grey (optimizations pending) or red."""
        desc = self._call(f"describe {name!r}", self.client.get_collection, name)
        return str(getattr(desc.status, "value", desc.status))

    def existing_ids(self, name: str, ids: Sequence[str]) -> set[str]:
        if not ids:
            return set()
        found = self._call(
            "look up stored points",
            self.client.retrieve,
            name,
            ids=list(ids),
            with_payload=False,
            with_vectors=False,
        )
        return {str(p.id) for p in found}

    def tracked_page(
        self, name: str, split: str, limit: int, offset: str | None = None
    ) -> tuple[list[Tracked], str | None]:
        only = models.Filter(
            must=[models.FieldCondition(key="split", match=models.MatchValue(value=split))]
        )
        records, nxt = self._call(
            "read points",
            self.client.scroll,
            name,
            scroll_filter=only,
            limit=limit,
            offset=offset,
            with_payload=True,
            with_vectors=False,
        )
        found = [Tracked(str(p.id), dict(p.payload or {})) for p in records]
        return found, None if nxt is None else str(nxt)

    def vectors(self, name: str, ids: Sequence[str]) -> dict[str, np.ndarray]:
        if not ids:
            return {}
        found = self._call(
            "read vectors", self.client.retrieve, name, ids=list(ids), with_vectors=True
        )
        return {str(p.id): np.asarray(p.vector, np.float32) for p in found}

    def delete(self, name: str, ids: Sequence[str]) -> None:
        if not ids:
            return
        selector = models.PointIdsList(points=list(ids))
        self._call(f"remove {len(ids)} points", self.client.delete, name, selector, wait=True)

    def similar_pairs(self, name: str, neighbours: int) -> Iterator[tuple[str, str, float]]:
        if not self.config.url:  # local mode's matrix filters every query by every id
            yield from super().similar_pairs(name, neighbours)
            return
        points = self.info(name).points  # a server computes the matrix on its side
        if not points:
            return
        response = self._call(
            "compute similar pairs",
            self.client.search_matrix_pairs,
            name,
            sample=points,
            limit=neighbours,
        )
        yield from ((str(p.a), str(p.b), float(p.score)) for p in response.pairs)

    def points(self, name: str, ids: Sequence[str]) -> dict[str, StoredPoint]:
        found = self._call("fetch points", self.client.retrieve, name, ids=list(ids))
        return {str(p.id): StoredPoint.from_payload(p.id, p.payload) for p in found}

    def scroll(
        self,
        name: str,
        limit: int,
        offset: str | None = None,
        with_vectors: bool = False,
        where: dict | None = None,
    ) -> tuple[list[StoredPoint], np.ndarray | None, str | None]:
        records, nxt = self._ask(
            "read points",
            self.client.scroll,
            name,
            scroll_filter=qdrant_filter(where),
            limit=limit,
            offset=offset,
            with_payload=True,
            with_vectors=with_vectors,
        )
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
        options: QueryOptions | None = None,
    ) -> list[list[Hit]]:
        if len(vectors) == 0:
            return []
        options = (options or QueryOptions()).with_label(label)
        if options.group_by:
            return [self._groups(name, v.tolist(), k, params, options) for v in vectors]
        flt = self._filter(options)
        requests = [
            models.QueryRequest(
                query=v.tolist(),
                limit=k,
                filter=flt,
                score_threshold=options.min_score,
                params=search_params(params),
                with_payload=True,
            )
            for v in vectors
        ]
        responses = self._ask("search", self.client.query_batch_points, name, requests=requests)
        return [_hits(r.points) for r in responses]

    def recommend(
        self,
        name: str,
        examples: Examples,
        k: int,
        params: SearchSettings | None = None,
        options: QueryOptions | None = None,
    ) -> list[Hit]:
        """Stored examples go by id: the server reads their vectors and leaves them out."""
        missing = set(examples.ids) - self.existing_ids(name, list(set(examples.ids)))
        if missing:
            raise BadQuery(f"no point with id {sorted(missing)[0]!r} in {name!r}", field="like")
        options = options or QueryOptions()
        check_min_score(examples, options.min_score)
        options = replace(
            options,
            exclude=(*options.exclude, *examples.ids),
            min_score=engine_min_score(examples, options.min_score),
        )
        query = models.RecommendQuery(
            recommend=models.RecommendInput(
                positive=[_example(e) for e in examples.positive],
                negative=[_example(e) for e in examples.negative],
                strategy=models.RecommendStrategy(examples.strategy),
            )
        )
        if options.group_by:
            found = self._groups(name, query, k, params, options)
        else:
            response = self._ask(
                "recommend",
                self.client.query_points,
                name,
                query=query,
                limit=k,
                query_filter=self._filter(options),
                score_threshold=options.min_score,
                search_params=search_params(params),
                with_payload=True,
            )
            found = _hits(response.points)
        return [replace(h, score=cosine_score(examples, h.score)) for h in found]

    def _groups(self, name: str, query, k: int, params, options: QueryOptions) -> list[Hit]:
        """Qdrant's grouping query, one hit per group; a point in several groups (a list
        field) is shown once, at its best group."""
        response = self._ask(
            "search groups",
            self.client.query_points_groups,
            name,
            group_by=options.grouped_by_key(),
            query=query,
            limit=k,
            group_size=1,
            query_filter=self._filter(options),
            score_threshold=options.min_score,
            search_params=search_params(params),
            with_payload=True,
        )
        seen, best = set(), []
        for group in response.groups:
            for p in group.hits[:1]:
                if p.id not in seen:
                    seen.add(p.id)
                    best.append(p)
        return _hits(best)

    def _ask(self, what: str, fn: Callable[..., T], *args, **kwargs) -> T:
        """A query: one that Qdrant refuses as malformed (a server's HTTP 400, local mode's
        ValueError, such as a field path it cannot parse) is the query's fault, not the
        store's."""
        try:
            return self._call(what, fn, *args, **kwargs)
        except ValueError as e:
            raise BadQuery(f"filter: {e}", field="filter") from e
        except StoreUnavailable as e:
            if e.status in (400, 422):
                raise BadQuery(f"Qdrant refused the query: {e.reason}", field="filter") from e
            raise

    def _filter(self, options: QueryOptions) -> models.Filter | None:
        exclude = {"must_not": [{"has_id": list(options.exclude)}]} if options.exclude else None
        return qdrant_filter(and_filters(options.filter, exclude))

    def indexed_fields(self, name: str) -> dict[str, str]:
        if not self.config.url:
            return {}  # local mode keeps no payload indexes
        return _schema(self._call(f"describe {name!r}", self.client.get_collection, name))

    def _index_field(self, name: str, field: str, kind: str) -> None:
        if not self.config.url:
            return
        self._call(
            f"index the field {field!r}",
            self.client.create_payload_index,
            name,
            field_name=field,
            field_schema=models.PayloadSchemaType(kind),
            wait=True,
        )


def _full_scan_points(config) -> int | None:
    """Points per segment below which the server scans instead of building a graph."""
    kb = getattr(config.hnsw_config, "full_scan_threshold", None)
    size = config.params.vectors.size
    return kb * 1024 // (4 * size) if kb and size else None


def _schema(desc: models.CollectionInfo) -> dict[str, str]:
    """The collection's payload indexes: field -> type."""
    schema = desc.payload_schema or {}
    return {f: str(getattr(i.data_type, "value", i.data_type)) for f, i in schema.items()}


def qdrant_filter(f: dict | None) -> models.Filter | None:
    """Qdrant's JSON filter as the client's model; BadQuery for one Qdrant would refuse."""
    if not f:
        return None
    try:
        return models.Filter.model_validate(f)
    except pydantic.ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise BadQuery(f"filter: {first['msg']} at {where}", field="filter") from e


def _example(e) -> str | list[float]:
    """A stored point's id, or a vector as a cosine collection stores it (unit length), so that
    an average weighs each example alike on every engine."""
    if isinstance(e, str):
        return e
    v = np.asarray(e, np.float32)
    return (v / (np.linalg.norm(v) or 1.0)).tolist()


def _hits(points) -> list[Hit]:
    return [hit(rank, p.id, p.score, p.payload) for rank, p in enumerate(points, 1)]
