"""The app on a real port, in a thread, as `lookalike serve` runs it (for tests that need the
wire: a browser, a forwarding search, concurrent clients)."""

from __future__ import annotations

import contextlib
import socket
import threading
import time

import uvicorn


class Live:
    """A real uvicorn server on a free port, in a thread."""

    def __init__(self, app) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        self.app, self.url = app, f"http://127.0.0.1:{port}"
        config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        while not self.server.started:
            time.sleep(0.05)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)


@contextlib.contextmanager
def serving(app):
    """The server's URL (with its trailing slash) while the block runs."""
    live = Live(app)
    try:
        yield live.url + "/"
    finally:
        live.stop()
