"""`search` and `serve`: open the collection, check every query, label and option that needs
no model, then load the model. A collection held by a running `serve` is searched through it."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

from lookalike.cli.console import bar, quiet_transformers, say, warn, wrote
from lookalike.cli.grid import (
    hit_images,
    render_grid,
    result_row,
    save_grid,
    thumbnail,
    thumbnails_of,
)
from lookalike.cli.output import capitals_note
from lookalike.cli.stores import collection_model, open_store
from lookalike.embed import ModelSettings
from lookalike.errors import BadImage, BadQuery, StoreLocked, shown
from lookalike.index import SearchSettings
from lookalike.records import Query, Result
from lookalike.search.builder import is_point_id
from lookalike.search.limits import check_k, check_text
from lookalike.search.remote import RemoteSearcher
from lookalike.search.spellings import other_capitalisations
from lookalike.source.folder import image_files
from lookalike.store import StoreConfig
from lookalike.thumbnails import Thumbnails, cache_folder

if TYPE_CHECKING:
    from lookalike.search.searcher import Searcher
    from lookalike.store import Store

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
    query: dict | None = None,
    texts: Sequence[str] = (),
) -> list[Result]:
    """One result per query, then per text query (`texts`), in order, given to `show` as soon
    as it is known; with `grid`, then also a picture of them in that file. Every query is
    checked before the model loads, then decoded a few at a time, and only thumbnails are
    kept: a folder of photos costs the memory of a few. A folder's images are all queries,
    with a progress bar; one that cannot be read is reported and skipped. `query`:
    Searcher.options' arguments (where, filter, min_score, group_by)."""
    check_k(k)
    for words in texts:  # a shell passes bytes that are not UTF-8 as surrogate escapes
        try:
            words.encode("utf-8")
        except UnicodeEncodeError:
            raise BadQuery(
                f"--text {shown(words)} holds bytes that are not UTF-8 text", field="text"
            ) from None
    thumbnails = Thumbnails(cache_folder(store_config.path, store_config.url))
    out = _Out(show, _Drawing(grid, thumbnails))
    queries, listed = _expand(queries)
    try:
        with open_store(store_config, "search", collection) as (store, collection):
            model_settings = collection_model(store, collection, model_settings)
            searcher = _searcher(collection, store, model_settings, params)
            for text in queries:  # no such file, row or split: now (a folder's: skipped later)
                if text not in listed:
                    searcher.check_query(text)
            for words in texts:
                check_text(words)
            searcher.label_id(label)
            options = searcher.options(**(query or {}))
            quiet_transformers()
            if texts:  # an image-only collection refuses words before any image is read
                searcher.text_encoder  # noqa: B018
            if queries:  # loaded first: a query is decoded at the model's size, as ingest does
                searcher.embedder  # noqa: B018
            ask = dict(k=k, label=label, options=options)
            results = _searched_here(searcher, queries, listed, out, include_self, ask)
            for start in range(0, len(texts), QUERIES_AT_ONCE):
                chunk = texts[start : start + QUERIES_AT_ONCE]
                hits = searcher.search_texts(chunk, **ask)
                results += out([Result(Query.words(t), h) for t, h in zip(chunk, hits)], searcher)
            if any(not r.hits for r in results):
                _say_capitals(searcher, (query or {}).get("where") or ())
            out.draw.save()
            return results
    except StoreLocked as e:
        remote = RemoteSearcher(e.url, timeout=store_config.timeout) if e.url else None
        if remote is None or (collection and remote.collection() != collection):
            raise
        say(f"the collection is held by lookalike serve (pid {e.pid}): asking it at {e.url}")
        typed_model = model_settings.model and not model_settings.model_variable
        if typed_model or (params and not params.is_default):
            warn("the server searches with its own model and search options")
        results = []
        for text in queries:
            try:
                found = [remote.search(text, k, label, include_self=include_self, query=query)]
            except BadQuery as bad:  # a folder's unreadable file: skipped, as here
                if text not in listed or not str(bad).startswith("upload:"):
                    raise
                warn(f"skipped {shown(text)}: {str(bad).removeprefix('upload: ')}")
                continue
            results += out(found, remote)
        for words in texts:
            results += out([remote.search_words(words, k, label, query=query)], remote)
        out.draw.save()
        return results


def _searched_here(
    searcher: Searcher,
    queries: list[str],
    listed: set[str],
    out: _Out,
    include_self: bool,
    ask: dict,
) -> list[Result]:
    """The image queries, a few at a time (a folder's with a progress bar; its unreadable
    files reported and skipped)."""
    results, skipped = [], 0
    with _progress(len(queries) if listed else 0) as progress:
        for start in range(0, len(queries), QUERIES_AT_ONCE):
            chunk = queries[start : start + QUERIES_AT_ONCE]
            asked = [a for a in (_asked(searcher, q, q in listed) for q in chunk) if a]
            skipped += len(chunk) - len(asked)
            if asked:
                results += out(
                    searcher.search_queries(asked, include_self=include_self, **ask), searcher
                )
            progress.update(len(chunk))
    if skipped:
        warn(f"{skipped} of {len(queries)} query images could not be read and were skipped")
    return results


