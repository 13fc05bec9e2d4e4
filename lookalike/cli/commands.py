"""One function per command, wiring configuration into the library stages.

Lives at the edge with the CLI: it owns the progress bars and skip warnings on stderr, so the
stages below stay silent and testable.
"""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace

from tqdm import tqdm

from lookalike.cli.errors import skip_message
from lookalike.cli.grid import GridRow, render_grid
from lookalike.defaults import DEFAULT_DATASET, DEFAULT_MAX_PIXELS
from lookalike.embed import ModelSettings
from lookalike.embed.memory import reuse_freed_memory
from lookalike.errors import ModelMismatch
from lookalike.index import IndexSettings, SearchSettings
from lookalike.ingest import ingest
from lookalike.records import CollectionInfo, EvalReport, Hit, IngestReport, Skipped
from lookalike.search.duplicates import DuplicateReport, find_duplicates
from lookalike.search.evaluate import NEAR_IDENTICAL, evaluate
from lookalike.search.searcher import Gallery, Searcher
from lookalike.source import load_source
from lookalike.store import StoreConfig, connect
from lookalike.tune import TuneReport, TuneSettings, tune


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


def _quiet_transformers() -> None:
    # Loading a classifier checkpoint into AutoModel reports the unused head at WARNING level;
    # it is expected here and would bury our own messages. Done here, not in the CLI group, so
    # that `--help` never imports transformers.
    from transformers.utils import logging

    logging.set_verbosity_error()
    logging.disable_progress_bar()


_quiet_transformers()


# Above this, qdrant-client's local mode is slow (its own docs warn at 20k points).
LOCAL_MODE_POINTS = 20_000


def warn(message: str) -> None:
    tqdm.write(f"warning: {message}", file=sys.stderr)


def _bar(total: int, desc: str) -> tqdm:
    return tqdm(total=total, desc=desc, unit="img", file=sys.stderr, dynamic_ncols=True)


def run_ingest(
    store_config: StoreConfig,
    collection: str,
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
    source = load_source(
        data.dataset,
        data.split,
        image_column=data.image_column,
        label_column=data.label_column,
        limit=data.limit,
        seed=data.seed,
        max_pixels=data.max_pixels,
    )
    embedder = model_settings.load()
    reuse_freed_memory()
    with contextlib.ExitStack() as stack:
        log = stack.enter_context(open(skipped_log, "w")) if skipped_log else None

        def skip(item: Skipped) -> None:
            item = replace(item, reason=skip_message(item.reason, item.kind))
            where = f" ({item.path})" if item.path else ""
            warn(f"skipped {data.split}:{item.row}{where}: {item.reason}")
            if log:  # written as they come, so an interrupted run still has its log
                log.write(json.dumps(asdict(item)) + "\n")
                log.flush()

        store = stack.enter_context(connect(store_config))
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


def run_search(
    store_config: StoreConfig,
    collection: str,
    queries: Sequence[str],
    model_settings: ModelSettings,
    *,
    k: int = 5,
    label: str | None = None,
    grid: str | None = None,
    params: SearchSettings | None = None,
) -> list[tuple[str, list[Hit]]]:
    """Hits for each query, in order; with `grid`, also a picture of them in that file."""
    with connect(store_config) as store:
        searcher = Searcher(collection, store=store, settings=model_settings, params=params)
        images = [searcher.load_query(q) for q in queries]
        results = searcher.search_many(images, k=k, label=label)
        if grid:
            rows = [
                GridRow(q, im, hits, [searcher.candidate_image(h) for h in hits])
                for q, im, hits in zip(queries, images, results)
            ]
            render_grid(rows).save(grid)
    return list(zip(queries, results))


def run_eval(
    store_config: StoreConfig,
    collection: str,
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
    with connect(store_config) as store:
        searcher = Searcher(collection, store=store, settings=model_settings, params=params)
        reuse_freed_memory()
        with _bar(len(searcher.source(split)), f"eval {split}") as bar:
            report = evaluate(
                searcher,
                split,
                k=k,
                batch_size=batch_size,
                workers=workers,
                near_duplicates=near_duplicates,
                recall=recall,
                on_progress=bar.update,
            )
    if report.near_identical_queries:
        warn(
            f"{report.near_identical_queries} of {report.queries} {split} queries have a "
            f"near-identical image in the collection (cosine >= {NEAR_IDENTICAL}): the same "
            "picture on both sides (leakage) inflates these numbers"
        )
    return report


def run_tune(
    store_config: StoreConfig,
    collection: str,
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
        with connect(store_config) as store:
            meta = store.info(collection).meta
        if meta is None:
            raise ModelMismatch(collection, "foreign")
        model_settings = replace(model_settings, model=model_settings.model or meta.model)
        dataset = dataset or meta.dataset
    train, val, test = (load_source(dataset, s) if s else None for s in splits)
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
    collection: str,
    *,
    threshold: float,
    neighbours: int = 3,
    grid: str | None = None,
    grid_pairs: int = 12,
) -> DuplicateReport:
    """Near-duplicate pairs and groups; with `grid`, a picture of the best pairs."""
    with connect(store_config) as store:
        report = find_duplicates(store, collection, threshold=threshold, neighbours=neighbours)
        meta = store.info(collection).meta
    if grid and report.pairs and meta:
        gallery = Gallery(meta)
        rows = [
            GridRow(
                f"{p.a.split}:{p.a.row}",
                gallery.image(p.a) or _blank(),
                [Hit.found(p.b, 1, p.score)],
                [gallery.image(p.b)],
            )
            for p in report.pairs[:grid_pairs]
        ]
        render_grid(rows).save(grid)
    return report


def _blank():
    from PIL import Image

    return Image.new("RGB", (8, 8), (235, 235, 235))


@contextlib.contextmanager
def open_searcher(
    store_config: StoreConfig,
    collection: str,
    model_settings: ModelSettings,
    params: SearchSettings | None = None,
):
    """A Searcher on an open store, closed on exit (for long-running servers)."""
    with connect(store_config) as store:
        yield Searcher(collection, store=store, settings=model_settings, params=params)


def collection_info(store_config: StoreConfig, collection: str) -> CollectionInfo:
    with connect(store_config) as store:
        return store.info(collection)
