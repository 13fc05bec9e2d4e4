"""HTTP API and web page: `lookalike serve`. The model and store are opened once per process."""

from __future__ import annotations

import contextlib
import io
import os
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from importlib import resources
from typing import Annotated, Any, Literal

from fastapi import FastAPI, File, Form, HTTPException, UploadFile
from fastapi.responses import HTMLResponse, JSONResponse, Response
from pydantic import BaseModel, Field

from lookalike.cli.browse import Pictures, browse_router
from lookalike.cli.guards import (
    Admission,
    BodyLimit,
    Busy,
    HostCheck,
    JsonLimit,
    SameOrigin,
    header_timeout_protocol,
)
from lookalike.cli.local_routes import local_router
from lookalike.errors import BadImage, BadQuery, QueryTimeout, TextTruncated
from lookalike.ingest.watch import exit_within
from lookalike.query import DEFAULT_STRATEGY, PointId, QueryOptions
from lookalike.records import Query, Result
from lookalike.search.batcher import DEFAULT_BUDGET_S, DEFAULT_MAX_BATCH, QueryBatcher
from lookalike.search.searcher import MAX_K, SPLIT_ROW, Searcher
from lookalike.thumbnails import Thumbnails

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
MAX_EXAMPLES = 64  # examples in one recommend request
MAX_TEXT = 1000  # characters of a text query: CLIP reads 77 tokens, SigLIP 64
HEALTH_EVERY_S = 1.0  # how stale /health's point count and fields may be
TOO_LONG = "; ask for fewer results (a smaller k) or narrow it with a filter"


class SearchOut(BaseModel):
    """What `search --json` prints for one query: one definition of a result."""

    query: str  # "upload", a point's id, SPLIT:ROW, "recommend", or a text query's words
    kind: str = "image"  # or "text"
    query_label: int | None = None
    query_label_name: str | None = None
    excluded_self: bool = False  # the query is a stored image, left out of its own hits
    hits: Pictures  # each with its image's and thumbnail's URLs
    note: str | None = None  # a text query longer than the model reads: what was left out


class HealthOut(BaseModel):
    status: str  # "ok", or "busy" while a query runs past its time budget
    collection: str
    points: int
    model: str
    labels: list[str]
    fields: dict[str, str] = {}  # payload fields a filter may name, and their types
    text: bool = False  # whether the collection takes text queries (CLIP, SigLIP)


class RecommendIn(BaseModel):
    """More like the `positive` points, less like the `negative` ones (stored point ids)."""

    positive: list[uuid.UUID] = Field(min_length=1, max_length=MAX_EXAMPLES)
    negative: list[uuid.UUID] = Field(default=[], max_length=MAX_EXAMPLES)
    strategy: Literal["best_score", "average_vector", "sum_scores"] = DEFAULT_STRATEGY
    k: int = Field(default=5, ge=1, le=MAX_K)
    label: str | None = None
    where: list[str] = Field(default=[], description="FIELD=VALUE, FIELD>=X... (all hold)")
    filter: dict[str, Any] | None = Field(default=None, description="Qdrant filter JSON")
    min_score: float | None = None
    group_by: str | None = None
    near: str | None = Field(default=None, description="LAT,LON: only photos near it")
    within: str | None = Field(default=None, description="With near: a distance, e.g. 5km")


class ErrorOut(BaseModel):
    detail: str


