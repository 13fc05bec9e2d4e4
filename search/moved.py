"""Searching a store that was copied or moved with its model and images: the collection's
record names their old places, and the same files are looked for beside the store."""

from __future__ import annotations

import os
from dataclasses import replace

from lookalike.identity import locate_folder, locate_model
from lookalike.records import CollectionMeta
from lookalike.store import Store

PROBES = 8  # stored files that must all be in a folder to take it for the moved dataset


def where_now(meta: CollectionMeta, store: Store, collection: str) -> CollectionMeta:
    """`meta` with its model and dataset where they are now, when they are gone from their
    recorded places and found beside the store (a model by its files' hash, a folder by some
    of its stored files); point ids keep naming the recorded dataset."""
    near = None if store.config.url else store.config.path
    model = locate_model(meta.model, meta.model_hash, near)
    dataset = meta.dataset
    if os.path.isabs(dataset) and not os.path.exists(dataset):
        paths = [p.path for p in store.sample(collection, PROBES) if p.path]

        def holds(folder: str) -> bool:
            return bool(paths) and all(os.path.isfile(os.path.join(folder, p)) for p in paths)

        dataset = locate_folder(dataset, near, holds)
    if (model, dataset) == (meta.model, meta.dataset):
        return meta
    return replace(meta, model=model, dataset=dataset, dataset_id=meta.identity)
