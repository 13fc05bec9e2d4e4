"""What `serve` refuses before a request costs anything: bodies over the limit however they are
framed, Host names it does not serve, and more images at once than memory allows.

The two middlewares are plain ASGI, so they see the body as it streams and answer before a
route runs; the admission is the one place that bounds the requests decoding and waiting
for the model."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import re
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from fastapi import HTTPException
from fastapi.responses import JSONResponse

LOCAL_NAMES = ("localhost",)
T = TypeVar("T")
CLOSE = {"Connection": "close"}  # a refused body is not read: the connection goes with it
# A Host header: a name or an address, an optional port; nothing else ("a:1@b", "a:1, b").
HOST = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._-]*)(:[0-9]{1,5})?$")
MAX_JSON = 1024 * 1024  # a JSON request (/recommend) is ids and a filter: a MiB is plenty
MAX_JSON_DEPTH = 64  # Python's JSON parser recurses: deeper bodies are refused unparsed
HEADER_TIMEOUT_S = 10.0  # a request's headers arrive within this, or the connection closes


class BodyLimit:
    """Refuse a body over `limit` bytes with 413: at once when Content-Length says so, else as
    soon as the bytes received pass it (chunked uploads have no length to check)."""

    def __init__(self, app, limit: int, detail: str) -> None:
        self.app, self.limit, self.detail = app, limit, detail

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.limit):
            status = 413 if length.isdigit() else 400
            detail = self.detail if length.isdigit() else "invalid Content-Length"
            refusal = JSONResponse({"detail": detail}, status, headers=CLOSE)
            return await refusal(scope, receive, send)
        received = 0

        async def counted():
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.limit:
                # Raised inside the route's body parsing: FastAPI passes HTTPException through
                # to its handler, which answers 413; the rest of the body is never read.
                raise HTTPException(413, self.detail, headers=CLOSE)
            return message

        await self.app(scope, counted, send)


def host_name(host: str) -> str | None:
    """The name in a Host header, without its port: "[::1]:8000" -> "::1"; None for a header
    that is not a name (or address) and a port ("localhost:80@evil.com", "a:80, evil.com")."""
    match = HOST.match(host)
    if match is None:
        return None
    name = match[1]
    return name[1:-1] if name.startswith("[") else name


def is_address(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


class HostCheck:
    """Answer 400 to a Host header naming none of `names`. A page on another site that rebinds
    its own name to this machine's address (DNS rebinding) still sends its own name, so it
    cannot read the API; an address typed as such (127.0.0.1, a LAN address) names no site
    and is always served."""

    def __init__(self, app, names: tuple[str, ...]) -> None:
        self.app = app
        self.names = {n.lower().rstrip(".") for n in (*LOCAL_NAMES, *names)}

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] in ("http", "websocket"):
            host = dict(scope["headers"]).get(b"host", b"").decode("latin-1")
            name = (host_name(host) or "").lower().rstrip(".")
            if not name or not (is_address(name) or name in self.names):
                detail = (
                    f"this server does not serve the host name {host[:100]!r}; "
                    "start it with --allowed-host NAME to allow one"
                )
                return await JSONResponse({"detail": detail}, 400)(scope, receive, send)
        await self.app(scope, receive, send)


class SameOrigin:
    """Refuse (403) a request that changes or costs something (POST) sent by a page of another
    site: its browser says so in Sec-Fetch-Site, or in an Origin naming another host than the
    Host it sends to. A form on evil.com posting images to this server costs its CPU, though
    the page cannot read the answer."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http" and scope["method"] not in ("GET", "HEAD", "OPTIONS"):
            headers = dict(scope["headers"])
            site = headers.get(b"sec-fetch-site", b"").decode("latin-1")
            origin = headers.get(b"origin", b"").decode("latin-1")
            host = headers.get(b"host", b"").decode("latin-1")
            foreign = origin not in ("", "null") and origin.partition("://")[2] != host
            if site == "cross-site" or foreign:
                detail = "requests from pages of other sites are refused"
                return await JSONResponse({"detail": detail}, 403)(scope, receive, send)
        await self.app(scope, receive, send)


