"""The page's pictures and browsing, beside the search API (`serve`): each hit's image and
thumbnail URLs, GET /points/{id}/thumbnail, and GET /points, a paged view of the collection
(newest first when its images have a date taken, else by path) that takes the same filters as
a search, so a collection can be looked through before any query."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Sequence
from importlib import resources
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query
from fastapi.responses import HTMLResponse, Response
from pydantic import BaseModel, BeforeValidator, Field

from lookalike.cli.output import capitals_note
from lookalike.errors import BadQuery
from lookalike.records import SCORE_DIGITS, Hit, StoredPoint
from lookalike.search.searcher import Searcher
from lookalike.search.spellings import other_capitalisations
from lookalike.thumbnails import MEDIA_TYPE, Thumbnails

TAKEN = "taken"  # the date a photo was taken (from its EXIF), when the collection has it
MAX_PAGE = 200
SCROLL_PAGE = 1024
ORDER_TTL_S = 10.0  # a browsed order is reused for paging this long (a sync may change it)
IMMUTABLE = "public, max-age=31536000, immutable"
VERSION = 16  # hex digits of the content's sha256 in a thumbnail URL


class PictureOut(BaseModel):
    """A stored image as the API shows it: a search hit (with rank and score) or a browsed
    point. `image` (the original) and `thumbnail` are URLs relative to the API's root."""

    rank: int | None = None
    id: str
    score: float | None = None
    label: int | None = None
    label_name: str | None = None
    split: str | None = None
    row: int | None = None
    path: str | None = None
    sha256: str | None = None
    metadata: dict[str, Any] = {}
    image: str = Field(description="The original image: points/{id}/image")
    thumbnail: str = Field(description=f"A small copy (JPEG, {Thumbnails(None).side} px)")


def picture(point: StoredPoint | dict | PictureOut) -> PictureOut:
    """A Hit or StoredPoint with its image URLs, its score rounded."""
    if isinstance(point, PictureOut):
        return point
    d = point if isinstance(point, dict) else point.to_dict()
    d = {k: v for k, v in d.items() if k in PictureOut.model_fields}
    if d.get("score") is not None:
        d["score"] = round(float(d["score"]), SCORE_DIGITS)
    return PictureOut(**d, **urls(d["id"], d.get("sha256")))


def urls(point_id: str, sha256: str | None) -> dict[str, str]:
    """The original's and the thumbnail's URLs; the thumbnail's names its content's version,
    so a browser keeps it until the file changes."""
    version = f"?v={sha256[:VERSION]}" if sha256 else ""
    return {
        "image": f"points/{point_id}/image",
        "thumbnail": f"points/{point_id}/thumbnail{version}",
    }


def _pictures(hits: Sequence[Hit | StoredPoint | dict | PictureOut]) -> list[PictureOut]:
    return [picture(h) for h in hits]


# SearchOut's hits: each Hit given is shown with its URLs.
Pictures = Annotated[list[PictureOut], BeforeValidator(_pictures)]


class BrowseOut(BaseModel):
    """A page of the collection: `points[offset:offset+limit]` of `total` in `order`."""

    total: int
    offset: int
    limit: int
    order: str = Field(description='"taken" (newest first, undated last) or "path"')
    points: list[PictureOut]
    note: str | None = Field(
        default=None, description="No image matched: what the filter would match in other capitals"
    )


IMAGE = {200: {"content": {MEDIA_TYPE: {}}}, 404: {"description": "no such point or image"}}


