"""The commands that keep a collection in step with its images: `ingest` (one sync), `watch`
(a sync at every change of a folder) and `serve --watch` (the same, inside the server).

Kept apart from `commands.py` so that a sync with nothing to embed never imports torch or
transformers: the model loads only once an image needs it.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import threading
from collections.abc import Iterator
from dataclasses import asdict, dataclass, replace

import click

from lookalike.cli.console import bar, quiet_transformers, say, warn
from lookalike.cli.environment import sleep_idle_threads
from lookalike.cli.errors import explain, skip_message
from lookalike.cli.output import change_line
from lookalike.cli.stores import (
    check_inputs,
    check_served,
    collection_for,
    recorded_dataset,
    recorded_meta,
    recorded_model,
)
from lookalike.defaults import DEFAULT_DATASET, DEFAULT_MAX_PIXELS, default_model
from lookalike.embed import ModelSettings
from lookalike.embed.memory import reuse_freed_memory
from lookalike.errors import (
    DatasetLoadError,
    IngestInterrupted,
    LookalikeError,
    StoreDamaged,
    StoreLocked,
    shown,
)
from lookalike.identity import locate_model
from lookalike.index import IndexSettings, SearchSettings
from lookalike.ingest import ingest
from lookalike.ingest.plan import MAX_INDEXED_FIELDS, PLAIN_KEY, Plan
from lookalike.ingest.watch import FolderWatch, exit_within
from lookalike.query import unnameable
from lookalike.records import IngestReport, Skipped
from lookalike.source import Source, load_source
from lookalike.store import Store, StoreConfig, connect
from lookalike.store.holders import holding
from lookalike.store.served import ServedStore
from lookalike.store.shared import SharedStore

# Above this, qdrant-client's local mode is slow (its own docs warn at 20k points).
LOCAL_MODE_POINTS = 20_000


@dataclass(frozen=True)
class DatasetSettings:
    """Which images to ingest."""

    dataset: str = DEFAULT_DATASET
    split: str = "train"
    limit: int | None = None
    seed: int = 42
    image_column: str | None = None
    label_column: str | None = None
    max_pixels: int = DEFAULT_MAX_PIXELS
    payload_columns: tuple[str, ...] | None = None  # None: every plain column
    exif: bool = True  # an image folder's EXIF fields (taken, camera, location...)
    # Where `dataset` came from: typed, or else the environment variable that set it (None:
    # the default). An existing collection's own dataset wins over one not typed.
    allow_empty: bool = False  # an image folder with no images: sync down to nothing
    dataset_typed: bool = True
    dataset_variable: str | None = None

    def for_collection(self, store: Store, collection: str) -> DatasetSettings:
        """These settings, with the collection's recorded dataset unless one was typed."""
        if self.dataset_typed:
            return self
        meta = recorded_meta(store, collection)
        dataset = recorded_dataset(meta, self.dataset, self.dataset_variable, collection)
        return replace(self, dataset=dataset, dataset_typed=True)

    def load(self) -> Source:
        return load_source(
            self.dataset,
            self.split,
            image_column=self.image_column,
            label_column=self.label_column,
            limit=self.limit,
            seed=self.seed,
            max_pixels=self.max_pixels,
            payload_columns=self.payload_columns,
            allow_empty=self.allow_empty,
            exif=self.exif,
        )


def plan_notes(plan: Plan) -> tuple[str, ...]:
    """What a user should hear about a sync's plan: renamed images that kept the fields of
    metadata rows still naming their old paths, fields left without a payload index."""
    notes = []
    if plan.kept_fields:
        moves = ", ".join(f"{shown(a)} -> {shown(b)}" for a, b in plan.kept_fields[:3])
        more = len(plan.kept_fields) - 3
        notes.append(
            f"{len(plan.kept_fields)} renamed images keep the fields of metadata rows that "
            f"still name their old paths ({moves}{f' and {more} more' if more > 0 else ''}): "
            "update file_name in the metadata file"
        )
    # (names no filter can name at all are said by the source, with their file and line)
    odd = [c for c in plan.unindexed if not PLAIN_KEY.match(c) and not unnameable(c)]
    if odd:
        notes.append(
            f"fields {', '.join(shown(c) for c in odd[:5])}{' ...' if len(odd) > 5 else ''} "
            "have names with spaces or punctuation, which get no payload index: filters on "
            "them read every payload"
        )
    capped = sum(1 for c in plan.unindexed if PLAIN_KEY.match(c))
    if capped:
        notes.append(
            f"{len(plan.payload_columns)} payload fields: the first {MAX_INDEXED_FIELDS} get a "
            f"payload index, the other {capped} none (filters on them read every payload); "
            "choose the fields to keep with --payload-columns"
        )
    return tuple(notes)


