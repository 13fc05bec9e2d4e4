"""One function per command, wiring configuration into the library stages.

Lives at the edge with the CLI: it owns the progress bars and skip warnings on stderr, so the
stages below stay silent and testable.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Sequence
from dataclasses import replace

from tqdm import tqdm

from lookalike.cli.console import bar as _bar
from lookalike.cli.console import quiet_transformers, warn
from lookalike.cli.grid import GridRow, render_grid, save_grid, thumbnail
from lookalike.embed import ModelSettings
from lookalike.embed.memory import reuse_freed_memory
from lookalike.errors import ModelMismatch
from lookalike.index import SearchSettings
from lookalike.records import CollectionInfo, EvalReport, Hit
from lookalike.search.duplicates import DuplicateReport, find_duplicates
from lookalike.search.evaluate import NEAR_IDENTICAL, evaluate
from lookalike.search.searcher import Gallery, Searcher
from lookalike.source import load_source
from lookalike.store import StoreConfig, connect
from lookalike.tune import TuneReport, TuneSettings, check_output, tune

quiet_transformers()

# Query images decoded and embedded at once by `search`: a 12 MP phone photo takes ~36 MB
# decoded and several times that while the model prepares it.
QUERIES_AT_ONCE = 4


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
    show: Callable[[list[tuple[str, list[Hit]]]], None] | None = None,
) -> list[tuple[str, list[Hit]]]:
    """Hits for each query, in order, given to `show` as soon as they are known; with `grid`,
    then also a picture of them in that file. Queries are decoded a few at a time and only
    thumbnails are kept, so a folder of photos costs the memory of a few."""
    results, rows = [], []
    with connect(store_config) as store:
        searcher = Searcher(collection, store=store, settings=model_settings, params=params)
        for start in range(0, len(queries), QUERIES_AT_ONCE):
            chunk = queries[start : start + QUERIES_AT_ONCE]
            images = [searcher.load_query(q) for q in chunk]
            found = list(zip(chunk, searcher.search_many(images, k=k, label=label)))
            if show:
                show(found)
            results += found
            for (query, hits), image in zip(found, images) if grid else ():
                candidates = [thumbnail(searcher.candidate_image(h)) for h in hits]
                rows.append(GridRow(query, thumbnail(image), hits, candidates))
        if grid:
            save_grid(render_grid(rows), grid)
    return results


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
    overwrite: bool = False,
) -> TuneReport:
    """Tune the settings' model (default: the collection's) on `dataset` (default: the
    collection's)."""
    check_output(output, overwrite)  # before anything loads
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
            overwrite=overwrite,
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
                p.a.where(),
                thumbnail(gallery.image(p.a)) or _blank(),
                [Hit.found(p.b, 1, p.score)],
                [thumbnail(gallery.image(p.b))],
            )
            for p in report.pairs[:grid_pairs]
        ]
        save_grid(render_grid(rows), grid)
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