ERRORS = {
    400: {"model": ErrorOut},
    413: {"model": ErrorOut},
    503: {"model": ErrorOut},
    504: {"model": ErrorOut},
}
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
    thumbnails: Thumbnails | None = None,
    budget_s: float = DEFAULT_BUDGET_S,
) -> FastAPI:
    """The API over one open Searcher. FastAPI runs the handlers in its thread pool; they
    decode queries in the admission's threads and hand them to one inference thread, which
    embeds those that wait together (up to `max_batch`) and makes every store call (embedded
    Qdrant is not thread-safe). Host names other than localhost and IP addresses must be in
    `allowed_hosts`. `thumbnails`: where the page's small copies are kept (default: made
    each time). A query gets `budget_s` on the inference thread; past it, HTTP 504."""
    admission = Admission(decoding, queue, wait_s)
    batcher = QueryBatcher(searcher, max_batch=max_batch, budget_s=budget_s)
    state = HealthState(searcher, batcher)
    static = resources.files("lookalike.cli").joinpath("static")
    page = static.joinpath("index.html").read_text()
    icon = static.joinpath("favicon.svg").read_bytes()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        admission.close()
        # uvicorn has waited (a bounded time) for the requests; a query that will not end
        # is not waited for: the inference thread is a daemon.
        batcher.close(timeout=GRACE_CLOSE_S)

    app = FastAPI(
        title="lookalike",
        description="Search images by looks.",
        version="1",
        lifespan=lifespan,
        docs_url=None,  # Swagger UI comes from a CDN, blank offline: browse.py serves /docs
        redoc_url=None,
    )
    app.state.admission, app.state.batcher = admission, batcher

    @app.exception_handler(QueryTimeout)
    def _timeout(request, error: QueryTimeout) -> JSONResponse:
        return JSONResponse({"detail": f"{error}{TOO_LONG}"}, 504)

    # Added last, runs first: a foreign Host is refused before its body is even read.
    app.add_middleware(JsonLimit)
    app.add_middleware(BodyLimit, limit=max_upload + MULTIPART_SLACK, detail=_too_large(max_upload))
    app.add_middleware(SameOrigin)
    app.add_middleware(HostCheck, names=tuple(allowed_hosts))

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def index() -> str:
        return page

    @app.get("/health", response_model=HealthOut)
    async def health() -> HealthOut:  # on the event loop: no thread to wait for, no store
        """Answered from what the inference thread last recorded: never waits behind a query."""
        points, fields = state.read()
        meta = searcher.meta
        return HealthOut(
            status="busy" if batcher.overrun_s() > 0 else "ok",
            collection=searcher.collection,
            points=points,
            model=shown_model(meta.model),
            labels=list(meta.label_names),
            fields=fields,
            text=searcher.text_queries,
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
        where: Annotated[list[str], Form(description="FIELD=VALUE, FIELD>=X... (all hold)")] = [],  # noqa: B006
        filter: Annotated[str | None, Form(description="Qdrant filter JSON")] = None,  # noqa: A002
        min_score: Annotated[float | None, Form(description="Drop weaker hits")] = None,
        group_by: Annotated[str | None, Form(description="One hit per value")] = None,
        near: Annotated[str | None, Form(description="LAT,LON: only photos near it")] = None,
        within: Annotated[str | None, Form(description="With near: a distance (5km)")] = None,
        include_self: Annotated[
            bool, Form(description="Keep a stored query image as its own first hit.")
        ] = False,
        text: Annotated[
            str | None,
            Form(
                max_length=MAX_TEXT,
                description="Or: words to find images by (a collection built with a CLIP or "
                "SigLIP model).",
            ),
        ] = None,
    ) -> SearchOut | Response:
        if sum(x is not None for x in (image, point, query, text)) != 1:
            raise HTTPException(400, "send one query: an image, a point, SPLIT:ROW or a text")
        options = {"where": where, "filter": filter, "min_score": min_score, "group_by": group_by}
        options |= {"near": near, "within": within}
        try:
            with admission.place():  # held until answered: bounds the queries waiting
                chosen = _options(options)
                if text is not None:
                    return batcher.call(_search_text, text, k, label, chosen)
                asked = admission.decode(_asked, image, point, query, path)
                [result] = batcher.search_queries(
                    [asked], k=k, label=label or None, include_self=include_self, options=chosen
                )
        except Busy:
            raise _busy() from None
        except BadQuery as e:
            raise HTTPException(400, str(e)) from e
        # Rendered here, once: returned as a model, FastAPI would validate it over again.
        out = SearchOut(**result.to_dict())  # its hits as dicts: converted once, not twice
        return Response(out.model_dump_json(), media_type="application/json")

    @app.post("/recommend", response_model=SearchOut, responses=ERRORS)
    def recommend(body: RecommendIn) -> SearchOut:
        """Candidates like the positive points and unlike the negative ones (never those)."""
        options = body.model_dump(
            include={"where", "filter", "min_score", "group_by", "near", "within"}
        )
        examples = (
            [PointId(i) for i in body.positive],  # ids only: never a server file
            [PointId(i) for i in body.negative],
        )
        try:
            with admission.place():  # the same bound on waiting work as /search
                hits = batcher.call(
                    lambda: searcher.recommend(
                        *examples,
                        k=body.k,
                        strategy=body.strategy,
                        label=body.label or None,
                        options=searcher.options(**options),
                    )
                )
        except Busy:
            raise _busy() from None
        except BadQuery as e:
            raise HTTPException(400, str(e)) from e
        return SearchOut(query="recommend", hits=hits)

    def admitted(fn, *args):
        try:
            return admission.run(fn, *args)
        except Busy:
            raise _busy() from None

    def _options(options: dict) -> QueryOptions:
        """Options naming fields are checked on the inference thread (it owns the store);
        others need no store, and the query joins a batch at once."""
        if not any(options.get(name) for name in ("where", "filter", "group_by", "near")):
            return searcher.options(**options)
        return batcher.call(lambda: searcher.options(**options))

    def _asked(image, point, query, path) -> Query:
        """The query, decoded in a decoding slot; a stored one is found by the inference
        thread, which owns the store."""
        if image is not None:
            return _upload(searcher, image, path, max_upload, max_pixels)
        return batcher.call(_stored, searcher, point, query)

    def _search_text(text: str, k: int, label: str | None, options: QueryOptions) -> SearchOut:
        """A text query, on the inference thread (the text tower is the same model)."""
        label_id = searcher.label_id(label or None)
        vectors, [prompt] = searcher.text_vectors([text])  # NoTextTower: an image-only model
        hits = searcher.search_vectors(vectors, k=k, label=label_id, options=options)[0]
        note = TextTruncated(text, prompt.tokens, prompt.limit) if prompt.truncated else None
        result = Result(Query.words(text), hits)
        return SearchOut(**{**result.to_dict(), "hits": hits, "note": note and str(note)})

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

    @contextlib.contextmanager
    def placed():
        try:
            with admission.place():
                yield
        except Busy:
            raise _busy() from None

    # Thumbnails and browsing: GET /points/{id}/thumbnail, GET /points.
    pictures = thumbnails or Thumbnails(None)
    app.include_router(browse_router(searcher, pictures, batcher.call, admitted))
    # For commands on this machine while serve holds the store: GET /collection(/tracked).
    app.include_router(local_router(searcher, batcher.call, placed))

    return app


