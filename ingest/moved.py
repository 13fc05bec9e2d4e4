"""A dataset folder that moved (or a symlink to it): the same images at another place are the
same dataset, known by their contents, not by where they lie."""

from __future__ import annotations

import os

from lookalike.errors import DatasetMoved, ModelMismatch
from lookalike.identity import same_folder
from lookalike.ingest.plan import Plan
from lookalike.records import CollectionMeta
from lookalike.source import Source


def moved_from(have: CollectionMeta | None, source: Source) -> bool:
    """Whether `source` names another place than the collection's dataset, and both could be
    the same images: another name of the same folder, or a local folder standing in for one
    (a hub id is the same everywhere and never moves)."""
    if have is None or have.identity == source.name:
        return False
    if same_folder(have.dataset, source.name) or same_folder(have.identity, source.name):
        return True
    return os.path.isabs(have.identity) and os.path.isdir(source.name)


def check_moved(
    collection: str, have: CollectionMeta, source: Source, plan: Plan, relocate: bool
) -> None:
    """Accept the new place when every stored image of the split is there, unchanged (or it is
    the same folder); where only some are, only with `relocate`; where none are, it is
    another dataset."""
    if same_folder(have.dataset, source.name) or same_folder(have.identity, source.name):
        return
    matched = plan.unchanged + plan.count("renamed")
    differ = plan.count("added") + plan.count("updated") + plan.count("removed")
    if matched and not differ:
        return
    if not matched:
        raise ModelMismatch(collection, "dataset", have.dataset, source.name)
    if not relocate:
        raise DatasetMoved(collection, have.dataset, source.name, matched, len(plan.stored), differ)
