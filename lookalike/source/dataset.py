"""Loading a dataset (hub id, local datasets folder, or a folder of images) into a `Source`
that yields batches of decoded images with their ids and payloads."""

from __future__ import annotations

import os
from collections.abc import Sequence

import datasets
import numpy as np

from lookalike import hub
from lookalike.defaults import DEFAULT_MAX_PIXELS
from lookalike.errors import DatasetLoadError, shown
from lookalike.query import unnameable, unnameable_message
from lookalike.records import OWN_FIELDS
from lookalike.source import metadata
from lookalike.source.folder import (
    DATA_EXTENSIONS,
    empty_split,
    is_image_folder,
    load_image_folder,
)
from lookalike.source.metadata import FolderMetadata
from lookalike.source.split import Source, image_files, path_point_id, point_id

PATH_COLUMNS = ("image_file_path", "file_path", "filepath", "path", "filename", "file_name")
__all__ = ["Source", "load_source", "path_point_id", "point_id"]


def canonical_dataset_id(dataset: str) -> str:
    return os.path.abspath(dataset) if os.path.isdir(dataset) else dataset


def _load_dict(
    dataset: str, exif: bool = True
) -> tuple[datasets.DatasetDict, metadata.FolderMetadata | None]:
    """The dataset's splits, and an image folder's metadata fields by file name (with
    `exif`, its photos' EXIF fields too)."""
    hub.check_dataset(dataset)  # a missing folder or no network: said at once
    if os.path.isdir(dataset) and not any(files for _, _, files in os.walk(dataset)):
        raise DatasetLoadError(
            dataset, f"folder {dataset!r} is empty: no images or data files in it", kind="empty"
        )
    try:
        if os.path.isdir(dataset) and (
            os.path.exists(os.path.join(dataset, "dataset_dict.json"))
            or os.path.exists(os.path.join(dataset, "state.json"))
        ):
            loaded = datasets.load_from_disk(dataset)  # a save_to_disk folder
        elif is_image_folder(dataset):
            return load_image_folder(dataset, exif=exif)
        else:
            loaded = datasets.load_dataset(dataset)  # hub id or a folder of data files
    except DatasetLoadError:  # ours (a metadata file's line, say): already in words
        raise
    except Exception as e:  # datasets raises many types; all mean "could not load"
        raise _load_error(dataset, e) from e
    if isinstance(loaded, datasets.Dataset):
        loaded = datasets.DatasetDict({"train": loaded})
    return loaded, None


def _load_error(dataset: str, e: Exception) -> DatasetLoadError:
    local = os.path.isdir(dataset)
    if not local and hub.offline():
        return hub.not_cached_dataset(dataset)
    first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    if local:
        hint = (
            "check the folder holds a datasets save_to_disk folder, data files, or images in "
            "class sub-folders"
        )
        return DatasetLoadError(
            dataset, f"could not load dataset {dataset!r} ({first}): {hint}", kind="unreadable"
        )
    return DatasetLoadError(
        dataset,
        f"could not load dataset {dataset!r} from the Hugging Face hub ({first}): check the id",
        kind="not_found",
    )


def _detect(
    features: datasets.Features, wanted: str | None, kinds: tuple, names: tuple
) -> str | None:
    if wanted:
        return wanted
    for col, feat in features.items():
        if isinstance(feat, kinds):
            return col
    return next((n for n in names if n in features), None)


