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
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from lookalike.errors import shown
from lookalike.images import IMAGE_EXTENSIONS
from lookalike.source.exif import with_exif
from lookalike.source.metadata import (
    METADATA_FILES,
    FolderMetadata,
    _listed,
    read_folder_metadata,
)

if TYPE_CHECKING:  # imported where a folder becomes a dataset: listing files needs none
    import datasets

DATA_EXTENSIONS = {".parquet", ".arrow", ".csv", ".json", ".jsonl", ".tsv"}
SPLIT_NAMES = {"train", "test", "validation", "valid", "val", "dev"}


@dataclass
class Walk:
    """An image folder's files, and what could not be walked: `unreadable`, sub-folders that
    could not be listed (relative, `/`-ended: their images are not gone, so a sync keeps
    their points); `notes`, each problem in words."""

    paths: list[str] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def walk(root: Path | str) -> Walk:
    """Image files under root as paths relative to it, `/`-separated, in name order. Symlinked
    folders inside it are followed once each (loops cut); links that leave it are not (a link
    to / would walk the whole disk, and a link to a file elsewhere would serve that file).
    A name that is not UTF-8 is skipped and named. Strings, not Paths: a sync walks every
    file of the folder each time, and pathlib costs ten times more."""
    top = str(root)
    real_top = os.path.realpath(top)
    out, seen, outside, undecodable = Walk(), set(), [], []
    stack = [("", top)]
    while stack:
        prefix, folder = stack.pop()
        real = os.path.realpath(folder)
        if real in seen:
            continue  # a symlink loop, or a folder reached twice
        seen.add(real)
        try:
            with os.scandir(folder) as listing:
                entries = sorted(listing, key=lambda e: e.name)
        except OSError as e:
            if prefix:  # the top folder's own errors are the loader's to say
                out.unreadable.append(prefix)
                out.notes.append(
                    f"cannot read the folder {shown(prefix)} ({e.strerror or e}): its images "
                    "are kept as they were, not removed"
                )
            continue
        folders = []
        for entry in entries:
            name = entry.name
            if name.startswith("."):
                continue
            if not _utf8(name):
                undecodable.append(prefix + name)
                continue
            link = entry.is_symlink()
            if link and not _inside(os.path.realpath(entry.path), real_top):
                outside.append(prefix + name)
                continue
            try:
                is_dir = entry.is_dir()
            except OSError:
                is_dir = False
            if is_dir:
                folders.append((prefix + name + "/", entry.path))
            elif os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS:
                out.paths.append(prefix + name)
        stack += reversed(folders)
    if outside:
        out.notes.append(f"symlinks that lead out of the folder, not followed: {_listed(outside)}")
    if undecodable:
        named = [repr(os.fsencode(n))[2:-1] for n in undecodable]  # the bytes, escaped
        out.notes.append(f"file names that are not UTF-8, skipped (rename them): {_listed(named)}")
    return out


def _utf8(name: str) -> bool:
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:  # os.scandir's surrogate escapes of bytes that are not UTF-8
        return False
    return True


def _inside(path: str, top: str) -> bool:
    return path == top or path.startswith(top.rstrip(os.sep) + os.sep)


def _walk_images(root: Path) -> list[str]:
    return walk(root).paths


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
    import datasets

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


def empty_split() -> datasets.Dataset:
    """A folder's split with no images."""
    return _split(Path("."), "", [], [])


def load_image_folder(path: str, exif: bool = True) -> tuple[datasets.DatasetDict, FolderMetadata]:
    """The folder's splits, and its metadata fields by `file_name` (with what could not be
    walked: unreadable sub-folders, links out of it, names that are not UTF-8; with `exif`,
    each photo's EXIF fields under its own: see source/exif.py)."""
    import datasets

    root = Path(path)
    subdirs = [d for d in root.iterdir() if d.is_dir() and not d.name.startswith(".")]
    if subdirs and all(d.name.lower() in SPLIT_NAMES for d in subdirs):
        walks = {d.name: walk(d) for d in sorted(subdirs)}
        walked = {n: w.paths for n, w in walks.items()}
        # One label list for every split, so a label id means the same class in each.
        classes = sorted(set().union(*(_classes(paths) for paths in walked.values())))
        splits = {n: _split(root, n + "/", paths, classes) for n, paths in walked.items()}
        every = [f"{n}/{p}" for n, paths in walked.items() for p in paths]
        fields = read_folder_metadata(root, [root, *subdirs], every)
        for n, w in walks.items():
            _add_walk(fields, w, n + "/")
        if exif:
            fields.rows = with_exif(root, every, fields.rows)
        return datasets.DatasetDict(splits), fields
    w = walk(root)
    split = _split(root, "", w.paths, sorted(_classes(w.paths)))
    fields = read_folder_metadata(root, [root], w.paths)
    if exif:
        fields.rows = with_exif(root, w.paths, fields.rows)
    return datasets.DatasetDict({"train": split}), _add_walk(fields, w, "")


def _add_walk(fields: FolderMetadata, w: Walk, prefix: str) -> FolderMetadata:
    fields.unreadable += [prefix + u for u in w.unreadable]
    fields.notes[:0] = w.notes
    return fields