class _Notes:
    """Notes on stderr: each sync's, and under `watch` only when they change, not at every
    look."""

    def __init__(self) -> None:
        self.said: tuple[str, ...] = ()

    def __call__(self, notes: tuple[str, ...]) -> None:
        if notes != self.said:
            for note in notes:
                warn(note)
            self.said = notes


def migration_note(collection: str, plan: Plan) -> None:
    if plan.legacy:
        warn(
            f"collection {collection!r} was built by an older lookalike, whose points follow "
            f"rows rather than images: migrating its {plan.legacy} points (each image is "
            "embedded once more; the old points go once the new ones are stored)"
        )


class _Log:
    """Skipped images on stderr, and with --skipped-log as JSON lines as they come (so an
    interrupted run still has its log)."""

    def __init__(self, file) -> None:
        self.file = file

    def __call__(self, item: Skipped) -> None:
        item = replace(item, reason=skip_message(item.reason, item.kind))
        warn(f"skipped {shown(item.where())}: {item.reason}")
        if not self.file:
            return
        try:
            self.file.write(json.dumps(asdict(item)) + "\n")
            self.file.flush()
        except OSError as e:  # a full disk, say: what is stored stays stored
            raise click.ClickException(
                f"cannot write {shown(self.file.name)}: {e.strerror or e}; "
                "run the same command again to resume"
            ) from e


def _close_quietly(file) -> None:
    with contextlib.suppress(OSError):
        file.close()


class _Progress:
    """The progress bar of a sync, made once the model is ready to embed (when nothing needs
    embedding: no bar, and transformers is never imported)."""

    def __init__(self, stack: contextlib.ExitStack, collection: str, split: str, dry_run: bool):
        self.stack, self.collection, self.split, self.dry_run = stack, collection, split, dry_run
        self.bar = None

    def plan(self, plan: Plan) -> None:
        _Notes()(plan_notes(plan))
        if self.dry_run:
            return
        migration_note(self.collection, plan)
        if plan.embed:
            quiet_transformers()  # before the model loads

    def embedding(self, n: int) -> None:
        self.bar = self.stack.enter_context(bar(n, f"ingest {self.split}".strip()))

    def update(self, n: int) -> None:
        if self.bar is not None:
            self.bar.update(n)

    def indexing(self) -> None:
        if self.bar is not None:
            self.bar.set_description("building the search index")


def run_ingest(
    store_config: StoreConfig,
    collection: str | None,
    data: DatasetSettings,
    model_settings: ModelSettings,
    *,
    batch_size: int | None = None,
    workers: int | None = None,
    recreate: bool = False,
    resume: bool = True,
    keep_missing: bool = False,
    dry_run: bool = False,
    skipped_log: str | None = None,
    index: IndexSettings | None = None,
    relocate: bool = False,
    ray: str | None = None,
) -> IngestReport:
    """Sync `collection` (default: named after the dataset) with `data`, with the model asked
    for (default: the collection's, or default_model's for a new one). Where the dataset and the
    model are is checked, both at once, before anything is read or loaded. `ray`: embed on
    the Ray cluster at this address ("auto": $RAY_ADDRESS, else a Ray for this run)."""
    collection = collection or collection_for(data.dataset)
    with contextlib.ExitStack() as stack:
        store = _store_for(stack, store_config, collection, dry_run and not recreate)
        if not recreate:
            data = data.for_collection(store, collection)
        model_settings = _model_for(store, collection, model_settings, recreate, data.dataset)
        if dry_run and (recreate or not store.exists(collection)):
            say(f"would create collection {collection!r} with model {model_settings.model}")
        source = check_inputs(data.load, model_settings)
        _Notes()(source.notes)
        reuse_freed_memory()  # a batch command: keep each batch's memory for the next
        sleep_idle_threads()  # and leave the cores to the decoding threads between ops
        if not isinstance(store, ServedStore):  # the serve holds it, not this plan
            stack.enter_context(_holding(store_config, "ingest", collection))
        log = open(skipped_log, "w") if skipped_log else None  # noqa: SIM115 (closed below)
        if log:  # closed quietly: a log that could not be written has already been reported
            stack.callback(_close_quietly, log)
        # A plain folder (no split sub-folders) has no split worth naming on its bar.
        plain = os.path.isdir(data.dataset) and not os.path.isdir(
            os.path.join(data.dataset, data.split)
        )
        progress = _Progress(stack, collection, "" if plain else data.split, dry_run)
        stage = _ray_stage(stack, ray, store_config, model_settings, batch_size) if ray else None
        if stage is not None:  # the driver's copy only sizes the collection: the actors embed
            model_settings = replace(model_settings, device="cpu", compile=False)
        report = ingest(
            source,
            model_settings,
            store,
            collection,
            batch_size=batch_size,
            workers=workers,
            recreate=recreate,
            resume=resume,
            keep_missing=keep_missing,
            allow_empty=data.allow_empty,
            dry_run=dry_run,
            index=index,
            on_plan=progress.plan,
            on_embedding=progress.embedding,
            on_progress=progress.update,
            on_skip=_Log(log),
            on_indexing=progress.indexing,
            relocate=relocate,
            embed_stage=stage,
        )
        if not dry_run and store.engine == "local":
            _warn_if_large(store, collection)
        return report


