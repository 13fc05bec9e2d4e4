"""Searching through a running `lookalike serve`: what a command does when the embedded store
it needs is held by that server (one process per embedded store).

Speaks the server's HTTP API with the standard library only.
"""

from __future__ import annotations

import dataclasses
import json
import os
import urllib.error
import urllib.request
import uuid
import warnings

from PIL import Image

from lookalike.errors import BadImage, BadQuery, StoreUnavailable
from lookalike.images import open_image
from lookalike.records import Hit, Query, Result
from lookalike.search.limits import SPLIT_ROW


class RemoteSearcher:
    """The part of Searcher a command needs, answered by a `lookalike serve` at `url`."""

    def __init__(self, url: str, timeout: float = 60.0) -> None:
        self.url = url.rstrip("/") + "/"
        self.timeout = timeout

    def search(
        self,
        text: str,
        k: int,
        label: str | None = None,
        *,
        include_self: bool = False,
        query: dict | None = None,
    ) -> Result:
        """Search with an image file (uploaded) or SPLIT:ROW (the server reads the row);
        `query`: Searcher.options' arguments, sent as the form's fields."""
        fields = {"k": str(k), "include_self": "true" if include_self else "false"}
        fields |= _fields(label, query)
        files = {}
        if os.path.exists(text):
            with open(text, "rb") as f:
                files["image"] = f.read()
            fields["path"] = os.path.realpath(text)  # compared with stored paths, never opened
        elif SPLIT_ROW.match(text):
            fields["query"] = text
        else:
            raise BadQuery(f"no such file: {text!r}", field="query")
        body = self._post("search", fields, files)
        query = Query(
            text,
            open_image(files["image"]) if files else self._image(f"rows/{text.replace(':', '/')}"),
            label=body.get("query_label"),
            label_name=body.get("query_label_name"),
        )
        return Result(query, [_hit(h) for h in body["hits"]], bool(body.get("excluded_self")))

    def recommend(
        self,
        positive: list[str],
        negative: list[str],
        k: int,
        *,
        strategy: str,
        label: str | None = None,
        query: dict | None = None,
    ) -> list[Hit]:
        """POST /recommend: stored point ids only (the server reads no file of ours)."""
        body = {"positive": positive, "negative": negative, "k": k, "strategy": strategy}
        body |= {"label": label} if label is not None else {}
        body |= {n: list(v) if n == "where" else v for n, v in (query or {}).items() if v}
        request = urllib.request.Request(
            self.url + "recommend",
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
        )
        return [_hit(h) for h in self._send(request)["hits"]]

    def stored_id(self, file: str) -> str | None:
        """The id of the stored point that is this image file (same bytes), if the server's
        collection holds it: so a file can be a recommend example, which the server takes
        by id only."""
        from lookalike.source.fingerprint import sha256_file

        try:
            digest = sha256_file(file)
        except OSError:
            return None
        [best, *_] = self.search(file, 1, include_self=True).hits or [None]
        return best.id if best is not None and best.sha256 == digest else None

    def search_words(
        self, text: str, k: int, label: str | None = None, *, query: dict | None = None
    ) -> Result:
        """Search with a text query (a CLIP or SigLIP collection)."""
        fields = {"text": text, "k": str(k)} | _fields(label, query)
        body = self._post("search", fields, {})
        if body.get("note"):
            warnings.warn(body["note"], stacklevel=2)  # as a local search warns
        return Result(Query.words(text), [_hit(h) for h in body["hits"]])

    def collection(self) -> str | None:
        """The collection the server searches (None if it does not answer)."""
        try:
            with urllib.request.urlopen(self.url + "health", timeout=self.timeout) as r:
                return json.load(r).get("collection")
        except (urllib.error.URLError, OSError, ValueError):
            return None

    def candidate_image(self, hit: Hit) -> Image.Image | None:
        return self._image(f"points/{hit.id}")

    def candidate_thumbnail(self, hit: Hit) -> Image.Image | None:
        """The server's small copy (what a --grid draws), made once on its side."""
        return self._image(f"points/{hit.id}", "thumbnail")

    def _image(self, what: str, kind: str = "image") -> Image.Image | None:
        try:
            with urllib.request.urlopen(f"{self.url}{what}/{kind}", timeout=self.timeout) as r:
                return open_image(r.read())
        except (urllib.error.URLError, OSError, BadImage):
            return None

    def _post(self, path: str, fields: dict, files: dict[str, bytes]) -> dict:
        boundary = uuid.uuid4().hex
        parts = []
        for name, values in fields.items():
            for value in values if isinstance(values, list) else [values]:
                parts.append(
                    f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'
                    f"{value}\r\n".encode()
                )
        for name, data in files.items():
            head = (
                f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; '
                f'filename="{name}"\r\nContent-Type: application/octet-stream\r\n\r\n'
            )
            parts.append(head.encode() + data + b"\r\n")
        parts.append(f"--{boundary}--\r\n".encode())
        request = urllib.request.Request(
            self.url + path,
            data=b"".join(parts),
            headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
        )
        return self._send(request)

    def _send(self, request: urllib.request.Request) -> dict:
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return json.load(response)
        except urllib.error.HTTPError as e:
            detail = _detail(e)
            if 400 <= e.code < 500:
                raise BadQuery(detail) from e
            raise StoreUnavailable(self.url, "search", detail, status=e.code) from e
        except (urllib.error.URLError, OSError) as e:
            raise StoreUnavailable(self.url, "search", str(e)) from e


def _fields(label: str | None, query: dict | None) -> dict:
    """The label and Searcher.options' arguments as the search form's fields."""
    fields = {"label": str(label)} if label is not None else {}
    for name, value in (query or {}).items():
        if value not in (None, (), []):
            fields[name] = list(value) if name == "where" else str(value)
    return fields


def _detail(error: urllib.error.HTTPError) -> str:
    try:
        detail = json.load(error).get("detail")
    except (ValueError, OSError, AttributeError):
        detail = None
    return detail if isinstance(detail, str) else f"HTTP {error.code}"


HIT_FIELDS = {f.name for f in dataclasses.fields(Hit)}


def _hit(d: dict) -> Hit:
    """A hit as a server sends it, without what only the web needs (its image URLs)."""
    return Hit(**{k: v for k, v in d.items() if k in HIT_FIELDS})
