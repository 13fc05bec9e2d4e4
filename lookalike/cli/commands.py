"""One function per command, wiring configuration into the library stages (search and serve
are in `searching.py`).

Lives at the edge with the CLI: it owns the progress bars and skip warnings on stderr, so the
stages below stay silent and testable. Each checks what needs no model (inputs, store,
collection) before a model loads, and imports torch only then.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from dataclasses import asdict, dataclass, replace

from tqdm import tqdm

from lookalike.cli.errors import skip_message
from lookalike.cli.grid import pair_row, render_grid
from lookalike.cli.output import plural
from lookalike.cli.stores import check_inputs, collection_for, open_store, quiet_transformers
from lookalike.defaults import DEFAULT_DATASET, DEFAULT_MAX_PIXELS, DEFAULT_MODEL
from lookalike.embed import ModelSettings
from lookalike.embed.settings import canonical_model_id
from lookalike.errors import BadQuery, ModelMismatch
from lookalike.index import IndexSettings, SearchSettings
from lookalike.ingest import ingest
from lookalike.records import CollectionInfo, EvalReport, IngestReport, Skipped
from lookalike.search.duplicates import DuplicateReport, find_duplicates
from lookalike.search.evaluate import NEAR_IDENTICAL, evaluate, near_duplicate_score
from lookalike.search.searcher import Gallery, Searcher
from lookalike.source import Source, load_source
from lookalike.store import Store, StoreConfig, connect
from lookalike.store.holders import holding
from lookalike.tune import TuneReport, TuneSettings


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


# Above this, qdrant-client's local mode is slow (its own docs warn at 20k points).
LOCAL_MODE_POINTS = 20_000


def warn(message: str) -> None:
    tqdm.write(f"warning: {message}", file=sys.stderr)


def note(message: str) -> None:
    """Something the user should know that is not a result (stderr: stdout is the results)."""
    tqdm.write(message, file=sys.stderr)


def wrote(path: str, what: str) -> None:
    """Say where a picture went."""
    note(f"wrote {what} to {os.path.abspath(path)}")


def _bar(total: int, desc: str) -> tqdm:
    return tqdm(total=total, desc=desc, unit="img", file=sys.stderr, dynamic_ncols=True)


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
    skipped_log: str | None = None,
    index: IndexSettings | None = None,
) -> IngestReport:
    """Ingest `data` into `collection` (default: named after the dataset) with the model asked
    for (default: the collection's, or DEFAULT_MODEL for a new one)."""
    collection = collection or collection_for(data.dataset)
    with contextlib.ExitStack() as stack:
        store = stack.enter_context(connect(store_config))
        source, model_settings = _ingest_inputs(store, collection, data, model_settings, recreate)
        if not store_config.url:
            stack.enter_context(holding(store_config.path, "ingest", collection))
        quiet_transformers()
        embedder = model_settings.load()
        skip = stack.enter_context(_skip_reporter(data.split, skipped_log))
        bar = stack.enter_context(_bar(len(source), f"ingest {data.split}"))
        report = ingest(
            source,
            embedder,
            store,
            collection,
            batch_size=batch_size,
            workers=workers,
            recreate=recreate,
            resume=resume,
            index=index,
            on_progress=bar.update,
            on_skip=skip,
            on_indexing=lambda: bar.set_description("building the search index"),
        )
        if store.engine == "local" and store.info(collection).points > LOCAL_MODE_POINTS:
            warn(
                f"{collection!r} is in a local-mode folder, which searches by brute force in "
                "Python (~0.1 s per query at 100k points): ingest into a new --qdrant-path "
                "(the edge engine, HNSW) or a server for collections this size"
            )
        return report


def _ingest_inputs(
    store: Store, collection: str, data: DatasetSettings, model: ModelSettings, recreate: bool
) -> tuple[Source, ModelSettings]:
    """The source and the model to ingest with, checked before the model loads: both inputs'
    whereabouts at once, then that the collection holds this dataset and model."""
    meta = None
    if store.exists(collection):
        meta = store.info(collection).meta  # also where a locked collection is found out
        if meta is None and not recreate:
            raise ModelMismatch(collection, "foreign")
    model = replace(model, model=model.model or (meta.model if meta else DEFAULT_MODEL))
    source = check_inputs(
        lambda: load_source(
            data.dataset,
            data.split,
            image_column=data.image_column,
            label_column=data.label_column,
            limit=data.limit,
            seed=data.seed,
            max_pixels=data.max_pixels,
        ),
        model,
    )
    if meta is None or recreate:
        return source, model
    if meta.dataset != source.name:
        raise ModelMismatch(collection, "dataset", meta.dataset, source.name)
    if canonical_model_id(model.model) != meta.model:
        wanted = canonical_model_id(model.model)
        raise ModelMismatch(collection, "model", repr(meta.model), repr(wanted))
    return source, model


@contextlib.contextmanager
def _skip_reporter(split: str, skipped_log: str | None):
    """A callback for skipped images: a warning each, and a JSON line in `skipped_log`."""
    with open(skipped_log, "w") if skipped_log else contextlib.nullcontext() as log:

        def skip(item: Skipped) -> None:
            item = replace(item, reason=skip_message(item.reason, item.kind))
            where = f" ({item.path})" if item.path else ""
            warn(f"skipped {split}:{item.row}{where}: {item.reason}")
            if log:  # written as they come, so an interrupted run still has its log
                log.write(json.dumps(asdict(item)) + "\n")
                log.flush()

        yield skip


def run_eval(
    store_config: StoreConfig,
    collection: str | None,
    model_settings: ModelSettings,
    *,
    split: str = "test",
    k: int = 5,
    batch_size: int | None = None,
    workers: int | None = None,
    near_duplicates: int = 0,
    recall: bool = False,
    params: SearchSettings | None = None,
) -> EvalReport:
    with open_store(store_config, "eval", collection) as (store, collection):
        searcher = Searcher(collection, store=store, settings=model_settings, params=params)
        source = searcher.source(split)  # a split the dataset lacks: said before the model
        if source.label_column is None:
            raise BadQuery(
                f"split {split!r} has no label column, so there is nothing to score",
                field="split",
            )
        quiet_transformers()
        searcher.embedder  # noqa: B018 - loaded here, so the bar measures eval alone
        with _bar(len(source), f"eval {split}") as bar:
            report = evaluate(
                searcher,
                split,
                k=k,
                batch_size=batch_size,
                workers=workers,
                recall=recall,
                on_progress=bar.update,
            )
        if near_duplicates:
            with _bar(min(near_duplicates, searcher.info.points), "near-duplicates") as bar:
                score = near_duplicate_score(searcher, near_duplicates, on_progress=bar.update)
            report = replace(report, near_duplicate_top1=score)
    if report.near_identical_queries:
        warn(
            f"{report.near_identical_queries} of {report.queries} {split} queries have a "
            f"near-identical image in the collection (cosine >= {NEAR_IDENTICAL}): the same "
            "picture on both sides (leakage) inflates these numbers"
        )
    return report


def run_tune(
    store_config: StoreConfig,
    collection: str | None,
    model_settings: ModelSettings,
    *,
    output: str,
    dataset: str | None,
    splits: tuple[str, str, str | None],
    settings: TuneSettings,
) -> TuneReport:
    """Tune the settings' model (default: the collection's) on `dataset` (default: the
    collection's)."""
    if model_settings.model is None or dataset is None:
        with open_store(store_config, "tune", collection) as (store, collection):
            meta = store.info(collection).meta
        if meta is None:
            raise ModelMismatch(collection, "foreign")
        model_settings = replace(model_settings, model=model_settings.model or meta.model)
        dataset = dataset or meta.dataset
    train, val, test = check_inputs(
        lambda: [load_source(dataset, s) if s else None for s in splits], model_settings
    )
    quiet_transformers()
    from lookalike.tune import tune  # torch loads here

    total = settings.epochs * len(train)
    with _bar(total, f"tune on {train.split}") as bar:

        def epoch_done(epoch: int, precision_at_k: float) -> None:
            tqdm.write(
                f"epoch {epoch}: {val.split} precision@{settings.k} {precision_at_k:.4f}",
                file=sys.stderr,
            )

        return tune(
            model_settings,
            train,
            val,
            output,
            settings,
            test=test,
            on_step=bar.update,
            on_epoch=epoch_done,
        )


def run_duplicates(
    store_config: StoreConfig,
    collection: str | None,
    *,
    threshold: float,
    neighbours: int = 3,
    grid: str | None = None,
    grid_pairs: int = 12,
) -> DuplicateReport:
    """Near-duplicate pairs and groups; with `grid`, a picture of the best pairs."""
    with open_store(store_config, "duplicates", collection) as (store, collection):
        report = find_duplicates(store, collection, threshold=threshold, neighbours=neighbours)
        meta = store.info(collection).meta
    if grid and report.pairs and meta:
        gallery = Gallery(meta)
        pairs = report.pairs[:grid_pairs]
        rows = [pair_row(p, gallery.image(p.a), gallery.image(p.b)) for p in pairs]
        render_grid(rows).save(grid)
        wrote(grid, f"the best {len(pairs)} of {plural(len(report.pairs), 'pair')}")
    return report


def collection_info(store_config: StoreConfig, collection: str | None) -> CollectionInfo:
    with open_store(store_config, "info", collection) as (store, collection):
        return store.info(collection)
