"""Your own fields on each point: a dataset's other columns, or an image folder's
`metadata.jsonl` / `metadata.csv` (a `file_name` column naming each image relative to the
metadata file, the convention of Hugging Face's `imagefolder` loader).

Payload values must be plain JSON (null, booleans, finite numbers, strings, lists and objects
of them): anything else is refused with the column's name before anything is stored.
"""

from __future__ import annotations

import csv
import datetime
import decimal
import io
import json
import math
import posixpath
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from lookalike.errors import DatasetLoadError, shown
from lookalike.query import unnameable, unnameable_message
from lookalike.records import OWN_FIELDS

METADATA_FILES = ("metadata.jsonl", "metadata.csv")
KEY = "file_name"
# Digits capped: a longer "number" is kept as text (a payload holds 64-bit integers).
INT = re.compile(r"^-?(0|[1-9][0-9]{0,17})$")
FLOAT = re.compile(r"^-?(0|[1-9][0-9]{0,30})(\.[0-9]{1,30})?([eE][-+]?[0-9]{1,2})?$")
INT64 = 2**63


class UnsafeValue(ValueError):
    """A value with no plain JSON form; `what` says what it is."""

    def __init__(self, what: str) -> None:
        self.what = what
        super().__init__(what)


def json_value(value: Any) -> Any:
    """`value` as plain JSON (dates become ISO strings), or UnsafeValue."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        if not -INT64 <= value < INT64:
            raise UnsafeValue(f"an integer too large for a payload ({value})")
        return value
    if isinstance(value, (float, decimal.Decimal)):
        if not math.isfinite(value):
            raise UnsafeValue(f"{value} (not a finite number)")
        return float(value)
    if isinstance(value, (datetime.date, datetime.time)):
        return value.isoformat()
    if isinstance(value, (list, tuple)):
        return [json_value(v) for v in value]
    if isinstance(value, dict):
        if not all(isinstance(k, str) for k in value):
            raise UnsafeValue("an object with keys that are not strings")
        return {k: json_value(v) for k, v in value.items()}
    if isinstance(value, (bytes, bytearray, memoryview)):
        raise UnsafeValue(f"bytes ({len(value)} bytes)")
    raise UnsafeValue(f"a {type(value).__name__}")


def checked(dataset: str, column: str, value: Any, where: str) -> Any:
    try:
        return json_value(value)
    except UnsafeValue as e:
        raise DatasetLoadError(
            dataset,
            f"column {column!r} of {where} holds {e.what}, which a payload cannot store as "
            "plain JSON; nothing was stored",
            kind="payload",
        ) from None


def plain(feature: Any) -> bool:
    """Whether a datasets feature holds plain JSON values (no images, audio or bytes)."""
    import datasets  # loaded already where there are features; not by listing a folder

    if isinstance(feature, datasets.Value):
        return "binary" not in feature.dtype
    if isinstance(feature, datasets.ClassLabel):
        return True
    if isinstance(feature, dict):
        return all(plain(f) for f in feature.values())
    if isinstance(feature, (list, tuple)):
        return all(plain(f) for f in feature)
    inner = getattr(feature, "feature", None)  # Sequence, List, LargeList
    return inner is not None and plain(inner)


def choose(
    dataset: str,
    available: Iterable[str],
    wanted: Iterable[str] | None,
    default_ok: set[str],
    folder: bool = False,
) -> tuple[str, ...]:
    """The payload columns: `wanted` (each must exist and not be one of lookalike's own
    fields), or by default every column in `default_ok` that is not one of our fields.
    An image `folder`'s columns are the fields of its metadata file."""
    available = list(available)
    if wanted is None:
        return tuple(c for c in available if c in default_ok and c not in OWN_FIELDS)
    wanted = [w for w in wanted if w]
    for column in wanted:
        if column in OWN_FIELDS:
            raise DatasetLoadError(
                dataset,
                f"payload column {column!r} would overwrite lookalike's own {column!r} field",
                kind="payload_column",
                available=available,
            )
        if column not in available:
            listed = ", ".join(available) or "none"
            where = (
                f"the metadata files ({' or '.join(METADATA_FILES)}) of {dataset!r}"
                if folder
                else repr(dataset)
            )
            raise DatasetLoadError(
                dataset,
                f"no payload column {column!r} in {where} (columns: {listed})",
                kind="payload_column",
                available=available,
            )
    return tuple(wanted)


@dataclass
class FolderMetadata:
    """An image folder's metadata files, matched with its images: `rows`, the fields of each
    image by path; `orphans`, the fields of rows that name no image there, by the path they
    name (a renamed image's row, say); `notes`, what a user should hear about the match."""

    rows: dict[str, dict[str, Any]] = field(default_factory=dict)
    orphans: dict[str, dict[str, Any]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)  # sub-folders that could not be listed


