"""HTTP API and web page: `lookalike serve`. The model and store are opened once per process."""

from __future__ import annotations

import contextlib
import io
import os
import uuid
from collections.abc import Sequence
from importlib import resources
from typing import Annotated

from fastapi import FastAPI, File, Form, HTTPException, UploadFile
from fastapi.responses import HTMLResponse, Response
from pydantic import BaseModel

from lookalike.cli.guards import Admission, BodyLimit, Busy, HostCheck
from lookalike.errors import BadImage, BadQuery
from lookalike.images import open_image
from lookalike.records import Hit, Query
from lookalike.search.batcher import DEFAULT_MAX_BATCH, QueryBatcher
from lookalike.search.searcher import MAX_K, SPLIT_ROW, Searcher

DEFAULT_MAX_UPLOAD = 10 * 1024 * 1024  # bytes
DEFAULT_MAX_UPLOAD_PIXELS = 40_000_000  # a 40 MP photo is large; more is an attack or a mistake
# Images decoded at once, and how many more requests may wait to be decoded or embedded (at
# most DEFAULT_WAIT_S to be decoded) before one is told to come back: bounds memory whatever
# the number of clients. A waiting query holds only its image at the model's size.
DEFAULT_DECODING = 2
DEFAULT_QUEUE = 64
DEFAULT_WAIT_S = 30.0
MULTIPART_SLACK = 64 * 1024  # form fields and boundaries around the image
BUSY = "busy with other images; try again in a few seconds"
RETRY_AFTER_S = 2


class SearchOut(BaseModel):
    """What `search --json` prints for one query: one definition of a result."""

    query: str  # "upload", the clicked point's id, or SPLIT:ROW
    query_label: int | None = None
    query_label_name: str | None = None
    excluded_self: bool = False  # the query is a stored image, left out of its own hits
    hits: list[Hit]


class HealthOut(BaseModel):
    status: str
    collection: str
    points: int
    model: str
    labels: list[str]


class ErrorOut(BaseModel):
    detail: str


ERRORS = {400: {"model": ErrorOut}, 413: {"model": ErrorOut}, 503: {"model": ErrorOut}}
IMAGE = {200: {"content": {"image/jpeg": {}}}, 404: {"model": ErrorOut}, 503: {"model": ErrorOut}}


