"""Where the vectors live: a Qdrant server, or an embedded folder and its engine.

Server specifics (URL, API key, HTTPS, timeouts, retries, request sizes, parallel uploads) are
settings here and are used by the engine modules only.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from lookalike.defaults import DEFAULT_PATH
from lookalike.errors import BadQuery


@dataclass(frozen=True)
class StoreConfig:
    """Where Qdrant is: a server (`url`, optional `api_key`) or an embedded folder (`path`)."""

    url: str | None = None
    api_key: str | None = field(default=None, repr=False)  # never in a repr, log or message
    path: str = DEFAULT_PATH
    engine: str = "auto"  # embedded only: auto | edge | local
    timeout: int = 60
    upsert_batch: int = 256  # points per upsert request, lowered to fit request_limit_mb
    upload_parallel: int = 4  # server only: upsert requests in flight at once
    request_limit_mb: int = 32  # the server's service.max_request_size_mb
    retries: int = 4  # after the first try, for transient server errors only
    backoff: float = 0.5  # seconds before the first retry; doubles each time
    check_compatibility: bool = True
    index_wait: int = 3600  # server only: seconds a bulk load waits for its index (green)
    min_free_mb: int = 32  # embedded only: free disk an ingest leaves, so the store stays readable

    @property
    def location(self) -> str:
        """The server URL without any user:password part, or the local folder."""
        if not self.url:
            return f"{self.embedded_engine}:{self.path}"
        scheme, sep, rest = self.url.partition("://")
        # Everything before the last "@" may be a secret, even in a URL that does not parse.
        return scheme + sep + rest.rpartition("@")[2] if sep else self.url.rpartition("@")[2]

    @property
    def insecure_key(self) -> bool:
        """An API key that would travel in clear text."""
        return bool(self.url and self.api_key and self.url.startswith("http://"))

    @property
    def secrets(self) -> tuple[str, ...]:
        """The strings that must never be shown: the API key and a URL's password."""
        found = [self.api_key] if self.api_key else []
        if self.url and "@" in self.url:
            userinfo = self.url.partition("://")[2].rpartition("@")[0]
            found.append(userinfo.partition(":")[2] or userinfo)
        return tuple(s for s in found if s)

    def check(self) -> None:
        """BadQuery unless `url` is an http(s) URL with a host and a valid port, or, without
        one, `path` is a folder or can become one."""
        if not self.url:
            if os.path.exists(self.path) and not os.path.isdir(self.path):
                raise BadQuery(f"the store folder {self.path} is a file", field="path")
            return
        problem = None
        try:
            parts = urlsplit(self.url)
            parts.port  # noqa: B018 (parsing the port is the check)
        except ValueError as e:  # urllib's words may quote the URL, password and all
            port = "ort" in str(e)
            problem = "its port must be a number from 0 to 65535" if port else "it does not parse"
        else:
            if parts.scheme not in ("http", "https"):
                problem = "it must start with http:// or https://"
            elif not parts.hostname:
                problem = "it names no host"
        if problem:
            raise BadQuery(f"Qdrant URL {self.location} is not valid: {problem}", field="url")

    @property
    def embedded_engine(self) -> str:
        """edge or local: auto keeps a folder local mode already holds, else edge."""
        if self.engine != "auto":
            return self.engine
        return "local" if os.path.exists(os.path.join(self.path, "meta.json")) else "edge"

    def points_per_request(self, dim: int) -> int:
        """Points per upsert request, so that one request stays well under the server's limit.
        A float travels as up to ~20 characters of JSON; half the limit leaves headroom."""
        per_point = 20 * dim + 1024
        return max(1, min(self.upsert_batch, self.request_limit_mb * 2**20 // 2 // per_point))


NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,254}$")


def check_name(name: str) -> str:
    """A collection name that is safe as a folder name and in a URL path."""
    if not NAME.match(name):
        raise BadQuery(
            f"collection name {name!r} must be letters, digits, '_', '-' or '.', "
            "not starting with '.' or '-'",
            field="collection",
        )
    return name
