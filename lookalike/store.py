"""Where vectors live: one interface, three engines, chosen by one switch.

- a Qdrant server or cluster (`url`): `lookalike.qdrant_store`, through qdrant-client;
- embedded `edge` (the default for a new folder): Qdrant's own engine in-process, with HNSW,
  quantization, payload indexes and persistence, `lookalike.edge_store`;
- embedded `local`: qdrant-client's pure-Python local mode, exact search (kept for folders it
  already holds and for small collections).

Server specifics (URL, API key, HTTPS, timeouts, retries, wait=True, batch sizes, parallel
uploads) live in StoreConfig and the engine modules, nowhere else.
"""

from __future__ import annotations

import os
import re
import warnings
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from urllib.parse import urlsplit, urlunsplit

import numpy as np

from lookalike.defaults import DEFAULT_PATH
from lookalike.errors import BadQuery, CollectionNotFound
from lookalike.index import IndexSettings, SearchSettings
from lookalike.records import CollectionInfo, CollectionMeta, Hit, ImageRecord, check_compatible


@dataclass(frozen=True)
class StoreConfig:
    """Where Qdrant is: a server (`url`, optional `api_key`) or an embedded folder (`path`)."""

    url: str | None = None
    api_key: str | None = field(default=None, repr=False)  # never in a repr, log or message
    path: str = DEFAULT_PATH
    engine: str = "auto"  # embedded only: auto | edge | local
    timeout: int = 60
    upsert_batch: int = 256  # points per request, lowered to fit request_limit_mb
    upload_parallel: int = 4  # server only: upsert requests in flight at once
    request_limit_mb: int = 32  # the server's service.max_request_size_mb
    retries: int = 4  # after the first try, for transient server errors only
    backoff: float = 0.5  # seconds before the first retry; doubles each time
    check_compatibility: bool = True

    @property
    def location(self) -> str:
        """The server URL without any user:password part, or the local folder."""
        if not self.url:
            return f"{self.embedded_engine}:{self.path}"
        parts = urlsplit(self.url)
        return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))

    @property
    def insecure_key(self) -> bool:
        """An API key that would travel in clear text."""
        return bool(self.url and self.api_key and urlsplit(self.url).scheme == "http")

    @property
    def embedded_engine(self) -> str:
        """edge or local: auto keeps a folder local mode already holds, else edge."""
        if self.engine != "auto":
            return self.engine
        return "local" if os.path.exists(os.path.join(self.path, "meta.json")) else "edge"

    def batch_size(self, dim: int) -> int:
        """Points per upsert request, so that one request stays well under the server's limit.
        A float travels as up to ~20 characters of JSON; half the limit leaves headroom."""
        per_point = 20 * dim + 1024
        return max(1, min(self.upsert_batch, self.request_limit_mb * 2**20 // 2 // per_point))


def connect(config: StoreConfig | None = None) -> Store:
    """Open the store described by `config` (an embedded folder by default)."""
    config = config or StoreConfig()
    if config.insecure_key:
        warnings.warn(
            f"the Qdrant API key is sent over plain HTTP to {config.location}: anyone on the "
            "network path can read it; use an https:// URL",
            UserWarning,
            stacklevel=2,
        )
    if not config.url and config.embedded_engine == "edge":
        from lookalike.edge_store import EdgeStore

        return EdgeStore(config)
    from lookalike.qdrant_store import QdrantStore

    return QdrantStore.open(config)


NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,254}$")


def check_name(name: str) -> str:
    if not NAME.match(name):
        raise BadQuery(
            f"collection name {name!r} must be letters, digits, '_', '-' or '.', "
            "not starting with '.' or '-'"
        )
    return name


class Store(ABC):
    """Collections of image vectors with label/split/row/path payloads and a label index."""

    engine: str
    config: StoreConfig

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def prepare(
        self,
        name: str,
        meta: CollectionMeta,
        *,
        recreate: bool = False,
        index: IndexSettings | None = None,
    ) -> None:
        """Create the collection for `meta`, or check an existing one was built the same way
        (`index` applies only when the collection is created)."""
        check_name(name)
        if recreate and self.exists(name):
            self._delete(name)
        if not self.exists(name):
            self._create(name, meta, index or IndexSettings())
            return
        check_compatible(self.info(name), meta, ingest=True)

    def not_found(self, name: str) -> CollectionNotFound:
        known = ", ".join(sorted(self.names())) or "none"
        return CollectionNotFound(
            f"collection {name!r} does not exist at {self.config.location} "
            f"(collections there: {known}); run `lookalike ingest --collection {name}`"
        )

    def finish(self, name: str) -> None:
        """Called once an ingest has written everything: build what searches need."""
        return None  # a server indexes in the background, as points arrive

    @abstractmethod
    def close(self) -> None: ...

    @abstractmethod
    def names(self) -> list[str]: ...

    @abstractmethod
    def exists(self, name: str) -> bool: ...

    @abstractmethod
    def info(self, name: str) -> CollectionInfo:
        """Size, vector and index parameters and build metadata; CollectionNotFound if absent."""

    @abstractmethod
    def _create(self, name: str, meta: CollectionMeta, index: IndexSettings) -> None: ...

    @abstractmethod
    def _delete(self, name: str) -> None: ...

    @abstractmethod
    def upsert(self, name: str, records: Sequence[ImageRecord], vectors: np.ndarray) -> None:
        """Store the points and return once a search would see them. Upserts are idempotent
        (deterministic ids), so retrying one is always safe."""

    @abstractmethod
    def existing_ids(self, name: str, ids: Sequence[str]) -> set[str]:
        """Which of `ids` the collection already holds."""

    @abstractmethod
    def similar_pairs(
        self, name: str, sample: int, neighbours: int
    ) -> list[tuple[str, str, float]]:
        """(id, id, score) for each of `sample` points and its nearest `neighbours`."""

    @abstractmethod
    def points(self, name: str, ids: Sequence[str]) -> dict[str, Hit]:
        """Stored payloads of `ids`, by id (as Hits with rank 0, score 0)."""

    @abstractmethod
    def scroll(
        self, name: str, limit: int, offset: str | None = None, with_vectors: bool = False
    ) -> tuple[list[Hit], np.ndarray | None, str | None]:
        """A page of stored points in id order: hits, their vectors if asked, next offset."""

    def sample(self, name: str, n: int) -> list[Hit]:
        """Up to n stored points (in id order, which deterministic uuids make arbitrary)."""
        return self.scroll(name, n)[0]

    def point(self, name: str, point_id: str) -> Hit | None:
        """A stored point's payload as a Hit (rank 0, score 0), or None."""
        return next(iter(self.points(name, [point_id]).values()), None)

    @abstractmethod
    def query(
        self,
        name: str,
        vectors: np.ndarray,
        k: int,
        label: int | None = None,
        params: SearchSettings | None = None,
    ) -> list[list[Hit]]:
        """Top-k neighbours for each row of `vectors`, optionally only those with `label`.
        `params` go to the engine as they are (see index.effective for quantized defaults)."""


def hit(rank: int, point_id: object, score: float, payload: dict | None) -> Hit:
    p = payload or {}
    return Hit(
        rank=rank,
        id=str(point_id),
        score=float(score),
        label=p.get("label"),
        label_name=p.get("label_name"),
        split=p.get("split"),
        row=p.get("row"),
        path=p.get("path"),
    )
