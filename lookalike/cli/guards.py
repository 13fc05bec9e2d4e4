"""What `serve` refuses before a request costs anything: bodies over the limit however they are
framed, Host names it does not serve, and more images at once than memory allows.

The two middlewares are plain ASGI, so they see the body as it streams and answer before a
route runs; the admission is the one place that bounds the requests decoding and waiting
for the model."""

from __future__ import annotations

import contextlib
import ipaddress
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from fastapi import HTTPException
from fastapi.responses import JSONResponse

LOCAL_NAMES = ("localhost",)
T = TypeVar("T")


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
            return await JSONResponse({"detail": detail}, status)(scope, receive, send)
        received = 0

        async def counted():
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.limit:
                # Raised inside the route's body parsing: FastAPI passes HTTPException through
                # to its handler, which answers 413; the rest of the body is never read.
                raise HTTPException(413, self.detail)
            return message

        await self.app(scope, counted, send)


def host_name(host: str) -> str:
    """The name in a Host header, without its port: "[::1]:8000" -> "::1"."""
    if host.startswith("["):
        return host[1:].partition("]")[0]
    return host.rpartition(":")[0] if host.count(":") == 1 else host


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
            name = host_name(host).lower().rstrip(".")
            if not (is_address(name) or name in self.names):
                detail = (
                    f"this server does not serve the host name {host[:100]!r}; "
                    "start it with --allowed-host NAME to allow one"
                )
                return await JSONResponse({"detail": detail}, 400)(scope, receive, send)
        await self.app(scope, receive, send)


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
