"""What `serve` answers for commands run on its own machine while it holds the embedded store
(which admits one process at a time): `info`'s report (GET /collection) and the stored points
a dry-run sync compares (GET /collection/tracked, a page at a time).

These show the server's paths (its model and dataset folders, its files' stats), which are
nobody else's business: only a client that can read the store (it sends the token `serve`
recorded beside its URL in the store folder), connecting from this machine and naming it by
address or as localhost, is answered. Both run on the store's thread within the time
budget, and each takes a place in the same admission as a search."""

from __future__ import annotations

import ipaddress
import json
import secrets
import uuid
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request
from pydantic import BaseModel

from lookalike.cli.guards import host_name, is_address
from lookalike.cli.stores import described
from lookalike.search.searcher import Searcher
from lookalike.store.holders import process_token
from lookalike.store.served import TOKEN

MAX_TRACKED = 1024  # points in one page
MAX_TRACKED_BYTES = 4 * 1024 * 1024  # a page's payloads, as JSON: a page stops before more
NOT_LOCAL = (
    "only a process on the server's own machine that can read its store (it sends the token "
    "recorded there), naming it by address or as localhost, may ask this (it shows the "
    "server's paths)"
)
LOCAL = {403: {"description": NOT_LOCAL}}


class TrackedPoint(BaseModel):
    id: str
    payload: dict[str, Any]


class TrackedOut(BaseModel):
    """Points of one split in id order with their whole payloads; `next`: the offset of the
    next page (None: this is the last)."""

    points: list[TrackedPoint]
    next: str | None = None


# Headers a reverse proxy adds for the client it forwards: that client is elsewhere.
PROXIED = ("forwarded", "x-forwarded-for", "x-real-ip")


def is_local(request: Request) -> bool:
    """Whether the client runs on this machine: it connects from a loopback address or from
    the address the server listens on, not through a proxy, and its Host header names this
    machine by address or as localhost (a page of another site rebinding its name here names
    its own site)."""
    if any(h in request.headers for h in PROXIED):
        return False
    client = request.client.host if request.client else ""
    server = (request.scope.get("server") or ("",))[0]
    name = (host_name(request.headers.get("host", "")) or "").lower().rstrip(".")
    named = name == "localhost" or (is_address(name) and (_loopback(name) or name == server))
    return named and (_loopback(client) or (bool(client) and client == server))


def _loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


def local_router(searcher: Searcher, on_store: Callable[..., Any], placed) -> APIRouter:
    """The routes: `on_store(fn, *args)` runs fn on the thread that owns the store;
    `placed()` holds a place in the admission (503 when there is none)."""
    router = APIRouter()

    @router.get("/collection", responses=LOCAL)
    def collection(request: Request) -> dict[str, Any]:
        """The collection's report, as `lookalike info --json` prints it."""
        _only_local(request)
        with placed():
            info = on_store(described, searcher.store, searcher.collection)
        return info.to_dict()

    @router.get("/collection/tracked", response_model=TrackedOut, responses=LOCAL)
    def tracked(
        request: Request,
        split: Annotated[str, Query(max_length=256)],
        offset: uuid.UUID | None = None,
        limit: Annotated[int, Query(ge=1, le=MAX_TRACKED)] = 512,
    ) -> TrackedOut:
        """A page of the points of `split` with their whole payloads (what a sync compares
        with the images), from `offset` (a point id) on."""
        _only_local(request)
        with placed():
            points, nxt = on_store(
                searcher.store.tracked_page,
                searcher.collection,
                split,
                limit,
                None if offset is None else str(offset),
            )
        kept, size = [], 0
        for point in points:  # a page stops before it passes its size, at least one point
            size += len(json.dumps(point.payload, default=str))
            if kept and size > MAX_TRACKED_BYTES:
                return TrackedOut(points=kept, next=point.id)
            kept.append(TrackedPoint(id=point.id, payload=point.payload))
        return TrackedOut(points=kept, next=nxt)

    return router


def _only_local(request: Request) -> None:
    sent = request.headers.get(TOKEN, "")
    if not (secrets.compare_digest(sent, process_token()) and is_local(request)):
        raise HTTPException(403, NOT_LOCAL)
