"""A stub Qdrant REST server on 127.0.0.1 that records requests and misbehaves on demand."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class StubQdrant:
    """`behave(method, path, n)` returns a status code, "drop", ("sleep", s) or a JSON result;
    n counts the requests for that (method, path) so far, from 1."""

    def __init__(self, behave) -> None:
        self.behave = behave
        self.requests: list[dict] = []
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output clean
                pass

            def _handle(self):
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length) if length else b""
                path = self.path.split("?")[0]
                stub.requests.append(
                    {
                        "method": self.command,
                        "path": path,
                        "query": self.path.partition("?")[2],
                        "headers": dict(self.headers),
                        "body": body,
                    }
                )
                n = sum(
                    1 for r in stub.requests if (r["method"], r["path"]) == (self.command, path)
                )
                action = stub.behave(self.command, path, n)
                if action == "drop":  # close the connection without an answer
                    self.close_connection = True
                    self.connection.shutdown(2)
                    return
                if isinstance(action, tuple) and action[0] == "sleep":
                    time.sleep(action[1])
                    action = True
                status, result = (
                    (action, None) if isinstance(action, int) and action >= 300 else (200, action)
                )
                payload = json.dumps({"result": result, "status": "ok", "time": 0.0}).encode()
                if status >= 300:
                    payload = json.dumps({"status": {"error": "stub says no"}}).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _handle

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def bodies(self, method: str, path: str) -> list[dict]:
        """The JSON bodies of the requests to (method, path), in order."""
        return [
            json.loads(r["body"] or b"null")
            for r in self.requests
            if (r["method"], r["path"]) == (method, path)
        ]

    def count(self, method: str, path: str) -> int:
        return sum(1 for r in self.requests if (r["method"], r["path"]) == (method, path))
