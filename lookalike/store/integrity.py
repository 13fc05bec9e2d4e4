"""What a completed ingest left in an edge collection, recorded so damage is noticed on open.

After each completed ingest the collection's point count and, for each file holding vectors,
the HNSW graph or point ids, its size, modification time and CRC-32 go into `check.json`;
the first write of a later ingest removes the record (the files are about to change). On open,
each recorded file must exist with its size; one whose modification time changed must still
have its CRC (so a copied store costs one full read, then is fast again); and the engine must
count the recorded points. The engine itself rewrites other files (flags, journals, configs)
even when only reading, so those are not recorded.
"""

from __future__ import annotations

import contextlib
import json
import os
import zlib

CHECK_FILE = "check.json"


def _recorded(relpath: str) -> bool:
    parts = relpath.split("/")
    name = parts[-1]
    if "id_tracker" in name:
        # Except the versions file: opening a shard with deleted points rewrites it.
        return not name.endswith(".versions")
    if "vector_index" in parts:
        return True
    return "vector_storage" in parts and "deleted" not in relpath and name != "status.dat"


def _crc(path: str) -> int:
    crc = 0
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            crc = zlib.crc32(block, crc)
    return crc


def _files(shard: str) -> dict[str, list[int]]:
    found = {}
    segments = os.path.join(shard, "segments")
    for parent, _, names in os.walk(segments):
        for name in names:
            path = os.path.join(parent, name)
            rel = os.path.relpath(path, shard).replace(os.sep, "/")
            if _recorded(rel):
                st = os.stat(path)
                found[rel] = [st.st_size, st.st_mtime_ns, _crc(path)]
    return found


def record(folder: str, shard: str, points: int) -> None:
    """Record what the collection in `folder` (engine files in `shard`) holds now."""
    data = {"points": points, "files": _files(shard)}
    _write(folder, data)


def clear(folder: str) -> None:
    """Forget the record: the collection is about to change."""
    with contextlib.suppress(FileNotFoundError):
        os.remove(os.path.join(folder, CHECK_FILE))


def _write(folder: str, data: dict) -> None:
    tmp = os.path.join(folder, CHECK_FILE + ".tmp")
    with open(tmp, "w") as f:
        json.dump(data, f)
    os.replace(tmp, os.path.join(folder, CHECK_FILE))


def verify(folder: str, shard: str) -> tuple[int | None, str | None]:
    """(points recorded, None) when the files are as recorded, (None, None) when nothing is
    recorded (an older store, or an ingest not completed), (None, what is wrong) otherwise."""
    try:
        with open(os.path.join(folder, CHECK_FILE)) as f:
            data = json.load(f)
        points, files = int(data["points"]), dict(data["files"])
    except FileNotFoundError:
        return None, None
    except RecursionError:
        return None, f"has a {CHECK_FILE} nested too deeply to read"
    except (OSError, ValueError, KeyError, TypeError) as e:
        return None, f"has an unreadable {CHECK_FILE} ({type(e).__name__})"
    refreshed = False
    for rel, (size, mtime, crc) in files.items():
        path = os.path.join(shard, *rel.split("/"))
        try:
            st = os.stat(path)
        except OSError:
            return None, f"lost its file {rel}"
        if st.st_size != size:
            return None, f"has its file {rel} at {st.st_size} bytes; it had {size}"
        if st.st_mtime_ns != mtime:
            if _crc(path) != crc:
                return None, f"has its file {rel} changed since the last completed ingest"
            files[rel] = [size, st.st_mtime_ns, crc]
            refreshed = True
    if refreshed:  # same content, new times (a copy): check by time again next time
        with contextlib.suppress(OSError):
            _write(folder, {"points": points, "files": files})
    return points, None
