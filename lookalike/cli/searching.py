"""`search` and `serve`: open the collection, check every query, label and option that needs
no model, then load the model. A collection held by a running `serve` is searched through it."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence

from lookalike.cli.commands import note, warn, wrote
from lookalike.cli.grid import render_grid, result_row
from lookalike.cli.stores import open_store, quiet_transformers
from lookalike.embed import ModelSettings
from lookalike.errors import StoreLocked
from lookalike.index import SearchSettings
from lookalike.records import Result
from lookalike.search.remote import RemoteSearcher
from lookalike.search.searcher import Searcher, check_k
from lookalike.store import StoreConfig


def run_search(
    store_config: StoreConfig,
    collection: str | None,
    queries: Sequence[str],
    model_settings: ModelSettings,
    *,
    k: int = 5,
    label: str | None = None,
    grid: str | None = None,
    params: SearchSettings | None = None,
    include_self: bool = False,
) -> list[Result]:
    """One result per query, in order; with `grid`, also a picture of them in that file."""
    check_k(k)
    try:
        with open_store(store_config, "search", collection) as (store, collection):
            searcher = Searcher(collection, store=store, settings=model_settings, params=params)
            asked = [searcher.query(q) for q in queries]  # no such file, row or split: now
            searcher.label_id(label)
            quiet_transformers()
            results = searcher.search_queries(asked, k=k, label=label, include_self=include_self)
            if grid:
                _draw(grid, results, searcher.candidate_image)
            return results
    except StoreLocked as e:
        remote = RemoteSearcher(e.url, timeout=store_config.timeout) if e.url else None
        if remote is None or (collection and remote.collection() != collection):
            raise
        note(f"the collection is held by lookalike serve (pid {e.pid}): asking it at {e.url}")
        if model_settings.model or (params and not params.is_default):
            warn("the server searches with its own model and search options")
        results = [remote.search(q, k, label, include_self=include_self) for q in queries]
        if grid:
            _draw(grid, results, remote.candidate_image)
        return results


def _draw(path: str, results: list[Result], image_of) -> None:
    render_grid([result_row(r, [image_of(h) for h in r.hits]) for r in results]).save(path)
    n = len(results)
    wrote(path, f"{n} {'query' if n == 1 else 'queries'} and their neighbours")


@contextlib.contextmanager
def open_searcher(
    store_config: StoreConfig,
    collection: str | None,
    model_settings: ModelSettings,
    params: SearchSettings | None = None,
    *,
    url: str | None = None,
):
    """A Searcher with its model loaded, on an open store, closed on exit (for servers); the
    store records `url`, so a `search` finding the store held comes here instead."""
    with open_store(store_config, "serve", collection, url=url) as (store, collection):
        searcher = Searcher(collection, store=store, settings=model_settings, params=params)
        quiet_transformers()
        searcher.embedder  # noqa: B018 - loaded at start-up, not on the first request
        yield searcher
