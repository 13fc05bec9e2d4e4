"""HTTP API and web page: `lookalike serve`. The model and store are opened once per process."""

from __future__ import annotations

import io
import threading
import uuid
from importlib import resources
from typing import Annotated

from fastapi import FastAPI, File, Form, HTTPException, Request, UploadFile
from fastapi.responses import HTMLResponse, JSONResponse, Response
from pydantic import BaseModel

from lookalike.errors import BadImage, BadQuery
from lookalike.records import Hit
from lookalike.search.searcher import MAX_K, Searcher

DEFAULT_MAX_UPLOAD = 10 * 1024 * 1024  # bytes
DEFAULT_MAX_UPLOAD_PIXELS = 40_000_000  # a 40 MP photo is large; more is an attack or a mistake


class SearchOut(BaseModel):
    hits: list[Hit]  # the dataclass search --json prints: one definition of a hit


class HealthOut(BaseModel):
    status: str
    collection: str
    points: int
    model: str
    labels: list[str]


class ErrorOut(BaseModel):
    detail: str


ERRORS = {400: {"model": ErrorOut}, 413: {"model": ErrorOut}}


def create_app(
    searcher: Searcher,
    *,
    max_upload: int = DEFAULT_MAX_UPLOAD,
    max_pixels: int = DEFAULT_MAX_UPLOAD_PIXELS,
) -> FastAPI:
    """The API over one open Searcher. Store access is serialised (embedded Qdrant is not
    thread-safe); FastAPI runs the handlers in its thread pool."""
    app = FastAPI(title="lookalike", description="Search images by looks.", version="1")
    lock = threading.Lock()
    page = resources.files("lookalike.cli").joinpath("static/index.html").read_text()

    @app.middleware("http")
    async def refuse_large_bodies(request: Request, call_next):
        # Refuse before the body is read, so a huge upload costs nothing.
        size = request.headers.get("content-length")
        if size and size.isdigit() and int(size) > max_upload + 64 * 1024:
            return JSONResponse({"detail": _too_large(max_upload)}, status_code=413)
        return await call_next(request)

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def index() -> str:
        return page

    @app.get("/health", response_model=HealthOut)
    def health() -> HealthOut:
        with lock:
            points = searcher.store.info(searcher.collection).points
        meta = searcher.meta
        return HealthOut(
            status="ok",
            collection=searcher.collection,
            points=points,
            model=meta.model,
            labels=list(meta.label_names),
        )

    @app.post("/search", response_model=SearchOut, responses=ERRORS)
    def search(
        image: Annotated[UploadFile, File(description="The query image, any format PIL reads.")],
        k: Annotated[int, Form(ge=1, le=MAX_K)] = 5,
        label: Annotated[str | None, Form(description="Only candidates with this label.")] = None,
    ) -> SearchOut:
        data = image.file.read(max_upload + 1)
        if len(data) > max_upload:
            raise HTTPException(413, _too_large(max_upload))
        try:
            query = searcher.open_image(data, max_pixels=max_pixels)
        except BadImage as e:
            # Judged by content: the file name and content type are never trusted.
            raise HTTPException(400, f"upload: {e.reason}") from e
        try:
            with lock:
                hits = searcher.search(query, k=k, label=label or None)
        except BadQuery as e:
            raise HTTPException(400, str(e)) from e
        return SearchOut(hits=hits)

    @app.get(
        "/points/{point_id}/image",
        responses={200: {"content": {"image/jpeg": {}}}, 404: {"model": ErrorOut}},
        response_class=Response,
    )
    def point_image(point_id: uuid.UUID) -> Response:
        # The image is found from the stored payload; nothing in the request names a file.
        with lock:
            point = searcher.point(str(point_id))
        image = searcher.candidate_image(point) if point else None
        if image is None:
            raise HTTPException(404, f"no image for point {point_id}")
        buf = io.BytesIO()
        image.save(buf, "JPEG", quality=90)
        return Response(buf.getvalue(), media_type="image/jpeg")

    return app


def _too_large(limit: int) -> str:
    return f"upload larger than {limit // (1024 * 1024)} MiB; send a smaller image"
