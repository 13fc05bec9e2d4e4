"""What a model or a dataset is, apart from where it lies: a store, its photos and its model
copied to another folder or machine are still the same collection there.

A local model folder is known by the hash of the files that decide its vectors (config,
image processor, weights); a hub model by its id (and revision). A folder of images is known
by the contents its points recorded (the sync compares those), and a point's id keeps naming
the place the collection was first built from (`CollectionMeta.dataset_id`).
"""

from __future__ import annotations

import functools
import hashlib
import os
from collections.abc import Callable, Iterable
from pathlib import Path

# The files that decide what a model folder computes; others (README, training logs) do not.
MODEL_FILES = ("config.json", "preprocessor_config.json", "model.safetensors.index.json")
WEIGHTS = (".safetensors", ".bin", ".pt", ".pth", ".onnx", ".xml")
CHUNK = 4 * 2**20


def _model_files(folder: str) -> list[Path]:
    root = Path(folder)
    return sorted(
        p for p in root.iterdir() if p.is_file() and (p.name in MODEL_FILES or p.suffix in WEIGHTS)
    )


def model_hash(model: str, revision: str | None = None) -> str | None:
    """`sha256:...` over a local model folder's config and weights (names and bytes), or
    `hub:ID@REVISION` for a hub id; None for a folder without a config.json (nothing to
    recognise it by)."""
    if not os.path.isdir(model):
        return f"hub:{model}@{revision}" if revision else None
    files = _model_files(model)
    if not any(p.name == "config.json" for p in files):
        return None
    stats = tuple((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in files)
    return _hash_files(os.path.realpath(model), stats)


@functools.lru_cache(maxsize=16)
def _hash_files(folder: str, stats: tuple) -> str:
    """Cached by the files' sizes and times: a search checks the same folder twice."""
    whole = hashlib.sha256()
    for name, _, _ in stats:
        one = hashlib.sha256()
        with open(os.path.join(folder, name), "rb") as f:
            while chunk := f.read(CHUNK):
                one.update(chunk)
        whole.update(f"{name}\0{one.hexdigest()}\n".encode())
    return "sha256:" + whole.hexdigest()


def same_model(have: str, have_hash: str | None, want: str) -> bool:
    """Whether model `want` (a folder or hub id) is the model recorded as `have`: the same id,
    or the same files (`have_hash`; for a record without one, `have`'s folder if it is still
    there)."""
    if have == want:
        return True
    if have_hash is None and os.path.isdir(have):
        have_hash = model_hash(have)
    if have_hash is None or have_hash.startswith("hub:"):
        return False
    return model_hash(want) == have_hash


def same_folder(a: str, b: str) -> bool:
    """Two names of one folder (a symlink, a relative path)."""
    return os.path.realpath(a) == os.path.realpath(b)


def anchors(store_path: str | None) -> list[str]:
    """Where a moved folder is looked for: beside the store folder and above it, then the
    current directory."""
    found = []
    if store_path:
        here = os.path.abspath(store_path)
        found += [here, os.path.dirname(here), os.path.dirname(os.path.dirname(here))]
    found.append(os.getcwd())
    return list(dict.fromkeys(found))


def find_moved(old: str, near: Iterable[str], accept: Callable[[str], bool]) -> str | None:
    """Where folder `old` (gone from its recorded place) is now: its last one to three path
    parts under each of `near`, the first that `accept` recognises."""
    if not os.path.isabs(old) or os.path.exists(old):
        return None
    parts = Path(old).parts[1:]
    for base in near:
        for keep in range(1, min(3, len(parts)) + 1):
            candidate = os.path.join(base, *parts[-keep:])
            if os.path.isdir(candidate) and accept(candidate):
                return candidate
    return None


def locate_model(model: str, recorded_hash: str | None, store_path: str | None) -> str:
    """The recorded model folder, or where the same files are now when it is gone from there
    (beside the store, above it, or here); else as recorded (its absence is said on loading)."""
    if recorded_hash is None or not recorded_hash.startswith("sha256:"):
        return model
    found = find_moved(model, anchors(store_path), lambda c: model_hash(c) == recorded_hash)
    return found or model


def locate_folder(folder: str, store_path: str | None, probe: Callable[[str], bool]) -> str:
    """The recorded dataset folder, or where it is now (as `probe`, which looks for a few of
    its stored files, recognises it) when it is gone from there; else as recorded."""
    return find_moved(folder, anchors(store_path), probe) or folder
