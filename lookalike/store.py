"""Qdrant storage: the only module that imports qdrant_client.

Server specifics (URL, API key, HTTPS, timeouts, retries, wait=True, batching) live here and
nowhere else; embedded local mode goes through the same code.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar
from urllib.parse import urlsplit, urlunsplit

import httpx
import numpy as np
from qdrant_client import QdrantClient, models
from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

from lookalike.defaults import DEFAULT_PATH
from lookalike.errors import CollectionNotFound, StoreLocked, StoreUnavailable
from lookalike.records import CollectionInfo, CollectionMeta, Hit, ImageRecord, check_compatible

# Worth another try: the server is restarting, overloaded or briefly unreachable.
TRANSIENT_STATUS = {408, 429, 500, 502, 503, 504}
T = TypeVar("T")


@dataclass(frozen=True)
class StoreConfig:
    """Where Qdrant is: a server (`url`, optional `api_key`) or embedded local mode (`path`)."""

    url: str | None = None
    api_key: str | None = field(default=None, repr=False)  # never in a repr, log or message
    path: str = DEFAULT_PATH
    timeout: int = 60
    upsert_batch: int = 256
    retries: int = 4  # after the first try, for transient server errors only
    backoff: float = 0.5  # seconds before the first retry; doubles each time
    check_compatibility: bool = True

    @property
    def location(self) -> str:
        """The server URL without any user:password part, or the local folder."""
        if not self.url:
            return f"local:{self.path}"
        parts = urlsplit(self.url)
        return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))

    @property
    def insecure_key(self) -> bool:
        """An API key that would travel in clear text."""
        return bool(self.url and self.api_key and urlsplit(self.url).scheme == "http")


def connect(config: StoreConfig | None = None) -> Store:
    """Open the store described by `config` (embedded local mode by default)."""
    config = config or StoreConfig()
    if config.insecure_key:
        warnings.warn(
            f"the Qdrant API key is sent over plain HTTP to {config.location}: anyone on the "
            "network path can read it; use an https:// URL",
            UserWarning,
            stacklevel=2,
        )
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
                # Ingest writes from one writer thread while the main thread embeds; accesses
                # never overlap, so sqlite's same-thread check (on by default on macOS) can go.
                client = QdrantClient(path=config.path, force_disable_check_same_thread=True)
    except RuntimeError as e:
        if "already accessed" in str(e):
            raise StoreLocked(
                f"the local store {config.path} is in use by another process (embedded Qdrant "
                "allows one at a time): wait for it to finish, or run a Qdrant server "
                "(docker compose up -d) and pass --qdrant-url"
            ) from e
        raise
    return Store(client, config)


def _transient(error: Exception) -> bool:
    if isinstance(error, UnexpectedResponse):
        return error.status_code in TRANSIENT_STATUS
    return isinstance(error, (ResponseHandlingException, httpx.TransportError, ConnectionError))


def _describe(error: Exception) -> str:
    if isinstance(error, UnexpectedResponse):
        if error.status_code in (401, 403):
            return f"HTTP {error.status_code}: the server refused the API key (--qdrant-api-key)"
        return f"HTTP {error.status_code} {error.reason_phrase}".strip()
    cause = error.__cause__ or error.__context__ or error
    return f"{type(cause).__name__}: {cause}".rstrip(": ")


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

    def _call(self, what: str, fn: Callable[..., T], *args, **kwargs) -> T:
        """Call the client; retry transient server errors with exponential backoff, then fail
        with one StoreUnavailable that says what was being done and why it failed."""
        attempts = 1 + (self.config.retries if self.config.url else 0)
        for attempt in range(1, attempts + 1):
            try:
                return fn(*args, **kwargs)
            except (ResponseHandlingException, UnexpectedResponse, httpx.HTTPError, OSError) as e:
                if attempt == attempts or not _transient(e):
                    tries = f" after {attempt} attempts" if attempt > 1 else ""
                    raise StoreUnavailable(
                        f"Qdrant at {self.config.location} failed to {what}{tries}: {_describe(e)}"
                    ) from e
                time.sleep(self.config.backoff * 2 ** (attempt - 1))
        raise AssertionError("unreachable")

    def exists(self, name: str) -> bool:
        return self._call("check collection " + repr(name), self.client.collection_exists, name)

    def info(self, name: str) -> CollectionInfo:
        """Size, vector parameters and build metadata; CollectionNotFound if absent."""
        if not self.exists(name):
            found = self._call("list collections", self.client.get_collections).collections
            known = ", ".join(sorted(c.name for c in found)) or "none"
            raise CollectionNotFound(
                f"collection {name!r} does not exist at {self.config.location} "
                f"(collections there: {known}); run `lookalike ingest --collection {name}`"
            )
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
        )

    def prepare(self, name: str, meta: CollectionMeta, *, recreate: bool = False) -> None:
        """Create the collection for `meta`, or check an existing one was built the same way."""
        if recreate and self.exists(name):
            self._call(f"delete collection {name!r}", self.client.delete_collection, name)
        if not self.exists(name):
            vectors = models.VectorParams(size=meta.dim, distance=models.Distance.COSINE)
            self._call(
                f"create collection {name!r}",
                self.client.create_collection,
                name,
                vectors_config=vectors,
                metadata=meta.to_dict(),
            )
            return
        check_compatible(self.info(name), meta, ingest=True)

    def upsert(self, name: str, records: Sequence[ImageRecord], vectors: np.ndarray) -> None:
        """Upsert in batches and wait for each, so a search right after sees every point.

        Upserts are idempotent (deterministic ids), so retrying one is always safe."""
        step = self.config.upsert_batch
        for start in range(0, len(records), step):
            chunk = records[start : start + step]
            batch = models.Batch(
                ids=[r.id for r in chunk],
                vectors=vectors[start : start + step].tolist(),
                payloads=[r.payload() for r in chunk],
            )
            self._call(f"store {len(chunk)} points", self.client.upsert, name, batch, wait=True)

    def existing_ids(self, name: str, ids: Sequence[str]) -> set[str]:
        """Which of `ids` the collection already holds."""
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

    def similar_pairs(
        self, name: str, sample: int, neighbours: int
    ) -> list[tuple[str, str, float]]:
        """(id, id, score) for each of `sample` points and its nearest `neighbours` among them,
        by Qdrant's distance-matrix API."""
        response = self._call(
            "compute similar pairs",
            self.client.search_matrix_pairs,
            name,
            sample=sample,
            limit=neighbours,
        )
        return [(str(p.a), str(p.b), float(p.score)) for p in response.pairs]

    def points(self, name: str, ids: Sequence[str]) -> dict[str, Hit]:
        """Stored payloads of `ids`, by id (as Hits with rank 0, score 0)."""
        found = self._call("fetch points", self.client.retrieve, name, ids=list(ids))
        return {str(p.id): _hit(0, p) for p in found}

    def sample(self, name: str, n: int) -> list[Hit]:
        """Up to n stored points (in id order, which deterministic uuids make arbitrary)."""
        points, _ = self._call("read points", self.client.scroll, name, limit=n, with_payload=True)
        return [_hit(0, p) for p in points]

    def point(self, name: str, point_id: str) -> Hit | None:
        """A stored point's payload as a Hit (rank 0, score 0), or None."""
        found = self._call(
            "fetch a point", self.client.retrieve, name, ids=[point_id], with_payload=True
        )
        return _hit(0, found[0]) if found else None

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
        if not requests:
            return []
        responses = self._call("search", self.client.query_batch_points, name, requests=requests)
        return [[_hit(rank, p) for rank, p in enumerate(r.points, 1)] for r in responses]


def _hit(rank: int, point: models.ScoredPoint | models.Record) -> Hit:
    p = point.payload or {}
    return Hit(
        rank=rank,
        id=str(point.id),
        score=float(getattr(point, "score", 0.0)),
        label=p.get("label"),
        label_name=p.get("label_name"),
        split=p.get("split"),
        row=p.get("row"),
        path=p.get("path"),
    )
