"""Where converted models are kept: one folder per (model content, runtime, its version,
weights, pooling), written whole or not at all, so that two processes converting the same
model at once both end with a good copy and neither reads a half-written one.

Imports neither torch nor transformers: a search that finds its model here starts without them.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

# Bumped when what lookalike converts changes (the wrapper, the input layout): older entries
# are then not read.
FORMAT = 1
# The model files that decide its weights and preprocessing; not README, git or lock files.
_SKIP_SUFFIXES = (".md", ".lock", ".txt", ".gitattributes")


def cache_root() -> Path:
    """Beside the Hugging Face cache (HF_HOME, else ~/.cache/huggingface): what lookalike
    derives from hub models sits with them, and a test's temporary HF_HOME isolates it too."""
    home = os.environ.get("HF_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"),
        "huggingface",
    )
    return Path(home) / "lookalike"


def model_folder(model: str, revision: str | None = None) -> str | None:
    """The folder holding a model's files: a local folder as given, a hub id's cached snapshot
    (None where it is not cached)."""
    if os.path.isdir(model):
        return os.path.abspath(model)
    try:
        from huggingface_hub import snapshot_download

        return snapshot_download(model, revision=revision, local_files_only=True)
    except Exception:  # not cached, no hub library: no cache key, so no cached model
        return None


def content_hash(folder: str) -> str:
    """sha256 over the names and contents of a model folder's files. A file's own hash is
    remembered by its path, size and modification time, so a model of 350 MB is read once,
    not at every start."""
    h = hashlib.sha256()
    for name in sorted(os.listdir(folder)):
        path = os.path.join(folder, name)
        if name.startswith(".") or name.endswith(_SKIP_SUFFIXES) or not os.path.isfile(path):
            continue
        h.update(name.encode() + b"\0" + _file_hash(path).encode() + b"\0")
    return h.hexdigest()


def _file_hash(path: str) -> str:
    st = os.stat(path)
    real = os.path.realpath(path)
    memo_key = hashlib.sha256(f"{real}\0{st.st_size}\0{st.st_mtime_ns}".encode()).hexdigest()
    memo = cache_root() / "hashes" / memo_key
    try:
        return memo.read_text().strip()
    except OSError:
        pass
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    digest = h.hexdigest()
    with _suppress_os_error():
        write_atomic(memo, digest)
    return digest


def entry_key(content: str, **parts: object) -> str:
    """The name of a cache entry: the model's content hash and what was made of it."""
    text = json.dumps({"content": content, "format": FORMAT, **parts}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def entry(key: str) -> Path:
    return cache_root() / "models" / key


def publish(key: str, fill) -> Path:
    """Make entry `key` by calling `fill(folder)` on a private folder and renaming it into
    place; if another process got there first, its entry is kept and ours dropped."""
    final = entry(key)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{key}-", dir=final.parent))
    try:
        fill(tmp)
        try:
            os.rename(tmp, final)
        except OSError:
            if not (final / "meta.json").exists():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final


def read_meta(key: str) -> dict | None:
    """An entry's description, or None where there is no complete entry."""
    try:
        return json.loads((entry(key) / "meta.json").read_text())
    except (OSError, ValueError):
        return None


def write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}-", dir=path.parent)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)


class _suppress_os_error:
    """A read-only cache folder costs a rehash next time, never a failed command."""

    def __enter__(self):
        return self

    def __exit__(self, kind, value, tb):
        return kind is not None and issubclass(kind, OSError)