def create_app(
    searcher: Searcher,
    *,
    max_upload: int = DEFAULT_MAX_UPLOAD,
    max_pixels: int = DEFAULT_MAX_UPLOAD_PIXELS,
    allowed_hosts: Sequence[str] = (),
    decoding: int = DEFAULT_DECODING,
    queue: int = DEFAULT_QUEUE,
    wait_s: float = DEFAULT_WAIT_S,
    max_batch: int = DEFAULT_MAX_BATCH,
) -> FastAPI:
    """The API over one open Searcher. FastAPI runs the handlers in its thread pool; they
    decode queries in the admission's threads and hand them to one inference thread, which
    embeds those that wait together (up to `max_batch`) and makes every store call (embedded
    Qdrant is not thread-safe). Host names other than localhost and IP addresses must be in
    `allowed_hosts`."""
    admission = Admission(decoding, queue, wait_s)
    batcher = QueryBatcher(searcher, max_batch=max_batch)
    static = resources.files("lookalike.cli").joinpath("static")
    page = static.joinpath("index.html").read_text()
    icon = static.joinpath("favicon.svg").read_bytes()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        admission.close()
        batcher.close()  # the requests are answered by now: uvicorn waits for them

    app = FastAPI(
        title="lookalike", description="Search images by looks.", version="1", lifespan=lifespan
    )
    app.state.admission, app.state.batcher = admission, batcher
    # Added last, runs first: a foreign Host is refused before its body is even read.
    app.add_middleware(BodyLimit, limit=max_upload + MULTIPART_SLACK, detail=_too_large(max_upload))
    app.add_middleware(HostCheck, names=tuple(allowed_hosts))

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def index() -> str:
        return page

    @app.get("/health", response_model=HealthOut)
    def health() -> HealthOut:
        points = batcher.call(lambda: searcher.store.info(searcher.collection).points)
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
        image: Annotated[
            UploadFile | None, File(description="The query image, any format PIL reads.")
        ] = None,
        point: Annotated[
            uuid.UUID | None, Form(description="Or: a stored point as the query.")
        ] = None,
        query: Annotated[
            str | None, Form(description="Or: SPLIT:ROW of the collection's dataset.")
        ] = None,
        path: Annotated[
            str | None,
            Form(description="The uploaded file's path, to recognise it among stored images."),
        ] = None,
        k: Annotated[int, Form(ge=1, le=MAX_K)] = 5,
        label: Annotated[str | None, Form(description="Only candidates with this label.")] = None,
        include_self: Annotated[
            bool, Form(description="Keep a stored query image as its own first hit.")
        ] = False,
    ) -> SearchOut:
        if sum(x is not None for x in (image, point, query)) != 1:
            raise HTTPException(400, "send one query: an image, a point or SPLIT:ROW")
        try:
            with admission.place():  # held until answered: bounds the queries waiting
                asked = admission.decode(_asked, image, point, query, path)
                [result] = batcher.search_queries(
                    [asked], k=k, label=label or None, include_self=include_self
                )
        except Busy:
            raise _busy() from None
        except BadQuery as e:
            raise HTTPException(400, str(e)) from e
        return SearchOut(**{**result.to_dict(), "hits": result.hits})

    def admitted(fn, *args):
        try:
            return admission.run(fn, *args)
        except Busy:
            raise _busy() from None

    def _asked(image, point, query, path) -> Query:
        """The query, decoded in a decoding slot; a stored one is found by the inference
        thread, which owns the store."""
        if image is not None:
            return _upload(image, path, max_upload, max_pixels)
        return batcher.call(_stored, searcher, point, query)

    @app.get("/rows/{split}/{row}/image", responses=IMAGE, response_class=Response)
    def row_image(split: str, row: int) -> Response:
        """A row of the collection's dataset (a SPLIT:ROW query's image)."""
        return Response(admitted(_row_jpeg, split, row), media_type="image/jpeg")

    def _row_jpeg(split: str, row: int) -> bytes:
        try:
            image = searcher.row_query(split, row).image
        except (BadQuery, BadImage) as e:
            raise HTTPException(404, str(e)) from e
        return _jpeg(image)

    @app.get("/favicon.svg", include_in_schema=False)
    def favicon() -> Response:
        return Response(icon, media_type="image/svg+xml")

    @app.get("/points/{point_id}/image", responses=IMAGE, response_class=Response)
    def point_image(point_id: uuid.UUID) -> Response:
        # The image is found from the stored payload; nothing in the request names a file.
        point = batcher.call(searcher.point, str(point_id))
        jpeg = admitted(_point_jpeg, point) if point else None  # a candidate may be a large photo
        if jpeg is None:
            raise HTTPException(404, f"no image for point {point_id}")
        return Response(jpeg, media_type="image/jpeg")

    def _point_jpeg(point) -> bytes | None:
        image = searcher.candidate_image(point)
        return None if image is None else _jpeg(image)

    return app


def _upload(image: UploadFile, path: str | None, max_upload: int, max_pixels: int) -> Query:
    """An uploaded query, judged by its content, never its name; `path` is only compared
    with stored paths (to recognise a stored image), never opened."""
    data = image.file.read(max_upload + 1)
    if len(data) > max_upload:
        raise HTTPException(413, _too_large(max_upload))
    try:
        decoded = open_image(data, max_pixels=max_pixels)
    except BadImage as e:
        raise HTTPException(400, f"upload: {e.reason}") from e
    return Query(os.path.basename(image.filename or "") or "upload", decoded, path=path)


def _stored(searcher: Searcher, point: uuid.UUID | None, query: str | None) -> Query:
    """A stored point, or SPLIT:ROW of the collection's dataset, as the query."""
    if point is not None:
        return searcher.point_query(str(point))
    match = SPLIT_ROW.match(query or "")
    if not match:
        raise BadQuery(f"query {query!r} is not SPLIT:ROW (e.g. test:17)", field="query")
    try:
        return searcher.row_query(match["split"], int(match["row"]))
    except BadImage as e:
        raise BadQuery(f"query {query!r}: {e.reason}", field="query") from e


def _jpeg(image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, "JPEG", quality=90)
    return buf.getvalue()


def _busy() -> HTTPException:
    return HTTPException(503, BUSY, headers={"Retry-After": str(RETRY_AFTER_S)})


def _too_large(limit: int) -> str:
    return f"upload larger than {limit // (1024 * 1024)} MiB; send a smaller image"