def load_source(
    dataset: str,
    split: str = "train",
    *,
    image_column: str | None = None,
    label_column: str | None = None,
    limit: int | None = None,
    seed: int = 42,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    payload_columns: Sequence[str] | None = None,
    allow_empty: bool = False,
    exif: bool = True,
) -> Source:
    """Load `split` of `dataset`; `limit` samples as shuffle(seed).select(range(limit)) does.

    `payload_columns`: the dataset's columns (an image folder's metadata fields) stored with
    each point; None: every column of plain values. `allow_empty`: a folder with no images
    is a split with no rows (a sync then removes every point), not an error (the guard
    against a folder whose disk is not mounted). `exif`: an image folder's photos also carry
    what their EXIF says (taken, camera, lens, size, location: source/exif.py)."""
    if allow_empty and os.path.isdir(dataset) and not is_image_folder(dataset):
        splits, folder = _empty_folder(dataset, split)
    else:
        splits, folder = _load_dict(dataset, exif)
    folder_metadata = folder.rows if folder else None
    if split not in splits:
        raise DatasetLoadError(
            dataset,
            f"dataset {dataset!r} has no split {split!r}; its splits are: {', '.join(splits)}",
            kind="no_split",
            split=split,
            available=list(splits),
        )
    data = splits[split]
    feats = data.features
    image_col = _detect(feats, image_column, (datasets.Image,), ("image", "img", "path"))
    if image_col is None or image_col not in feats:
        raise DatasetLoadError(
            dataset,
            f"no image column {image_column or ''} in {dataset!r} (columns: {', '.join(feats)})",
            kind="no_image_column",
            split=split,
            available=list(feats),
        )
    label_col = _detect(feats, label_column, (datasets.ClassLabel,), ("label", "labels"))
    if label_col is not None and label_col not in feats:
        raise DatasetLoadError(
            dataset,
            f"no label column {label_col!r} in {dataset!r} (columns: {', '.join(feats)})",
            kind="no_label_column",
            split=split,
            available=list(feats),
        )
    names = _label_names(data, label_col)
    if isinstance(feats[image_col], datasets.Image):
        data = data.cast_column(image_col, datasets.Image(decode=False))
    path_col = next((c for c in PATH_COLUMNS if c in feats and c != image_col), None)
    used = (image_col, label_col, path_col)
    every = {**folder.orphans, **folder.rows} if folder else None  # a renamed image's too
    columns = _payload_columns(dataset, data, every, used, payload_columns)
    notes = [*(folder.notes if folder else ()), *_dropped(folder_metadata, payload_columns)]
    if not folder:  # a folder's metadata reader names such fields with their file and line
        notes += [unnameable_message(c, f"a column of {dataset}") for c in columns if unnameable(c)]
    paths, files = image_files(data, image_col)
    if path_col:
        paths = [None if p is None else str(p) for p in data[path_col]]
    path_ids = None not in paths and len(set(paths)) == len(paths)
    rows = np.arange(len(data))
    if limit is not None and limit < len(data):
        # Same rows as the tutorial's data.shuffle(seed=seed).select(range(limit)).
        rows = np.random.default_rng(seed).permutation(len(data))[:limit]
        data = data.select(rows)
        paths, files = [paths[r] for r in rows], [files[r] for r in rows]
    return Source(
        canonical_dataset_id(dataset),
        split,
        data,
        image_col,
        label_col,
        names,
        rows,
        max_pixels,
        paths=paths,
        files=files,
        path_ids=path_ids,
        payload_columns=columns,
        folder_metadata=folder_metadata,
        orphan_rows=folder.orphans if folder else {},
        unreadable=tuple(folder.unreadable) if folder else (),
        notes=tuple(notes),
        sampled=len(rows) < len(splits[split]),
    )


def _empty_folder(dataset: str, split: str) -> tuple[datasets.DatasetDict, FolderMetadata]:
    if any(f.lower().endswith(tuple(DATA_EXTENSIONS)) for _, _, fs in os.walk(dataset) for f in fs):
        raise DatasetLoadError(
            dataset, f"{dataset!r} holds data files, not images", kind="unreadable"
        )
    return datasets.DatasetDict({split: empty_split()}), FolderMetadata()


def _payload_columns(
    dataset: str,
    data: datasets.Dataset,
    folder_metadata: dict[str, dict] | None,
    used: tuple[str | None, ...],
    wanted: Sequence[str] | None,
) -> tuple[str, ...]:
    if folder_metadata is not None:
        available = list(dict.fromkeys(k for fields in folder_metadata.values() for k in fields))
        return metadata.choose(dataset, available, wanted, set(available), folder=True)
    available = [c for c in data.features if c not in used]
    plain = {c for c in available if metadata.plain(data.features[c])}
    return metadata.choose(dataset, available, wanted, plain)


def _dropped(folder_metadata: dict[str, dict] | None, wanted) -> list[str]:
    """A note on metadata fields named as lookalike's own (label, path...), which are not
    stored: they would overwrite what lookalike keeps there."""
    if folder_metadata is None or wanted is not None:
        return []
    names = dict.fromkeys(k for fields in folder_metadata.values() for k in fields)
    own = [shown(n) for n in names if n in OWN_FIELDS]
    if not own:
        return []
    return [
        f"metadata fields {', '.join(own)} are names lookalike keeps its own fields under, "
        "and are not stored: rename them to keep them"
    ]


def _label_names(data: datasets.Dataset, column: str | None) -> tuple[str, ...]:
    if column is None:
        return ()
    feat = data.features[column]
    if isinstance(feat, datasets.ClassLabel):
        return tuple(feat.names)
    if feat == datasets.Value("string"):
        return tuple(sorted(set(data.unique(column)) - {None}))
    return ()
