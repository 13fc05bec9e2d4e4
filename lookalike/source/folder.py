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

from lookalike.images import IMAGE_EXTENSIONS
from lookalike.source.exif import with_exif
from lookalike.source.metadata import METADATA_FILES, read_folder_metadata

DATA_EXTENSIONS = {".parquet", ".arrow", ".csv", ".json", ".jsonl", ".tsv"}
SPLIT_NAMES = {"train", "test", "validation", "valid", "val", "dev"}


def _walk_images(root: Path) -> list[str]:
    """Image files under root as paths relative to it, `/`-separated, in name order;
    symlinked folders followed once each (loops cut). Strings, not Paths: a sync walks
    every file of the folder each time, and pathlib costs ten times more."""
    found, seen, top = [], set(), str(root)
    for dirpath, dirnames, filenames in os.walk(top, followlinks=True):
        real = os.path.realpath(dirpath)
        if real in seen:
            dirnames[:] = []  # a symlink loop, or a folder reached twice
            continue
        seen.add(real)
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        prefix = os.path.relpath(dirpath, top).replace(os.sep, "/") + "/"
        prefix = "" if prefix == "./" else prefix
        found += [
            prefix + f
            for f in sorted(filenames)
            if not f.startswith(".") and os.path.splitext(f)[1].lower() in IMAGE_EXTENSIONS
        ]
    return found


def image_files(folder: str) -> list[str]:
    """The image files under `folder`, in name order (as ingest walks it)."""
    return [os.path.join(folder, p) for p in _walk_images(Path(folder))]


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


def _classes(paths: list[str]) -> set[str]:
    return {p.split("/", 1)[0] for p in paths if "/" in p}


def _split(root: Path, prefix: str, paths: list[str], classes: list[str]) -> datasets.Dataset:
    """`paths` relative to the split's folder, `prefix` + path relative to the dataset's."""
    data: dict[str, list] = {
        "image": [{"bytes": None, "path": os.path.join(root, prefix + p)} for p in paths],
        "file_name": [prefix + p for p in paths],
    }
    features = {"image": datasets.Image(decode=False), "file_name": datasets.Value("string")}
    if classes:
        index = {c: i for i, c in enumerate(classes)}
        # Images directly in the split's folder have no class: -1 is datasets' "no label".
        data["label"] = [index[p.split("/", 1)[0]] if "/" in p else -1 for p in paths]
        features["label"] = datasets.ClassLabel(names=classes)
    return datasets.Dataset.from_dict(data, features=datasets.Features(features))


def load_image_folder(path: str, exif: bool = True) -> tuple[datasets.DatasetDict, dict[str, dict]]:
    """The folder's splits, and its metadata fields by `file_name` (with `exif`, each
    photo's EXIF fields under them: see source/exif.py)."""
    root = Path(path)
    subdirs = [d for d in root.iterdir() if d.is_dir() and not d.name.startswith(".")]
    if subdirs and all(d.name.lower() in SPLIT_NAMES for d in subdirs):
        walked = {d.name: _walk_images(d) for d in sorted(subdirs)}
        # One label list for every split, so a label id means the same class in each.
        classes = sorted(set().union(*(_classes(paths) for paths in walked.values())))
        splits = {n: _split(root, n + "/", paths, classes) for n, paths in walked.items()}
        fields = read_folder_metadata(root, [root, *subdirs])
        files = [f"{n}/{p}" for n, paths in walked.items() for p in paths]
        return datasets.DatasetDict(splits), with_exif(root, files, fields) if exif else fields
    paths = _walk_images(root)
    split = _split(root, "", paths, sorted(_classes(paths)))
    fields = read_folder_metadata(root, [root])
    return datasets.DatasetDict({"train": split}), with_exif(
        root, paths, fields
    ) if exif else fields
