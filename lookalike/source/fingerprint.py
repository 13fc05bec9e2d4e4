"""What an image is, independent of where it sits: a sha256 of its bytes, and for a file a
stat signature that tells, without reading it, whether it may have changed since.

The signature holds size, mtime, ctime and inode. Users can set mtime (`touch -d`, `cp -p`,
rsync), never ctime, which the kernel updates on every write, rename or chmod: a file
overwritten with an old mtime still gets a new signature. A signature that differs only means
"read it again"; the sha256 decides.
"""

from __future__ import annotations

import hashlib
import os

from lookalike.images import open_regular_file

CHUNK = 1 << 20


def file_stat(path: str | os.PathLike) -> str:
    """The file's stat signature (raises OSError when it cannot be read)."""
    st = os.stat(path)
    return f"{st.st_size}:{st.st_mtime_ns}:{st.st_ctime_ns}:{st.st_ino}"


def changed_within(stat: str, seconds: float, now_ns: int) -> bool:
    """Whether the file was written (or its mtime set) less than `seconds` ago."""
    _, mtime, ctime, _ = (int(v) for v in stat.split(":"))
    return now_ns - max(mtime, ctime) < seconds * 1e9


def sha256_bytes(data: bytes | memoryview) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | os.PathLike) -> str:
    """The sha256 of a file's bytes, read in chunks (raises OSError when it cannot be read,
    BadImage when it is not a regular file or is empty)."""
    digest = hashlib.sha256()
    with open_regular_file(path, str(path)) as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def read_file(path: str | os.PathLike) -> tuple[bytes, str, str]:
    """A file's bytes, its stat signature (taken first) and the bytes' sha256.

    Taking the signature before reading means a write that races the read always leaves the
    file with another signature than the one stored, so the next sync reads it again. Only
    a regular file is opened (BadImage otherwise): a named pipe would never answer."""
    stat = file_stat(path)
    with open_regular_file(path, str(path)) as f:
        data = f.read()
    return data, stat, sha256_bytes(data)