def _store_for(
    stack: contextlib.ExitStack, store_config: StoreConfig, collection: str, plan_only: bool
) -> Store | ServedStore:
    """The store a sync reads and writes. A sync that only plans, on an embedded store a
    `serve` holds, reads the collection through the serve instead."""
    try:
        check_served(store_config, collection)
        store = stack.enter_context(connect(store_config))
        if plan_only and store.exists(collection):
            store.info(collection)  # a collection another process holds is found out here
        return store
    except StoreLocked as e:
        served = ServedStore.asked(e, store_config, collection) if plan_only else None
        if served is None:
            raise
        say(f"the collection is held by lookalike serve (pid {e.pid}): planning through it")
        return served


def _ray_stage(stack: contextlib.ExitStack, address: str, store_config, model_settings, batch):
    """The Ray embedding stage (lookalike.distributed); a Ray it starts stops with the run."""
    from lookalike.distributed import RayStage

    if address == "auto":
        address = os.environ.get("RAY_ADDRESS") or "local"
    stage = RayStage(model_settings, store_config, address, batch_size=batch)
    stack.callback(stage.close)
    return stage


def _model_for(
    store: Store, collection: str, settings: ModelSettings, recreate: bool, dataset: str
) -> ModelSettings:
    """The model to sync with: the one asked for, else the collection's, else the default
    for a new collection of `dataset` (or a damaged one that --recreate rebuilds)."""
    meta = None
    try:  # even with a model given: a collection another process holds is found out here
        meta = store.info(collection).meta if store.exists(collection) else None
    except StoreDamaged:
        if not recreate:
            raise
    if not recreate:
        settings = recorded_model(meta, settings, collection)
    if settings.model:
        return settings
    if meta is None:
        return replace(settings, model=default_model(dataset))
    where = None if store.config.url else store.config.path  # a moved model is looked for
    return replace(settings, model=locate_model(meta.model, meta.model_hash, where))


def _warn_if_large(store: Store, collection: str) -> None:
    if store.info(collection).points > LOCAL_MODE_POINTS:
        warn(
            f"{collection!r} is in a local-mode folder, which searches by brute force in "
            "Python (~0.1 s per query at 100k points): ingest into a new --qdrant-path "
            "(the edge engine, HNSW) or a server for collections this size"
        )


@dataclass(frozen=True)
class WatchSettings:
    """How a folder is watched: seconds between looks, and how long a file must have been
    left alone before it is embedded (a copy in progress keeps changing)."""

    interval: float = 2.0
    settle: float = 2.0
    keep_missing: bool = False


def _check_folder(data: DatasetSettings) -> None:
    if not os.path.isdir(data.dataset):
        raise DatasetLoadError(
            data.dataset,
            f"{data.dataset!r} is not a folder: only a folder of images can be watched",
            kind="missing",
        )


def _syncer(store, collection, data, model, settings: WatchSettings, stop, after=None, **kw):
    """One sync of the folder, with each change on stderr."""

    said, planned_said = _Notes(), _Notes()

    def planned(plan: Plan) -> None:
        migration_note(collection, plan)
        planned_said(plan_notes(plan))

    def sync() -> IngestReport:
        source = data.load()
        said(source.notes)
        report = ingest(
            source,
            model,
            store,
            collection,
            keep_missing=settings.keep_missing,
            allow_empty=data.allow_empty,
            settle=settings.settle,
            on_plan=planned,
            on_change=lambda change: say(change_line(change)),
            on_skip=_Log(None),
            stop=stop,
            **kw,
        )
        if after is not None:
            after(report)
        return report

    return sync