def run_recommend(
    store_config: StoreConfig,
    collection: str | None,
    model_settings: ModelSettings,
    *,
    like: Sequence[str],
    unlike: Sequence[str] = (),
    strategy: str = "best_score",
    k: int = 5,
    label: str | None = None,
    params: SearchSettings | None = None,
    query: dict | None = None,
) -> Result:
    """More like `like`, less like `unlike` (images, SPLIT:ROW or point ids): one query, named
    for people by its examples."""
    check_k(k)
    try:
        with open_store(store_config, "search", collection) as (store, collection):
            model_settings = collection_model(store, collection, model_settings)
            searcher = _searcher(collection, store, model_settings, params)
            searcher.label_id(label)
            options = searcher.options(**(query or {}))
            quiet_transformers()
            if not all(is_point_id(x) for x in (*like, *unlike)):  # images: at the model's size
                searcher.embedder  # noqa: B018
            hits = searcher.recommend(
                like, unlike, k=k, strategy=strategy, label=label, options=options
            )
    except StoreLocked as e:  # a running serve takes stored ids (it reads no file of ours)
        remote = RemoteSearcher(e.url, timeout=store_config.timeout) if e.url else None
        if remote is None or (collection and remote.collection() != collection):
            raise
        say(f"the collection is held by lookalike serve (pid {e.pid}): asking it at {e.url}")
        # serve takes stored ids only (it reads no file of ours): a file is its stored point
        ids = [_stored_example(remote, x) for x in (*like, *unlike)]
        args = dict(strategy=strategy, label=label, query=query)
        hits = remote.recommend(ids[: len(like)], ids[len(like) :], k, **args)
    name = "like " + ", ".join(like) + (f"; unlike {', '.join(unlike)}" if unlike else "")
    if len(like) == 1 and not unlike and is_point_id(like[0]):
        name = f"id {like[0]}"
    return Result(Query(name, None), hits)


def _stored_example(remote, example: str) -> str:
    """A recommend example as the running serve takes it: a stored point's id; an image file
    the collection holds (the same bytes) becomes its point's id."""
    if is_point_id(example):
        return example
    found = remote.stored_id(example) if os.path.isfile(example) else None
    if found is None:
        raise BadQuery(
            f"{example!r} is not in the collection, and lookalike serve holds the store: "
            "while it runs, examples are stored images (a file it holds, or the `id` of a "
            "hit); stop it to use other images as examples",
            field="like",
        )
    return found


def _expand(queries: Sequence[str]) -> tuple[list[str], set[str]]:
    """Queries with each folder replaced by its image files (and those files, apart)."""
    out, listed = [], set()
    for query in queries:
        if not os.path.isdir(query):
            out.append(query)
            continue
        files = image_files(query)
        if not files:
            warn(f"{shown(query)} holds no image files")
        out += files
        listed.update(files)
    return out, listed


def _asked(searcher: Searcher, text: str, skippable: bool) -> Query | None:
    """A query with its image; a folder's unreadable file is reported and skipped (None),
    while a file the user named is an error."""
    if skippable and not os.path.isfile(text):  # deleted since listed, or a dangling link
        warn(f"skipped {shown(text)}: the file is gone (deleted, or a link to nothing)")
        return None
    try:
        return searcher.query(text)
    except (BadImage, OSError) as e:
        if not skippable:
            raise
        warn(f"skipped {shown(text)}: {getattr(e, 'reason', None) or e}")
        return None


def _progress(total: int):
    return bar(total, "search") if total else contextlib.nullcontext(_NoBar())


def _say_capitals(searcher: Searcher, where) -> None:
    """A filter that matched nothing may differ from the stored values only in capitals."""
    types = searcher.queries.types()
    found = other_capitalisations(searcher.store, searcher.collection, where, types)
    for item, others in found:
        warn(capitals_note(item, others))


class _NoBar:
    def update(self, n: int) -> None:
        return None


class _Out:
    """Results shown as they come (before the grid is drawn: a failed picture loses none),
    kept with thumbnails of their query images only."""

    def __init__(self, show: Callable[[list[Result]], None] | None, draw: _Drawing) -> None:
        self.show, self.draw = show, draw

    def __call__(self, found: list[Result], searcher) -> list[Result]:
        if self.show:
            self.show(found)
        kept = [replace(r, query=replace(r.query, image=thumbnail(r.query.image))) for r in found]
        self.draw.add(kept, searcher)
        return kept


class _Drawing:
    """The rows of a --grid, each image kept as a thumbnail until the picture is saved."""

    def __init__(self, path: str | None, thumbnails: Thumbnails) -> None:
        self.path, self.rows, self.thumbnails = path, [], thumbnails

    def add(self, results: list[Result], searcher) -> None:
        if not self.path:
            return
        image_of = thumbnails_of(searcher, self.thumbnails)  # kept beside the store
        for r in results:
            self.rows.append(result_row(r, hit_images(r.hits, image_of)))

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
        model_settings = collection_model(store, collection, model_settings)
        searcher = _searcher(collection, store, model_settings, params)
        quiet_transformers()
        searcher.embedder  # noqa: B018 - loaded at start-up, not on the first request
        yield searcher


def _searcher(
    collection: str, store: Store, settings: ModelSettings, params: SearchSettings | None
) -> Searcher:
    """A Searcher on an open store. Imported here: only a search in this process needs it (and
    numpy, and the engines), not one forwarded to a running `serve`."""
    from lookalike.search.searcher import Searcher

    return Searcher(collection, store=store, settings=settings, params=params)
