"""Opening what a command needs, cheapest checks first: the store and its collection (which one
when none is named, who holds it), the dataset and the model's whereabouts, all before any model
loads."""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator
from dataclasses import replace
from typing import TYPE_CHECKING

import lookalike.store as storage  # its engines (and numpy) load when one is opened
from lookalike.cli.console import warn
from lookalike.defaults import DEFAULT_COLLECTION
from lookalike.embed import ModelSettings
from lookalike.embed.settings import canonical_model_id
from lookalike.errors import (
    CollectionNotFound,
    DatasetLoadError,
    LoadErrors,
    ModelLoadError,
    StoreDamaged,
)
from lookalike.records import CollectionInfo, CollectionMeta
from lookalike.store import StoreConfig
from lookalike.store.holders import holding, locked
from lookalike.store.served import answers

if TYPE_CHECKING:
    from lookalike.store import Store

# How long a serve's record is given to be confirmed. A serve answers /health on its event
# loop at once, even while a query hangs; whatever does not (another program on a reused
# pid's port, say) is passed over, and opening the store says who holds it.
SERVE_PROBE_S = 5.0

# Kinds of load error that say "this input is not there": reported together, not one a run.
NOT_THERE = {"missing", "unreachable", "offline", "not_found"}


def collection_for(dataset: str) -> str:
    """The collection ingest fills by default: named after the dataset ("beans" for beans,
    "photos" for ~/photos, "food101" for ethz/food101)."""
    local = os.path.exists(dataset)
    name = os.path.basename(os.path.abspath(dataset)) if local else dataset.rsplit("/", 1)[-1]
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", name).lstrip(".-")[:255]
    return name or DEFAULT_COLLECTION


def resolve_collection(store: Store, collection: str | None) -> str:
    """The named collection, or, when none is named, the store's only one."""
    if collection:
        return collection
    names = sorted(store.names())
    if len(names) == 1:
        return names[0]
    raise CollectionNotFound(None, store.config.location, known=names)


@contextlib.contextmanager
def open_store(
    config: StoreConfig,
    command: str,
    collection: str | None,
    *,
    url: str | None = None,
) -> Iterator[tuple[Store, str]]:
    """The store and the collection to use; an embedded store records this process as its
    holder meanwhile, so another command can say who holds it (and `search` can ask a serve)."""
    check_served(config, collection)
    with storage.connect(config) as store:
        name = resolve_collection(store, collection)
        embedded = not config.url and os.path.isdir(config.path)
        with holding(config.path, command, name, url) if embedded else contextlib.nullcontext():
            yield store, name


def check_served(config: StoreConfig, collection: str | None) -> None:
    """Raise the StoreLocked that a running `serve`'s record in an embedded store foretells,
    before the store is opened: opening it costs numpy and the engine (~0.2 s) only to meet
    the lock, and a command forwarded to that serve needs neither. The serve must answer (a
    recorded pid may since be another process's); if not, the store is opened as usual."""
    if config.url or not os.path.isdir(config.path):
        return
    error = locked(config.path, collection)
    if error.url and answers(error.url, min(config.timeout, SERVE_PROBE_S)):
        raise error


def described(store: Store, collection: str) -> CollectionInfo:
    """What `info` shows of `collection`: its labels are those some image still has."""
    info = store.info(collection)
    if info.meta and info.meta.label_names:
        kept = store.labels_in_use(collection, info.meta.label_names)
        info = replace(info, meta=replace(info.meta, label_names=kept))
    return info


def check_inputs(load_dataset, model: ModelSettings | None):
    """Run `load_dataset()` and check the model's whereabouts (nothing loads): the problems of
    both in one error, so one run shows every fix."""
    problems: list[DatasetLoadError | ModelLoadError] = []
    loaded = None
    try:
        loaded = load_dataset()
    except DatasetLoadError as e:
        if e.kind not in NOT_THERE:
            raise
        problems.append(e)
    try:
        if model is not None:
            model.check()
    except ModelLoadError as e:
        problems.append(e)
    if len(problems) > 1:
        raise LoadErrors(problems)
    if problems:
        raise problems[0]
    return loaded


def recorded_meta(store: Store, collection: str) -> CollectionMeta | None:
    """What `collection` was built with, or None for a new (or unreadable) one."""
    try:
        return store.info(collection).meta if store.exists(collection) else None
    except (CollectionNotFound, StoreDamaged):
        return None


def recorded_model(
    meta: CollectionMeta | None, settings: ModelSettings, collection: str
) -> ModelSettings:
    """The model to use on an existing collection: a typed --model as given (one that differs
    from the collection's is refused below, in words), but one from an environment variable
    gives way to the collection's own, with a line naming the variable."""
    asked, variable = settings.model, settings.model_variable
    if meta is None or not asked or not variable or canonical_model_id(asked) == meta.model:
        return settings
    warn(
        f"{variable}={asked} is not the model collection {collection!r} was built with: "
        f"using its own, {meta.model} (type --model to choose one)"
    )
    return replace(settings, model=None, model_variable=None)


def collection_model(store: Store, collection: str, settings: ModelSettings) -> ModelSettings:
    """`recorded_model` for `collection` in `store`."""
    return recorded_model(recorded_meta(store, collection), settings, collection)


def recorded_dataset(
    meta: CollectionMeta | None, dataset: str, variable: str | None, collection: str
) -> str:
    """The dataset to use on an existing collection when none was typed: its own. One from an
    environment variable (`variable`) that differs is said, naming the variable."""
    if meta is None or not meta.dataset or _same_dataset(dataset, meta.dataset):
        return dataset
    if variable:
        warn(
            f"{variable}={dataset} is not the dataset of collection {collection!r}: using "
            f"its own, {meta.dataset} (type --dataset to choose one)"
        )
    return meta.dataset


def _same_dataset(dataset: str | None, recorded: str) -> bool:
    if dataset is None:
        return False
    local = os.path.abspath(dataset) if os.path.isdir(dataset) else dataset
    return local == recorded
