"""Qdrant storage: the only module that imports qdrant_client.

Server specifics (URL, API key, HTTPS, timeouts, wait=True, batching) live here and nowhere else.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
from qdrant_client import QdrantClient, models
from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

from lookalike.errors import (
    CollectionNotFound,
    LookalikeError,
    ModelMismatch,
    StoreLocked,
    StoreUnavailable,
)
from lookalike.records import CollectionInfo, CollectionMeta, Hit, ImageRecord

DEFAULT_PATH = "./lookalike-data"


@dataclass(frozen=True)
class StoreConfig:
    """Where Qdrant is: a server (`url`, optional `api_key`) or embedded local mode (`path`)."""

    url: str | None = None
    api_key: str | None = None
    path: str = DEFAULT_PATH
    timeout: int = 60
    upsert_batch: int = 256

    @property
    def location(self) -> str:
        return self.url if self.url else f"local:{self.path}"


def connect(config: StoreConfig | None = None) -> Store:
    """Open the store described by `config` (embedded local mode by default)."""
    config = config or StoreConfig()
    try:
        if config.url:
            client = QdrantClient(url=config.url, api_key=config.api_key, timeout=config.timeout)
        else:
            # Ingest upserts from one writer thread while the main thread embeds; accesses
            # never overlap, so sqlite's same-thread check (on by default on macOS) can go.
            client = QdrantClient(path=config.path, force_disable_check_same_thread=True)
    except RuntimeError as e:
        if "already accessed" in str(e):
            raise StoreLocked(
                f"the local store {config.path} is in use by another lookalike process: wait for "
                "it to finish, or run a Qdrant server and pass --qdrant-url"
            ) from e
        raise
    return Store(client, config)


class Store:
    """Collections of image vectors with label/split/row/path payloads."""

    def __init__(self, client: QdrantClient, config: StoreConfig) -> None:
        self.client = client
        self.config = config

    def close(self) -> None:
        self.client.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @contextlib.contextmanager
    def _errors(self) -> Iterator[None]:
        """Turn transport failures into one clear StoreUnavailable."""
        try:
            yield
        except LookalikeError:
            raise
        except (ResponseHandlingException, UnexpectedResponse, ConnectionError, OSError) as e:
            raise StoreUnavailable(f"Qdrant at {self.config.location} failed: {e}") from e

    def exists(self, name: str) -> bool:
        with self._errors():
            return self.client.collection_exists(name)

    def info(self, name: str) -> CollectionInfo:
        """Size, vector parameters and build metadata; CollectionNotFound if absent."""
        with self._errors():
            if not self.client.collection_exists(name):
                names = [c.name for c in self.client.get_collections().collections]
                known = ", ".join(sorted(names)) or "none"
                raise CollectionNotFound(
                    f"collection {name!r} does not exist at {self.config.location} "
                    f"(collections there: {known}); run `lookalike ingest --collection {name}`"
                )
            desc = self.client.get_collection(name)
            points = self.client.count(name, exact=True).count
        params = desc.config.params.vectors
        meta = desc.config.metadata
        return CollectionInfo(
            name=name,
            points=points,
            dim=params.size,
            distance=str(params.distance.value),
            meta=CollectionMeta.from_dict(meta) if meta and "model" in meta else None,
        )

    def prepare(self, name: str, meta: CollectionMeta, *, recreate: bool = False) -> None:
        """Create the collection for `meta`, or check an existing one was built the same way."""
        with self._errors():
            if recreate and self.client.collection_exists(name):
                self.client.delete_collection(name)
            if not self.client.collection_exists(name):
                self.client.create_collection(
                    name,
                    vectors_config=models.VectorParams(
                        size=meta.dim, distance=models.Distance.COSINE
                    ),
                    metadata=meta.to_dict(),
                )
                return
        check_compatible(self.info(name), meta, ingest=True)

    def upsert(self, name: str, records: Sequence[ImageRecord], vectors: np.ndarray) -> None:
        """Upsert in batches and wait for each, so a search right after sees every point."""
        step = self.config.upsert_batch
        with self._errors():
            for start in range(0, len(records), step):
                chunk = records[start : start + step]
                self.client.upsert(
                    name,
                    points=models.Batch(
                        ids=[r.id for r in chunk],
                        vectors=vectors[start : start + step].tolist(),
                        payloads=[r.payload() for r in chunk],
                    ),
                    wait=True,
                )

    def existing_ids(self, name: str, ids: Sequence[str]) -> set[str]:
        """Which of `ids` the collection already holds."""
        if not ids:
            return set()
        with self._errors():
            found = self.client.retrieve(
                name, ids=list(ids), with_payload=False, with_vectors=False
            )
        return {str(p.id) for p in found}

    def query(
        self, name: str, vectors: np.ndarray, k: int, label: int | None = None
    ) -> list[list[Hit]]:
        """Top-k neighbours for each row of `vectors`, optionally only those with `label`."""
        flt = None
        if label is not None:
            flt = models.Filter(
                must=[models.FieldCondition(key="label", match=models.MatchValue(value=label))]
            )
        requests = [
            models.QueryRequest(query=v.tolist(), limit=k, filter=flt, with_payload=True)
            for v in vectors
        ]
        with self._errors():
            responses = self.client.query_batch_points(name, requests=requests) if requests else []
        return [[_hit(rank, p) for rank, p in enumerate(r.points, 1)] for r in responses]


def check_compatible(info: CollectionInfo, meta: CollectionMeta, *, ingest: bool) -> None:
    """Refuse to mix vectors from different models, poolings, sizes or datasets."""
    have = info.meta
    fix = (
        "pass --recreate to rebuild it, or use another --collection"
        if ingest
        else ("search with the model it was built with (leave --model out), or re-ingest")
    )
    if have is None:
        raise ModelMismatch(f"collection {info.name!r} was not built by lookalike: {fix}")
    if info.dim != meta.dim:
        raise ModelMismatch(
            f"collection {info.name!r} holds {info.dim}-d vectors but model {meta.model!r} "
            f"makes {meta.dim}-d vectors: {fix}"
        )
    if (have.model, have.pooling) != (meta.model, meta.pooling):
        raise ModelMismatch(
            f"collection {info.name!r} was built with model {have.model!r} ({have.pooling} "
            f"pooling), not {meta.model!r} ({meta.pooling} pooling): {fix}"
        )
    if ingest and have.dataset != meta.dataset:
        raise ModelMismatch(
            f"collection {info.name!r} holds images of dataset {have.dataset!r}, not "
            f"{meta.dataset!r}: {fix}"
        )


def _hit(rank: int, point: models.ScoredPoint) -> Hit:
    p = point.payload or {}
    return Hit(
        rank=rank,
        id=str(point.id),
        score=float(point.score),
        label=p.get("label"),
        label_name=p.get("label_name"),
        split=p.get("split"),
        row=p.get("row"),
        path=p.get("path"),
    )
