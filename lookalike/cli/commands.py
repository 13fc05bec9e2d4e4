"""One function per command, wiring configuration into the library stages (search and serve
are in `searching.py`).

Lives at the edge with the CLI: it owns the progress bars and skip warnings on stderr, so the
stages below stay silent and testable. Each checks what needs no model (inputs, store,
collection) before a model loads, and imports torch only then.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from lookalike.cli.console import bar as _bar
from lookalike.cli.console import quiet_transformers, say, warn, wrote
from lookalike.cli.environment import sleep_idle_threads
from lookalike.cli.grid import pair_images, pair_row, render_grid, save_grid, thumbnails_of
from lookalike.cli.output import plural
from lookalike.cli.stores import (
    check_inputs,
    collection_model,
    described,
    open_store,
    recorded_dataset,
    recorded_model,
)
from lookalike.embed import ModelSettings
from lookalike.embed.memory import reuse_freed_memory
from lookalike.errors import (
    BadQuery,
    CollectionNotFound,
    DatasetLoadError,
    ModelMismatch,
    StoreLocked,
)
from lookalike.index import SearchSettings
from lookalike.records import CollectionInfo, CollectionMeta, EvalReport
from lookalike.store import StoreConfig
from lookalike.store.served import ServedStore
from lookalike.thumbnails import Thumbnails, cache_folder
from lookalike.tune import TuneReport, TuneSettings, check_output

if TYPE_CHECKING:  # search and source import datasets and pandas: only where a command runs
    from lookalike.search.duplicates import DuplicateReport


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
    from lookalike.search.evaluation import NEAR_IDENTICAL, evaluate, near_duplicate_score
    from lookalike.search.searcher import Searcher

    with open_store(store_config, "eval", collection) as (store, collection):
        model_settings = collection_model(store, collection, model_settings)
        searcher = Searcher(collection, store=store, settings=model_settings, params=params)
        source = searcher.source(split)  # a split the dataset lacks: said before the model
        if source.label_column is None:
            raise BadQuery(
                f"split {split!r} has no label column, so there is nothing to score",
                field="split",
            )
        sleep_idle_threads()  # before torch loads: see there
        quiet_transformers()
        reuse_freed_memory()
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


def run_text_eval(
    store_config: StoreConfig,
    collection: str | None,
    model_settings: ModelSettings,
    path: str,
    *,
    k: int = 5,
    params: SearchSettings | None = None,
) -> EvalReport:
    """precision@k of the text queries in the file at `path` (read before the model loads)."""
    from lookalike.search.searcher import Searcher
    from lookalike.search.text_queries import evaluate_text, read_text_queries

    queries = read_text_queries(path)
    with open_store(store_config, "eval", collection) as (store, collection):
        model_settings = collection_model(store, collection, model_settings)
        searcher = Searcher(collection, store=store, settings=model_settings, params=params)
        quiet_transformers()
        return evaluate_text(searcher, queries, k=k)


def run_tune(
    store_config: StoreConfig,
    collection: str | None,
    model_settings: ModelSettings,
    *,
    output: str,
    dataset: str | None,
    splits: tuple[str, str, str | None],
    settings: TuneSettings,
    overwrite: bool = False,
    dataset_variable: str | None = None,
) -> TuneReport:
    """Tune the settings' model (default: the collection's) on `dataset` (default: the
    collection's). A model or dataset from an environment variable (`dataset_variable`) gives
    way to the collection's own, with a line saying so; typed ones are used as given."""
    check_output(output, overwrite)  # before anything loads
    typed_model = model_settings.model and not model_settings.model_variable
    typed_dataset = dataset and not dataset_variable
    if not (typed_model and typed_dataset):
        meta = _tuned_collection(store_config, collection, model_settings.model and dataset)
        if meta is not None:
            name = meta[0]
            model_settings = recorded_model(meta[1], model_settings, name)
            model_settings = replace(model_settings, model=model_settings.model or meta[1].model)
            if not typed_dataset:
                dataset = recorded_dataset(meta[1], dataset, dataset_variable, name)
    train, val, test = check_inputs(lambda: _tune_splits(dataset, splits), model_settings)
    quiet_transformers()
    from lookalike.tune import tune  # torch loads here

    total = settings.epochs * len(train)
    with _bar(total, f"tune on {train.split}") as bar:

        def epoch_done(epoch: int, precision_at_k: float) -> None:
            say(f"epoch {epoch}: {val.split} precision@{settings.k} {precision_at_k:.4f}")

        return tune(
            model_settings,
            train,
            val,
            output,
            settings,
            test=test,
            on_step=bar.update,
            on_epoch=epoch_done,
            overwrite=overwrite,
        )


TUNE_SPLITS = ("--split", "--val-split", "--test-split")


def _tune_splits(dataset: str, splits: tuple[str, str, str | None]) -> list:
    """The train, validation and test splits; one the dataset lacks is said with the option
    that chose it."""
    from lookalike.source import load_source

    loaded = []
    for option, split in zip(TUNE_SPLITS, splits):
        try:
            loaded.append(load_source(dataset, split) if split else None)
        except DatasetLoadError as e:
            if e.kind != "no_split":
                raise
            none = " ('' for none)" if option == "--test-split" else ""
            raise DatasetLoadError(
                e.dataset,
                f"{e.reason}: choose one with {option}{none}",
                kind="tune_split",
                split=split,
                available=e.available,
            ) from e
    return loaded


def _tuned_collection(
    store_config: StoreConfig, collection: str | None, optional: bool
) -> tuple[str, CollectionMeta] | None:
    """The collection tune reads its model and dataset from, with its name; None when
    `optional` (both came from the environment) and the store holds no such collection."""
    try:
        with open_store(store_config, "tune", collection) as (store, collection):
            meta = store.info(collection).meta
    except CollectionNotFound:
        if optional:
            return None
        raise
    if meta is None:
        raise ModelMismatch(collection, "foreign")
    return collection, meta


def run_duplicates(
    store_config: StoreConfig,
    collection: str | None,
    *,
    threshold: float | None = None,
    neighbours: int = 3,
    grid: str | None = None,
    grid_pairs: int = 12,
) -> DuplicateReport:
    """Near-duplicate pairs and groups; with `grid`, a picture of the best pairs."""
    from lookalike.search.duplicates import find_duplicates
    from lookalike.search.searcher import Gallery

    with open_store(store_config, "duplicates", collection) as (store, collection):
        report = find_duplicates(store, collection, threshold=threshold, neighbours=neighbours)
        meta = store.info(collection).meta
    if grid and report.pairs and meta:
        pairs = report.pairs[:grid_pairs]
        kept = Thumbnails(cache_folder(store_config.path, store_config.url))
        image = thumbnails_of(Gallery(meta), kept)
        rows = [pair_row(p, *pair_images(p, image)) for p in pairs]
        save_grid(render_grid(rows), grid)
        wrote(grid, f"the best {len(pairs)} of {plural(len(report.pairs), 'pair')}")
    return report


def collection_info(store_config: StoreConfig, collection: str | None) -> CollectionInfo:
    """The collection's report; while a `serve` holds its embedded store, the serve's."""
    try:
        with open_store(store_config, "info", collection) as (store, collection):
            return described(store, collection)
    except StoreLocked as e:
        served = ServedStore.asked(e, store_config, collection)
        if served is None:
            raise
        say(f"the collection is held by lookalike serve (pid {e.pid}): asking it at {e.url}")
        return served.collection_info()