def browse_router(
    searcher: Searcher,
    thumbnails: Thumbnails,
    on_store: Callable[..., Any],
    admitted: Callable[..., Any],
) -> APIRouter:
    """The routes, over the app's Searcher: `on_store(fn, *args)` runs fn on the thread that
    owns the store; `admitted(fn, *args)` decodes an image in one of the admission's slots."""
    router = APIRouter()
    orders = _Orders(searcher)
    docs = resources.files("lookalike.cli").joinpath("static").joinpath("docs.html").read_text()

    @router.get("/docs", response_class=HTMLResponse, include_in_schema=False)
    def api_docs() -> str:
        """The API's endpoints drawn from /openapi.json by the page itself: no CDN needed."""
        return docs

    @router.get("/points/{point_id}/thumbnail", responses=IMAGE, response_class=Response)
    def point_thumbnail(point_id: uuid.UUID, v: str | None = None) -> Response:
        """A small copy of a stored image (made once, kept beside the store)."""
        point = on_store(searcher.point, str(point_id))
        data = admitted(_thumbnail, point) if point else None
        if data is None:
            raise HTTPException(404, f"no image for point {point_id}")
        current = point.sha256 and v == point.sha256[:VERSION]
        headers = {"Cache-Control": IMMUTABLE if current else "no-cache"}
        if point.sha256:
            headers["ETag"] = f'"{point.sha256[:VERSION]}-{thumbnails.side}"'
        return Response(data, media_type=MEDIA_TYPE, headers=headers)

    def _thumbnail(point: StoredPoint) -> bytes | None:
        gallery = searcher.gallery  # replaced when the collection's metadata changes
        return thumbnails.jpeg(point.sha256, lambda side: gallery.image(point, side))

    @router.get("/points", response_model=BrowseOut, responses={400: {"description": "bad filter"}})
    def browse(
        offset: Annotated[int, Query(ge=0)] = 0,
        limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 24,
        label: Annotated[str | None, Query(description="Only images with this label.")] = None,
        where: Annotated[list[str], Query(description="FIELD=VALUE, FIELD>=X... (all hold)")] = [],  # noqa: B006
        filter: Annotated[str | None, Query(description="Qdrant filter JSON")] = None,  # noqa: A002
    ) -> BrowseOut:
        """The collection's images a page at a time, newest first when they have a date taken
        (else by path); `where`, `filter` and `label` keep only some, as in a search."""
        try:
            order, ids, points = on_store(orders.page, label, where, filter, offset, limit)
        except BadQuery as e:
            raise HTTPException(400, str(e)) from e
        note = on_store(_capitals, where) if not ids and where else None
        return BrowseOut(
            total=len(ids),
            offset=offset,
            limit=limit,
            order=order,
            points=_pictures(points),
            note=note,
        )

    def _capitals(where: list[str]) -> str | None:
        types = searcher.queries.types()
        found = other_capitalisations(searcher.store, searcher.collection, where, types)
        return "; ".join(capitals_note(item, others) for item, others in found) or None

    return router


class _Orders:
    """The browsing order of each filter, kept a few seconds so paging reads it once: every
    matching point's payload is read to sort them (Qdrant scrolls in id order)."""

    def __init__(self, searcher: Searcher) -> None:
        self.searcher = searcher
        self._kept: dict[str, tuple[float, str, list[str]]] = {}

    def page(self, label, where, filter, offset: int, limit: int):  # noqa: A002
        """On the store's thread: (order, every matching id in order, this page's points)."""
        s = self.searcher
        options = s.options(where=where, filter=filter).with_label(s.label_id(label))
        key = json.dumps([options.filter, s.collection], sort_keys=True, default=str)
        kept = self._kept.get(key)
        if kept is None or time.monotonic() - kept[0] > ORDER_TTL_S:
            order, ids = self._sorted(options.filter)
            kept = self._kept[key] = (time.monotonic(), order, ids)
            self._forget_old()
        _, order, ids = kept
        wanted = ids[offset : offset + limit]
        found = s.store.points(s.collection, wanted) if wanted else {}
        return order, ids, [found[i] for i in wanted if i in found]

    def _sorted(self, where: dict | None) -> tuple[str, list[str]]:
        s, points, offset = self.searcher, [], None
        while True:
            page, _, offset = s.store.scroll(s.collection, SCROLL_PAGE, offset, where=where)
            points += page
            if offset is None or not page:
                break
        dated = any(isinstance(p.metadata.get(TAKEN), str) for p in points)
        if dated:  # newest first; RFC 3339 strings sort as their dates do
            undated = sorted((p for p in points if not _taken(p)), key=_by_path)
            newest = sorted((p for p in points if _taken(p)), key=_taken, reverse=True)
            return TAKEN, [p.id for p in newest + undated]
        return "path", [p.id for p in sorted(points, key=_by_path)]

    def _forget_old(self) -> None:
        now = time.monotonic()
        for key in [k for k, v in self._kept.items() if now - v[0] > ORDER_TTL_S]:
            del self._kept[key]


def _taken(point: StoredPoint) -> str:
    value = point.metadata.get(TAKEN)
    return value if isinstance(value, str) else ""


def _by_path(point: StoredPoint) -> tuple:
    return (point.path or "", *point.order())
