"""Loading many points into a Qdrant server at once, as Qdrant's bulk-upload advice has it:
payload indexes first (made by the caller before the load), graph building off while points
arrive (indexing_threshold 0), then back on, and the load done only once the collection is
green (indexed and searchable at full speed).

The server calls go through QdrantStore (the one module that knows qdrant-client); this is the
order of them."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

from lookalike.errors import StoreUnavailable

if TYPE_CHECKING:
    from lookalike.store.qdrant import QdrantStore

# The server's own default (KB of vectors per segment before it builds a graph), restored when
# the collection had none of its own.
DEFAULT_THRESHOLD = 10_000
POLL = 0.5  # seconds between looks at the collection's status


@contextlib.contextmanager
def deferred_index(store: QdrantStore, name: str) -> Iterator[None]:
    """Graph building deferred while the block loads points; restored after (also when the
    load fails, so the collection is never left unindexed), then waited for (green)."""
    before = store.indexing_threshold(name)
    store.set_indexing_threshold(name, 0)
    try:
        yield
    finally:
        store.set_indexing_threshold(name, before or DEFAULT_THRESHOLD)
    wait_green(store, name, store.config.index_wait)


def wait_green(store: QdrantStore, name: str, limit: float) -> None:
    """Return once the collection is green; StoreUnavailable past `limit` seconds (the points
    are stored all the same: the server goes on indexing)."""
    deadline = time.monotonic() + limit
    while (status := store.status(name)) != "green":
        if status == "red":
            raise StoreUnavailable(
                f"Qdrant at {store.config.location}",
                f"index {name!r}",
                "the collection's status is red: an optimizer failed (see the server's log)",
            )
        if time.monotonic() > deadline:
            raise StoreUnavailable(
                f"Qdrant at {store.config.location}",
                f"index {name!r}",
                f"still {status} after {limit:.0f} s; the points are stored and the server "
                "goes on building the index",
            )
        time.sleep(POLL)