def read_folder_metadata(
    root: Path, folders: Iterable[Path], images: Iterable[str] = ()
) -> FolderMetadata:
    """Fields by image path relative to `root`, from the metadata files in `folders`, matched
    with `images` (every image path under `root`): a row's path is taken as Unicode NFC with
    `.` and `..` resolved, and one that matches no image exactly may match one ignoring case.
    What does not match is said in `notes`, never dropped in silence."""
    images = list(images)
    read = _read_rows(root, folders)
    matched = _Matcher(images)
    out = FolderMetadata(notes=read.notes)
    for path, row in read.rows.items():
        image = matched(path)
        if image is None:
            out.orphans[path] = row
        else:
            out.rows[image] = row
    if matched.by_case:
        out.notes.append(
            f"metadata rows that match an image only when ignoring case: "
            f"{_listed(matched.by_case)}; write the file names as they are on disk"
        )
    if out.orphans:
        out.notes.append(
            "metadata rows that name no image in the folder, whose fields are not stored: "
            + _listed(out.orphans)
        )
    if read.rows:
        bare = [p for p in images if p not in out.rows]
        if bare:
            out.notes.append(
                f"images without a metadata row, stored with no fields: {_listed(bare)}"
            )
    out.notes += mixed_types(out.rows)
    return out


class _Matcher:
    """A metadata row's path to the image it names: as written, then in NFC (a name typed
    on macOS is NFD), then ignoring case (noted in `by_case`)."""

    def __init__(self, images: list[str]) -> None:
        self.exact = set(images)
        self.nfc = {unicodedata.normalize("NFC", p): p for p in images}
        self.folded = {unicodedata.normalize("NFC", p).casefold(): p for p in images}
        self.by_case: list[str] = []

    def __call__(self, path: str) -> str | None:
        if path in self.exact:
            return path
        nfc = unicodedata.normalize("NFC", path)
        if nfc in self.nfc:
            return self.nfc[nfc]
        image = self.folded.get(nfc.casefold())
        if image is not None:
            self.by_case.append(path)
        return image


