"""HTTP API and web page: `lookalike serve`. The model and store are opened once per process."""

from __future__ import annotations

import contextlib
import io
import threading
import uuid
from collections.abc import Sequence
from importlib import resources
from typing import Annotated

from fastapi import FastAPI, File, Form, HTTPException, UploadFile
from fastapi.responses import HTMLResponse, Response
from pydantic import BaseModel

from lookalike.cli.guards import Admission, BodyLimit, Busy, HostCheck
from lookalike.errors import BadImage, BadQuery
from lookalike.records import Hit
from lookalike.search.searcher import MAX_K, Searcher

DEFAULT_MAX_UPLOAD = 10 * 1024 * 1024  # bytes
DEFAULT_MAX_UPLOAD_PIXELS = 40_000_000  # a 40 MP photo is large; more is an attack or a mistake
# Images decoded and embedded at once, and how many more may wait (and for how long) before a
# request is told to come back: bounds memory whatever the number of clients.
DEFAULT_DECODING = 2
DEFAULT_QUEUE = 16
DEFAULT_WAIT_S = 30.0
MULTIPART_SLACK = 64 * 1024  # form fields and boundaries around the image
BUSY = "busy with other images; try again in a few seconds"
RETRY_AFTER_S = 2


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


ERRORS = {400: {"model": ErrorOut}, 413: {"model": ErrorOut}, 503: {"model": ErrorOut}}


def create_app(
    searcher: Searcher,
    *,
    max_upload: int = DEFAULT_MAX_UPLOAD,
    max_pixels: int = DEFAULT_MAX_UPLOAD_PIXELS,
    allowed_hosts: Sequence[str] = (),
    decoding: int = DEFAULT_DECODING,
    queue: int = DEFAULT_QUEUE,
    wait_s: float = DEFAULT_WAIT_S,
) -> FastAPI:
    """The API over one open Searcher. Store access is serialised (embedded Qdrant is not
    thread-safe); FastAPI runs the handlers in its thread pool. Host names other than
    localhost and IP addresses must be in `allowed_hosts`."""
    lock = threading.Lock()
    admission = Admission(decoding, queue, wait_s)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        admission.close()

    app = FastAPI(
        title="lookalike", description="Search images by looks.", version="1", lifespan=lifespan
    )
    app.state.admission = admission
    page = resources.files("lookalike.cli").joinpath("static/index.html").read_text()
    # Added last, runs first: a foreign Host is refused before its body is even read.
    app.add_middleware(BodyLimit, limit=max_upload + MULTIPART_SLACK, detail=_too_large(max_upload))
    app.add_middleware(HostCheck, names=tuple(allowed_hosts))

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
        return SearchOut(hits=admitted(_search, image, k, label))

    def admitted(fn, *args):
        try:
            return admission.run(fn, *args)
        except Busy:
            raise HTTPException(503, BUSY, headers={"Retry-After": str(RETRY_AFTER_S)}) from None

    def _search(image: UploadFile, k: int, label: str | None) -> list[Hit]:
        data = image.file.read(max_upload + 1)
        if len(data) > max_upload:
            raise HTTPException(413, _too_large(max_upload))
        try:
            query = searcher.open_image(data, max_pixels=max_pixels)
        except BadImage as e:
            # Judged by content: the file name and content type are never trusted.
            raise HTTPException(400, f"upload: {e.reason}") from e
        del data  # the decoded image is all that is needed now
        try:
            with lock:
                return searcher.search(query, k=k, label=label or None)
        except BadQuery as e:
            raise HTTPException(400, str(e)) from e

    @app.get(
        "/points/{point_id}/image",
        responses={
            200: {"content": {"image/jpeg": {}}},
            404: {"model": ErrorOut},
            503: {"model": ErrorOut},
        },
        response_class=Response,
    )
    def point_image(point_id: uuid.UUID) -> Response:
        # The image is found from the stored payload; nothing in the request names a file.
        with lock:
            point = searcher.point(str(point_id))
        jpeg = admitted(_jpeg, point) if point else None  # a candidate may be a large photo
        if jpeg is None:
            raise HTTPException(404, f"no image for point {point_id}")
        return Response(jpeg, media_type="image/jpeg")

    def _jpeg(point) -> bytes | None:
        image = searcher.candidate_image(point)
        if image is None:
            return None
        buf = io.BytesIO()
        image.save(buf, "JPEG", quality=90)
        return buf.getvalue()

    return app


def _too_large(limit: int) -> str:
    return f"upload larger than {limit // (1024 * 1024)} MiB; send a smaller image"
