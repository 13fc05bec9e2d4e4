"""Loading a dataset (hub id, local datasets folder, or a folder of images) into a `Source`
that yields batches of decoded images with their ids and payloads."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import datasets
import numpy as np

from lookalike import hub
from lookalike.defaults import DEFAULT_MAX_PIXELS
from lookalike.errors import BadImage, DatasetLoadError
from lookalike.images import open_image
from lookalike.records import ImageRecord, Skipped
from lookalike.source.folder import is_image_folder, load_image_folder

# Point ids are uuid5 of (dataset, split, row): the same image always gets the same id.
ID_NAMESPACE = uuid.UUID("6f1b7a52-4d0e-4c7b-9a55-6b3f0c1e2d41")
PATH_COLUMNS = ("image_file_path", "file_path", "filepath", "path", "filename", "file_name")


def point_id(dataset: str, split: str, row: int) -> str:
    return str(uuid.uuid5(ID_NAMESPACE, f"{dataset}\x1f{split}\x1f{row}"))


def canonical_dataset_id(dataset: str) -> str:
    return os.path.abspath(dataset) if os.path.isdir(dataset) else dataset


def _load_dict(dataset: str) -> datasets.DatasetDict:
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
            loaded = load_image_folder(dataset)
        else:
            loaded = datasets.load_dataset(dataset)  # hub id or a folder of data files
    except Exception as e:  # datasets raises many types; all mean "could not load"
        raise _load_error(dataset, e) from e
    if isinstance(loaded, datasets.Dataset):
        loaded = datasets.DatasetDict({"train": loaded})
    return loaded


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


@dataclass
class Source:
    """One split of a dataset, optionally sampled, with its image and label columns resolved."""

    name: str
    split: str
    data: datasets.Dataset  # image column not decoded: decoding happens per item, so bad ones skip
    image_column: str
    label_column: str | None
    label_names: tuple[str, ...]
    rows: np.ndarray  # original row numbers in the split, in the order they are yielded
    max_pixels: int = DEFAULT_MAX_PIXELS

    def __len__(self) -> int:
        return len(self.rows)

    def _label(self, value) -> tuple[int | None, str | None]:
        if value is None:
            return None, None
        if isinstance(value, str):
            return (self.label_names.index(value) if value in self.label_names else None), value
        value = int(value)
        if value < 0:  # datasets' "no label"
            return None, None
        name = self.label_names[value] if 0 <= value < len(self.label_names) else str(value)
        return value, name

    def _path(self, batch: dict, i: int, image_value) -> str | None:
        for col in PATH_COLUMNS:
            if col in batch and col != self.image_column and batch[col][i] is not None:
                return str(batch[col][i])
        if isinstance(image_value, dict):
            return image_value.get("path")
        return image_value if isinstance(image_value, str) else None

    def point_id(self, position: int) -> str:
        return point_id(self.name, self.split, int(self.rows[position]))

    def load(self, positions: Sequence[int]) -> tuple[list[ImageRecord], list[Skipped]]:
        """Decode these positions; unreadable images come back as Skipped, with a reason.

        Safe to call from several threads at once (arrow reads and PIL decoding are)."""
        positions = list(positions)
        batch = self.data[positions] if positions else {}
        records, skipped = [], []
        for i, row in enumerate(self.rows[positions]):
            item = self._record(batch, i, int(row))
            (records if isinstance(item, ImageRecord) else skipped).append(item)
        return records, skipped

    def batches(self, batch_size: int) -> Iterator[tuple[list[ImageRecord], list[Skipped]]]:
        """Yield (decoded records, skipped items) batch by batch; memory stays one batch."""
        for start in range(0, len(self.rows), batch_size):
            yield self.load(range(start, min(start + batch_size, len(self.rows))))

    def _record(self, batch: dict, i: int, row: int) -> ImageRecord | Skipped:
        value = batch[self.image_column][i]
        path = self._path(batch, i, value)
        try:
            image = open_image(value, self.max_pixels)
        except BadImage as e:
            return Skipped(self.split, row, path, e.reason, e.kind)
        label, label_name = self._label(batch[self.label_column][i] if self.label_column else None)
        return ImageRecord(
            id=point_id(self.name, self.split, row),
            split=self.split,
            row=row,
            label=label,
            label_name=label_name,
            path=path,
            image=image,
        )

    def record(self, row: int) -> ImageRecord:
        """The record at original row `row` of the split (raises BadImage if it is unreadable)."""
        position = np.flatnonzero(self.rows == row)
        if len(position) == 0:
            raise DatasetLoadError(
                self.name,
                f"row {row} is out of range for split {self.split!r} of {self.name!r} "
                f"(rows 0..{len(self.data) - 1})",
                kind="row",
                split=self.split,
            )
        i = int(position[0])
        result = self._record(self.data[i : i + 1], 0, row)
        if isinstance(result, Skipped):
            raise BadImage(result.path or f"{self.split}:{row}", result.reason, kind=result.kind)
        return result


def load_source(
    dataset: str,
    split: str = "train",
    *,
    image_column: str | None = None,
    label_column: str | None = None,
    limit: int | None = None,
    seed: int = 42,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> Source:
    """Load `split` of `dataset`; `limit` samples as shuffle(seed).select(range(limit)) does."""
    splits = _load_dict(dataset)
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
    rows = np.arange(len(data))
    if limit is not None and limit < len(data):
        # Same rows as the tutorial's data.shuffle(seed=seed).select(range(limit)).
        rows = np.random.default_rng(seed).permutation(len(data))[:limit]
        data = data.select(rows)
    name = canonical_dataset_id(dataset)
    return Source(name, split, data, image_col, label_col, names, rows, max_pixels)


def _label_names(data: datasets.Dataset, column: str | None) -> tuple[str, ...]:
    if column is None:
        return ()
    feat = data.features[column]
    if isinstance(feat, datasets.ClassLabel):
        return tuple(feat.names)
    if feat == datasets.Value("string"):
        return tuple(sorted(set(data.unique(column))))
    return ()