GRACE_CLOSE_S = 2.0  # how long shutting down waits for the inference thread
STOP_REQUESTS_S = 3  # how long shutting down waits for requests being answered


class HealthState:
    """What /health tells, kept off the inference thread: the point count and fields as the
    inference thread last read them, refreshed there (not waited for) when older than
    HEALTH_EVERY_S."""

    def __init__(self, searcher: Searcher, batcher: QueryBatcher) -> None:
        self.searcher, self.batcher = searcher, batcher
        self._lock = threading.Lock()
        self._value = batcher.call(self._measure)  # at start-up, before any request
        self._stamp, self._pending = time.monotonic(), False

    def _measure(self) -> tuple[int, dict[str, str]]:
        s = self.searcher
        return s.store.info(s.collection).points, s.queries.types()

    def read(self) -> tuple[int, dict[str, str]]:
        with self._lock:
            stale = time.monotonic() - self._stamp > HEALTH_EVERY_S
            if stale and not self._pending:
                self._pending = True
                with contextlib.suppress(RuntimeError):  # closing: nothing to refresh
                    self.batcher.post(self._measure).add_done_callback(self._measured)
            return self._value

    def _measured(self, future) -> None:
        with self._lock:
            self._pending = False
            if not future.cancelled() and future.exception() is None:
                self._value, self._stamp = future.result(), time.monotonic()


def shown_model(model: str) -> str:
    """The model as /health names it: a hub id as it is, a local folder by its name only (the
    server's paths are nobody else's business)."""
    return os.path.basename(model.rstrip(os.sep)) if os.path.isabs(model) else model


def run_app(app: FastAPI, host: str, port: int, on_listening: Callable[[], None]) -> None:
    """Serve `app` until stopped; `on_listening` once it listens (not before: a client waiting
    for the word, such as a `search` that finds the store held, is never refused)."""
    import uvicorn

    class Server(uvicorn.Server):
        async def startup(self, sockets=None) -> None:
            await super().startup(sockets)
            if self.started:
                on_listening()

        def handle_exit(self, sig, frame) -> None:
            if not self.should_exit:  # the first SIGTERM or Ctrl-C
                exit_within()
            super().handle_exit(sig, frame)

    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level="warning",
        timeout_graceful_shutdown=STOP_REQUESTS_S,
        http=header_timeout_protocol(),
    )
    Server(config).run()


def _upload(
    searcher: Searcher, image: UploadFile, path: str | None, max_upload: int, max_pixels: int
) -> Query:
    """An uploaded query, judged by its content, never its name; `path` is only compared
    with stored paths (to recognise a stored image), never opened."""
    data = image.file.read(max_upload + 1)
    if len(data) > max_upload:
        raise HTTPException(413, _too_large(max_upload))
    try:
        decoded = searcher.open_image(data, max_pixels=max_pixels)
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