def run_watch(
    store_config: StoreConfig,
    collection: str | None,
    data: DatasetSettings,
    model_settings: ModelSettings,
    settings: WatchSettings,
    *,
    batch_size: int | None = None,
    workers: int | None = None,
    index: IndexSettings | None = None,
) -> None:
    """Sync `collection` with the folder now and at each change, until Ctrl-C (or SIGTERM).
    A first sync that fails is an error; a later one is reported and tried again."""
    collection = collection or collection_for(data.dataset)
    sleep_idle_threads()
    quiet_transformers()
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        with connect(store_config) as store, _holding(store_config, "watch", collection):
            data = data.for_collection(store, collection)
            _check_folder(data)
            sync = _syncer(
                store,
                collection,
                data,
                _model_for(store, collection, model_settings, False, data.dataset),
                settings,
                None,
                batch_size=batch_size,
                workers=workers,
                index=index,
            )
            watcher = FolderWatch(data.dataset, sync)
            watcher.round()
            say(f"watching {data.dataset} for {collection!r} (Ctrl-C stops)")
            watcher.run(threading.Event(), interval=settings.interval, on_error=_report_error)
    except (KeyboardInterrupt, IngestInterrupted) as e:
        if isinstance(e, IngestInterrupted) and not e.by_user:
            raise
        say(f"stopped watching {data.dataset}" + (f" ({e})" if str(e) else ""))
    finally:
        signal.signal(signal.SIGTERM, previous)


def _interrupt(*_) -> None:
    exit_within()  # stops cleanly first; never later than this, whatever is running
    raise KeyboardInterrupt


def _report_error(error: LookalikeError) -> None:
    if isinstance(error, IngestInterrupted) and error.by_user:
        raise error
    warn(f"{explain(error, 'watch')}; trying again at the folder's next change")


@contextlib.contextmanager
def serving_watched(
    store_config: StoreConfig,
    collection: str | None,
    model_settings: ModelSettings,
    params: SearchSettings | None,
    data: DatasetSettings,
    settings: WatchSettings,
    url: str | None = None,
) -> Iterator:
    """A Searcher for `serve --watch`: the collection (default: named after the folder)
    synced with the folder first (built from it if it does not exist), then kept in sync by
    a background thread. The server's threads and the sync share one store, one call at a
    time; the store records `url`, so a `search` finding the store held asks the server."""
    from lookalike.search.searcher import Searcher

    _check_folder(data)
    collection = collection or collection_for(data.dataset)
    quiet_transformers()
    stop = threading.Event()
    with connect(store_config) as opened, _holding(store_config, "serve", collection, url):
        store = SharedStore(opened)
        meta = recorded_meta(store, collection)
        model_settings = recorded_model(meta, model_settings, collection)
        if not store.exists(collection):
            model = model_settings.model or default_model(data.dataset)
            model = replace(model_settings, model=model)
            _syncer(store, collection, data, model, settings, stop)()
        searcher = Searcher(collection, store=store, settings=model_settings, params=params)
        sync = _syncer(
            store,
            collection,
            data,
            searcher.embedder,
            settings,
            stop,
            after=lambda report: searcher.refresh() if report.changed else None,
        )
        watcher = FolderWatch(data.dataset, sync)
        watcher.round()  # a wrong folder or model stops here, before serving
        thread = threading.Thread(
            target=watcher.run,
            args=(stop,),
            kwargs={"interval": settings.interval, "on_error": _warn_unless_stopping(stop)},
            name="lookalike-watch",
            daemon=True,
        )
        thread.start()
        try:
            yield searcher
        finally:
            stop.set()
            thread.join()


def _holding(store_config: StoreConfig, command: str, collection: str, url: str | None = None):
    """This process recorded as the embedded store's holder while it runs (`holders.py`)."""
    if store_config.url:
        return contextlib.nullcontext()
    return holding(store_config.path, command, collection, url)


SERVE_FLAGS = {"--watch", "--collection", "--qdrant-path", "--model", "--device"}


def _warn_unless_stopping(stop: threading.Event):
    def on_error(error: LookalikeError) -> None:
        if not stop.is_set():
            # advice naming a flag `serve` lacks (--dataset) would send the user nowhere
            said = explain(error, "serve", SERVE_FLAGS)
            warn(f"{said}; trying again at the folder's next change")

    return on_error
