"""A folder of images as a dataset: class sub-folders become labels, split sub-folders splits.

    photos/cats/1.jpg, photos/dogs/2.png          -> split "train", labels cats, dogs
    photos/train/cats/1.jpg, photos/test/cats/... -> splits "train" and "test"

Our own walk rather than datasets' imagefolder: symlinks are followed but loops are cut, and
every file with an image extension becomes a row, so one that cannot be read is reported and
skipped at decode time instead of vanishing. Each row's `file_name` is its path relative to
the folder, with `/` separators: the same on every machine and from every working directory.
A `metadata.jsonl` or `metadata.csv` (imagefolder's convention) adds fields to the images it
names.
"""

from __future__ import annotations

import os
from pathlib import Path

import datasets

from lookalike.source.metadata import METADATA_FILES, read_folder_metadata

IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".jfif"}
DATA_EXTENSIONS = {".parquet", ".arrow", ".csv", ".json", ".jsonl", ".tsv"}
SPLIT_NAMES = {"train", "test", "validation", "valid", "val", "dev"}


def _walk_images(root: Path) -> list[Path]:
    """Image files under root, symlinked folders followed once each (loops cut)."""
    found, seen = [], set()
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        real = os.path.realpath(dirpath)
        if real in seen:
            dirnames[:] = []  # a symlink loop, or a folder reached twice
            continue
        seen.add(real)
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        found += [
            Path(dirpath, f)
            for f in sorted(filenames)
            if not f.startswith(".") and Path(f).suffix.lower() in IMAGE_EXTENSIONS
        ]
    return found


def is_image_folder(path: str) -> bool:
    """A folder of images, not a datasets folder or a folder of data files."""
    root = Path(path)
    if not root.is_dir() or (root / "dataset_dict.json").exists() or (root / "state.json").exists():
        return False
    for _, _, filenames in os.walk(root):
        data = [f for f in filenames if f not in METADATA_FILES]
        if any(Path(f).suffix.lower() in DATA_EXTENSIONS for f in data):
            return False
    return bool(_walk_images(root))


def _classes(folder: Path, paths: list[Path]) -> set[str]:
    return {p.relative_to(folder).parts[0] for p in paths if len(p.relative_to(folder).parts) > 1}


def _split(root: Path, folder: Path, paths: list[Path], classes: list[str]) -> datasets.Dataset:
    data: dict[str, list] = {
        "image": [{"bytes": None, "path": str(p)} for p in paths],
        "file_name": [p.relative_to(root).as_posix() for p in paths],
    }
    features = {"image": datasets.Image(decode=False), "file_name": datasets.Value("string")}
    if classes:
        index = {c: i for i, c in enumerate(classes)}
        # Images directly in the split's folder have no class: -1 is datasets' "no label".
        data["label"] = [
            index[p.relative_to(folder).parts[0]] if len(p.relative_to(folder).parts) > 1 else -1
            for p in paths
        ]
        features["label"] = datasets.ClassLabel(names=classes)
    return datasets.Dataset.from_dict(data, features=datasets.Features(features))


def load_image_folder(path: str) -> tuple[datasets.DatasetDict, dict[str, dict]]:
    """The folder's splits, and its metadata fields by `file_name`."""
    root = Path(path)
    subdirs = [d for d in root.iterdir() if d.is_dir() and not d.name.startswith(".")]
    if subdirs and all(d.name.lower() in SPLIT_NAMES for d in subdirs):
        walked = {d: _walk_images(d) for d in sorted(subdirs)}
        # One label list for every split, so a label id means the same class in each.
        found = set().union(*(_classes(d, paths) for d, paths in walked.items()))
        classes = sorted(found)
        splits = {d.name: _split(root, d, paths, classes) for d, paths in walked.items()}
        return datasets.DatasetDict(splits), read_folder_metadata(root, [root, *subdirs])
    paths = _walk_images(root)
    split = _split(root, root, paths, sorted(_classes(root, paths)))
    return datasets.DatasetDict({"train": split}), read_folder_metadata(root, [root])