class JsonLimit:
    """A JSON body (/recommend) at most MAX_JSON bytes and MAX_JSON_DEPTH levels deep, read
    whole and checked before it is parsed: 413 or 400 in words, never a parser's crash."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        kind = dict(scope.get("headers", ())).get(b"content-type", b"")
        if scope["type"] != "http" or not kind.startswith(b"application/json"):
            return await self.app(scope, receive, send)
        body, more = b"", True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
            if len(body) > MAX_JSON:
                detail = f"a JSON body is at most {MAX_JSON // 1024} KiB"
                refusal = JSONResponse({"detail": detail}, 413, headers=CLOSE)
                return await refusal(scope, receive, send)
        if json_depth(body) > MAX_JSON_DEPTH:
            detail = f"the JSON body nests more than {MAX_JSON_DEPTH} levels deep"
            return await JSONResponse({"detail": detail}, 400)(scope, receive, send)
        replayed = False

        async def replay():
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)


def json_depth(body: bytes) -> int:
    """How deep a JSON text nests its arrays and objects (brackets inside strings skipped)."""
    depth = deepest = 0
    in_string = escaped = False
    for byte in body:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):
            depth += 1
            deepest = max(deepest, depth)
        elif byte in (0x5D, 0x7D):
            depth -= 1
    return deepest


def header_timeout_protocol(seconds: float = HEADER_TIMEOUT_S):
    """uvicorn's HTTP protocol, closing a connection whose request headers do not all arrive
    within `seconds` (slowloris: many connections each sending a header byte now and then
    would otherwise stay open without end). On httptools' C parser where it is installed (a
    dependency): ~1 ms less per request than h11's pure Python (bench/query_bench.py)."""
    try:
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol as Base
    except ImportError:
        from uvicorn.protocols.http.h11_impl import H11Protocol as Base

    class Protocol(Base):
        _header_timer: asyncio.TimerHandle | None = None

        def connection_made(self, transport) -> None:
            super().connection_made(transport)
            self._arm()

        def data_received(self, data: bytes) -> None:
            if self._waiting_for_headers():
                self._arm()
            super().data_received(data)
            if not self._waiting_for_headers():
                self._disarm()

        def connection_lost(self, exc) -> None:
            self._disarm()
            super().connection_lost(exc)

        def _waiting_for_headers(self) -> bool:
            return self.cycle is None or self.cycle.response_complete

        def _arm(self) -> None:
            if self._header_timer is None:
                self._header_timer = self.loop.call_later(seconds, self._late)

        def _disarm(self) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
                self._header_timer = None

        def _late(self) -> None:
            self._header_timer = None
            if self._waiting_for_headers() and not self.transport.is_closing():
                self.transport.close()

    return Protocol


class Busy(Exception):
    """Too many images in progress or waiting: try again shortly."""


class Admission:
    """At most `slots + queue` requests in progress at once (a place each, from decoding to
    answer); beyond that, Busy. Of those, `slots` decode at a time (a 40 MP photo takes ~0.5
    GB while it is), on threads of their own, none waiting longer than `wait_s` to start. Own
    threads, not the server's pool of ~40: the C allocator keeps memory per thread, so big
    images passing through every thread would each leave some behind."""

    def __init__(self, slots: int, queue: int, wait_s: float) -> None:
        self._pool = ThreadPoolExecutor(slots, thread_name_prefix="lookalike-decode")
        self._places = threading.BoundedSemaphore(slots + queue)
        self.wait_s = wait_s

    @contextlib.contextmanager
    def place(self) -> Iterator[None]:
        """Hold a place for a whole request; Busy at once if none is free."""
        if not self._places.acquire(blocking=False):
            raise Busy
        try:
            yield
        finally:
            self._places.release()

    def decode(self, fn: Callable[..., T], *args) -> T:
        """fn(*args) in one of the slots, for a request holding a place; Busy if no slot is
        free within wait_s."""
        future = self._pool.submit(fn, *args)
        try:
            return future.result(timeout=self.wait_s)
        except TimeoutError:
            if future.cancel():  # still waiting for a slot: give up
                raise Busy from None
            return future.result()  # started: a slow image is still answered

    def run(self, fn: Callable[..., T], *args) -> T:
        """fn(*args) in one of the slots, in a place of its own."""
        with self.place():
            return self.decode(fn, *args)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
