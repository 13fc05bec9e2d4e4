"""One function per command, wiring configuration into the library stages.

Lives at the edge with the CLI: it owns the progress bars and skip warnings on stderr, so the
stages below stay silent and testable.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator, Sequence

from tqdm import tqdm

from ingest.dataset import load_source
from ingest.worker import ingest
from lookalike.embedder import Embedder
from lookalike.records import CollectionInfo, EvalReport, Hit, IngestReport, Skipped
from lookalike.store import StoreConfig, connect
from search.evaluate import evaluate
from search.searcher import Searcher


def warn(message: str) -> None:
    tqdm.write(f"warning: {message}", file=sys.stderr)


def _bar(total: int, desc: str) -> tqdm:
    return tqdm(total=total, desc=desc, unit="img", file=sys.stderr, dynamic_ncols=True)


def run_ingest(
    store_config: StoreConfig,
    collection: str,
    *,
    dataset: str,
    split: str,
    model: str,
    limit: int | None = None,
    seed: int = 42,
    image_column: str | None = None,
    label_column: str | None = None,
    batch_size: int = 32,
    recreate: bool = False,
    revision: str | None = None,
    device: str = "auto",
) -> IngestReport:
    source = load_source(
        dataset, split, image_column=image_column, label_column=label_column, limit=limit, seed=seed
    )
    embedder = Embedder(model, revision=revision, device=device)

    def skip(item: Skipped) -> None:
        warn(f"skipped {split}:{item.row}: {item.reason}")

    with connect(store_config) as store, _bar(len(source), f"ingest {split}") as bar:
        return ingest(
            source, embedder, store, collection, batch_size=batch_size, recreate=recreate,
            on_progress=bar.update, on_skip=skip,
        )  # fmt: skip


def run_search(
    store_config: StoreConfig,
    collection: str,
    queries: Sequence[str],
    *,
    k: int = 5,
    label: str | None = None,
    model: str | None = None,
    revision: str | None = None,
    device: str = "auto",
) -> Iterator[tuple[str, list[Hit]]]:
    """Hits for each query, in order."""
    with connect(store_config) as store:
        searcher = Searcher(collection, store=store, model=model, revision=revision, device=device)
        images = [searcher.load_query(q) for q in queries]
        results = searcher.search_many(images, k=k, label=label)
    yield from zip(queries, results)


def run_eval(
    store_config: StoreConfig,
    collection: str,
    *,
    split: str = "test",
    k: int = 5,
    batch_size: int = 32,
    model: str | None = None,
    revision: str | None = None,
    device: str = "auto",
) -> EvalReport:
    with connect(store_config) as store:
        searcher = Searcher(collection, store=store, model=model, revision=revision, device=device)
        with _bar(len(searcher.source(split)), f"eval {split}") as bar:
            return evaluate(searcher, split, k=k, batch_size=batch_size, on_progress=bar.update)


def collection_info(store_config: StoreConfig, collection: str) -> CollectionInfo:
    with connect(store_config) as store:
        return store.info(collection)
