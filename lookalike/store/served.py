"""A collection read through the `lookalike serve` that holds its embedded store (which admits
one process at a time): what `info` shows and what a dry-run sync compares, asked over HTTP
with the standard library only, so neither imports an engine or a model.

The server answers these only to processes on its own machine that can read the store: they
send the token it recorded beside its URL in the store folder (they show the server's paths)."""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request

from lookalike.errors import StoreLocked, StoreUnavailable
from lookalike.records import CollectionInfo, Tracked
from lookalike.store.config import StoreConfig
from lookalike.store.holders import holders

TOKEN = "X-Lookalike-Token"  # the header carrying the token the serve recorded

PAGE = 512  # stored points asked for at once (the server may send fewer: its size bound)


class ServedStore:
    """The read-only part of a Store that `info` and `ingest --dry-run` use (exists, info,
    tracked), answered by the serve at `url` for its one collection. Anything that would
    write is not here: a sync through a serve only plans."""

    engine = "served"

    def __init__(self, url: str, config: StoreConfig, token: str | None = None) -> None:
        self.url, self.config = url.rstrip("/") + "/", config
        self.headers = {TOKEN: token} if token else {}  # what says we may read the store
        self._info: CollectionInfo | None = None

    @classmethod
    def asked(cls, error: StoreLocked, config: StoreConfig, collection: str | None):
        """The serve that `error` names, when it answers for `collection` (None: any); else
        None (no serve, another collection, or a server too old or too far to tell)."""
        holder = next((h for h in holders(config.path) if h.pid == error.pid), None)
        if not error.url or holder is None:
            return None
        served = cls(error.url, config, holder.token)
        try:
            info = served.collection_info()
        except (StoreUnavailable, KeyError, TypeError, ValueError, AttributeError):
            return None  # not a serve's answer (another program on that port, say)
        return served if collection in (None, info.name) else None

    def collection_info(self) -> CollectionInfo:
        if self._info is None:
            self._info = CollectionInfo.from_dict(self._get("collection"))
        return self._info

    def exists(self, name: str) -> bool:
        return name == self.collection_info().name

    def info(self, name: str) -> CollectionInfo:
        return self.collection_info()

    def tracked(self, name: str, split: str) -> list[Tracked]:
        """Every point of `split` with its whole payload, a page at a time."""
        found: list[Tracked] = []
        offset: str | None = None
        while True:
            query = {"split": split, "limit": PAGE} | ({"offset": offset} if offset else {})
            page = self._get("collection/tracked?" + urllib.parse.urlencode(query))
            found += [Tracked(p["id"], p["payload"]) for p in page["points"]]
            offset = page.get("next")
            if not offset or not page["points"]:  # a page without points ends it too
                return found

    def close(self) -> None:
        pass

    def _get(self, path: str) -> dict:
        try:
            request = urllib.request.Request(self.url + path, headers=self.headers)
            with urllib.request.urlopen(request, timeout=self.config.timeout) as r:
                return json.load(r)
        except urllib.error.HTTPError as e:
            # no status below 500: a refusal here is the serve's, not a Qdrant API key's
            status = e.code if e.code >= 500 else None
            detail = _detail(e)
            raise StoreUnavailable(self.url, "read the collection", detail, status=status) from e
        except (urllib.error.URLError, OSError, ValueError) as e:
            raise StoreUnavailable(self.url, "read the collection", str(e)) from e


def answers(url: str, timeout: float) -> bool:
    """Whether a serve answers at `url` (its /health)."""
    try:
        with urllib.request.urlopen(url.rstrip("/") + "/health", timeout=timeout) as r:
            return r.status == 200
    except (urllib.error.URLError, OSError, ValueError):
        return False


def _detail(error: urllib.error.HTTPError) -> str:
    try:
        detail = json.load(error).get("detail")
    except (ValueError, OSError, AttributeError):
        detail = None
    return detail if isinstance(detail, str) else f"HTTP {error.code}"
