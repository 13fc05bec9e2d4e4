"""`search` and `serve`: open the collection, check every query, label and option that needs
no model, then load the model. A collection held by a running `serve` is searched through it."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from dataclasses import replace

from lookalike.cli.console import quiet_transformers, say, warn, wrote
from lookalike.cli.grid import render_grid, result_row, save_grid, thumbnail
from lookalike.cli.stores import open_store
from lookalike.embed import ModelSettings
from lookalike.errors import StoreLocked
from lookalike.index import SearchSettings
from lookalike.records import Query, Result
from lookalike.search.remote import RemoteSearcher
from lookalike.search.searcher import Searcher, check_k, check_text
from lookalike.store import StoreConfig

# Query images decoded and embedded at once by `search`: a 12 MP phone photo takes ~36 MB
# decoded and several times that while the model prepares it.
QUERIES_AT_ONCE = 4


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
    show: Callable[[list[Result]], None] | None = None,
    texts: Sequence[str] = (),
) -> list[Result]:
    """One result per query, then per text query (`texts`), in order, given to `show` as soon
    as it is known; with `grid`, then also a picture of them in that file. Every query is
    checked before the model loads, then decoded a few at a time, and only thumbnails are
    kept: a folder of photos costs the memory of a few."""
    check_k(k)
    draw = _Drawing(grid)
    try:
        with open_store(store_config, "search", collection) as (store, collection):
            searcher = Searcher(collection, store=store, settings=model_settings, params=params)
            for text in queries:  # no such file, row or split: now
                searcher.check_query(text)
            for words in texts:
                check_text(words)
            searcher.label_id(label)
            quiet_transformers()
            if texts:  # an image-only collection refuses words before any image is read
                searcher.text_encoder  # noqa: B018
            results = []
            for start in range(0, len(queries), QUERIES_AT_ONCE):
                asked = [searcher.query(q) for q in queries[start : start + QUERIES_AT_ONCE]]
                found = searcher.search_queries(asked, k=k, label=label, include_self=include_self)
                results += _shown(found, show, draw, searcher.candidate_image)
            for start in range(0, len(texts), QUERIES_AT_ONCE):
                chunk = texts[start : start + QUERIES_AT_ONCE]
                hits = searcher.search_texts(chunk, k=k, label=label)
                found = [Result(Query.words(t), h) for t, h in zip(chunk, hits)]
                results += _shown(found, show, draw, searcher.candidate_image)
            draw.save()
            return results
    except StoreLocked as e:
        remote = RemoteSearcher(e.url, timeout=store_config.timeout) if e.url else None
        if remote is None or (collection and remote.collection() != collection):
            raise
        say(f"the collection is held by lookalike serve (pid {e.pid}): asking it at {e.url}")
        if model_settings.model or (params and not params.is_default):
            warn("the server searches with its own model and search options")
        results = []
        for text in queries:
            found = [remote.search(text, k, label, include_self=include_self)]
            results += _shown(found, show, draw, remote.candidate_image)
        for words in texts:
            results += _shown(
                [remote.search_words(words, k, label)], show, draw, remote.candidate_image
            )
        draw.save()
        return results


def _shown(found: list[Result], show, draw: _Drawing, image_of) -> list[Result]:
    """Results shown as they come (before the grid is drawn: a failed picture loses none),
    kept with thumbnails of their query images only."""
    if show:
        show(found)
    kept = [replace(r, query=replace(r.query, image=thumbnail(r.query.image))) for r in found]
    draw.add(kept, image_of)
    return kept


class _Drawing:
    """The rows of a --grid, each image kept as a thumbnail until the picture is saved."""

    def __init__(self, path: str | None) -> None:
        self.path, self.rows = path, []

    def add(self, results: list[Result], image_of) -> None:
        if not self.path:
            return
        for r in results:
            self.rows.append(result_row(r, [thumbnail(image_of(h)) for h in r.hits]))

    def save(self) -> None:
        if not self.path:
            return
        save_grid(render_grid(self.rows), self.path)
        n = len(self.rows)
        wrote(self.path, f"{n} {'query' if n == 1 else 'queries'} and their neighbours")


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