@dataclass
class _Rows:
    rows: dict[str, dict[str, Any]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def _read_rows(root: Path, folders: Iterable[Path]) -> _Rows:
    """Every metadata row of `folders` by the path it names relative to `root` (resolved),
    with notes on rows that name a path outside the folder, or an image already named."""
    out, outside, repeated = _Rows(), [], []
    named: dict[str, str] = {}  # fields no filter can name, and where each first appears
    for folder in folders:
        present = [folder / name for name in METADATA_FILES if (folder / name).is_file()]
        if len(present) > 1:
            out.notes.append(
                f"{shown(str(folder))} holds both {' and '.join(METADATA_FILES)}: fields are "
                f"read from both, and {METADATA_FILES[-1]}'s row wins for an image both name"
            )
        base = PurePosixPath(folder.relative_to(root).as_posix())
        for file in present:
            rows = _read_jsonl(file) if file.suffix == ".jsonl" else _read_csv(file)
            for number, row in rows:
                for name in row:
                    if name not in named and unnameable(name):
                        line = number if file.suffix == ".jsonl" else 1  # a CSV's header
                        named[name] = f"{shown(str(file))} line {line}"
                key = row.pop(KEY, None)
                if not isinstance(key, str) or not key:
                    raise DatasetLoadError(
                        str(root),
                        f"{file} line {number}: every row needs a {KEY!r}",
                        kind="unreadable",
                    )
                path = _resolved(root, base, key)
                if path is None:
                    outside.append(key)
                    continue
                if path in out.rows:
                    repeated.append(path)
                out.rows[path] = row
    out.notes += [unnameable_message(name, origin) for name, origin in named.items()]
    if outside:
        out.notes.append(
            f"metadata rows that name a file outside the folder, ignored: {_listed(outside)}"
        )
    if repeated:
        out.notes.append(
            "images named by more than one metadata row (the last row wins): " + _listed(repeated)
        )
    return out


def field_origin(dataset: str, name: str) -> str | None:
    """Where an image folder's metadata field `name` first appears ("FILE line N", FILE
    relative to the folder: a server's answer shows no path of its own), for a message
    naming it; None when no metadata file of the folder has it (or it is no folder). Reads
    the files: for messages, not for every query."""
    root = Path(dataset)
    if not root.is_dir():
        return None
    folders = [root, *sorted(d for d in root.iterdir() if d.is_dir() and d.name[:1] != ".")]
    for file in (f / n for f in folders for n in METADATA_FILES):
        try:
            rows = _read_jsonl(file) if file.suffix == ".jsonl" else _read_csv(file)
        except (OSError, DatasetLoadError):
            continue
        for number, row in rows:
            if name in row:
                line = number if file.suffix == ".jsonl" else 1
                return f"{shown(file.relative_to(root).as_posix())} line {line}"
    return None


def _resolved(root: Path, base: PurePosixPath, key: str) -> str | None:
    """The path a row's `file_name` names, relative to `root` with `.` and `..` resolved;
    None if it leaves the folder. An absolute path inside the folder is taken relative."""
    key = key.replace("\\", "/")
    if posixpath.isabs(key):
        inside = posixpath.relpath(posixpath.normpath(key), root.as_posix())
        if inside.startswith("../") or inside == "..":
            return None
        return inside
    path = posixpath.normpath(posixpath.join(base.as_posix(), key))
    if path == ".." or path.startswith("../") or path == ".":
        return None
    return path


def mixed_types(rows: dict[str, dict[str, Any]]) -> list[str]:
    """A note per field whose values are of more than one kind (numbers and text, say): a
    range filter on it would skip the others, and the payload index takes one type."""
    kinds: dict[str, dict[str, str]] = {}
    for path, row in rows.items():
        for name, value in row.items():
            kind = _kind_of(value)
            if kind is not None:
                kinds.setdefault(name, {}).setdefault(kind, path)
    notes = []
    for name, seen in kinds.items():
        if len(seen) > 1:
            examples = ", ".join(f"{kind} ({shown(path)})" for kind, path in seen.items())
            notes.append(
                f"field {shown(name)} holds values of different types: {examples}; filters "
                "compare one type, so give every row the same"
            )
    return notes


def _kind_of(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "text"
    return "a list" if isinstance(value, list) else "an object"


def _listed(names, shown_at_most: int = 3) -> str:
    """How many, and the first few: `24 (misc/1.jpg, misc/2.jpg, misc/3.jpg and 21 more)`."""
    names = list(names)
    first = ", ".join(shown(n) for n in names[:shown_at_most])
    more = len(names) - shown_at_most
    return f"{len(names)} ({first}{f' and {more} more' if more > 0 else ''})"


def _read_jsonl(file: Path) -> list[tuple[int, dict[str, Any]]]:
    """Each row of a JSON-lines file with its line number; what cannot be read is said with
    its file and line."""
    rows = []
    with open(file, "rb") as f:
        for number, raw in enumerate(f, 1):
            try:
                line = raw.decode("utf-8-sig" if number == 1 else "utf-8")
            except UnicodeDecodeError as e:
                raise _unreadable(file, number, f"is not UTF-8 text (byte {e.start + 1})") from e
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise _unreadable(file, number, f"is not JSON ({e.msg})") from e
            except RecursionError as e:
                raise _unreadable(file, number, "nests JSON too deeply") from e
            except ValueError as e:  # an integer of thousands of digits
                raise _unreadable(file, number, f"cannot be read ({e})") from e
            if not isinstance(row, dict):
                raise _unreadable(file, number, "is not a JSON object")
            rows.append((number, row))
    return rows


def _unreadable(file: Path, line: int, what: str) -> DatasetLoadError:
    return DatasetLoadError(str(file), f"{file} line {line} {what}", kind="unreadable")


def _read_csv(file: Path) -> list[tuple[int, dict[str, Any]]]:
    """Rows of a CSV file (UTF-8, with or without Excel's byte-order mark) with their line
    numbers; a column whose every value is a number becomes numbers (an id with leading
    zeros stays text), empty cells become null."""
    data = file.read_bytes()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise _unreadable(file, line, f"is not UTF-8 text (byte {e.start + 1})") from e
    reader = csv.DictReader(io.StringIO(text, newline=""))
    rows = []
    try:
        for row in reader:
            if None in row:  # DictReader's key for cells past the header's
                raise _unreadable(
                    file,
                    reader.line_num,
                    f"has {len(reader.fieldnames or ()) + len(row[None])} fields, but its "
                    f"header has {len(reader.fieldnames or ())}",
                )
            rows.append((reader.line_num, row))
    except csv.Error as e:  # a field past csv's size limit, a NUL byte
        # line_num counts the lines read before the row that failed
        raise _unreadable(file, reader.line_num + 1, f"cannot be read as CSV ({e})") from e
    columns = rows[0][1].keys() if rows else ()
    for column in columns:
        if column == KEY:
            continue
        values = [r[column] for _, r in rows if r[column] not in ("", None)]
        kind = _kind(values)
        for _, r in rows:
            value = r[column]
            r[column] = None if value in ("", None) else kind(value)
    return rows


def _kind(values: list[str]):
    if values and all(INT.match(v) for v in values):
        return int
    if values and all(FLOAT.match(v) for v in values):
        return float
    return str
