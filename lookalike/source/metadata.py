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
import json
import math
import re
from collections.abc import Iterable
from pathlib import Path, PurePosixPath
from typing import Any

from lookalike.errors import DatasetLoadError
from lookalike.records import OWN_FIELDS

METADATA_FILES = ("metadata.jsonl", "metadata.csv")
KEY = "file_name"
INT = re.compile(r"^-?(0|[1-9][0-9]*)$")
FLOAT = re.compile(r"^-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][-+]?[0-9]+)?$")
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


def read_folder_metadata(root: Path, folders: Iterable[Path]) -> dict[str, dict[str, Any]]:
    """Fields by image path relative to `root`, from the metadata files in `folders`."""
    found: dict[str, dict[str, Any]] = {}
    for folder in folders:
        for name in METADATA_FILES:
            file = folder / name
            if not file.is_file():
                continue
            rows = _read_jsonl(file) if name.endswith(".jsonl") else _read_csv(file)
            base = PurePosixPath(folder.relative_to(root).as_posix())
            for row in rows:
                key = row.pop(KEY, None)
                if not isinstance(key, str) or not key:
                    raise DatasetLoadError(
                        str(root), f"{file}: every row needs a {KEY!r}", kind="unreadable"
                    )
                found[_normal(base / key)] = row
    return found


def _normal(path: PurePosixPath) -> str:
    parts = [p for p in path.parts if p not in ("", ".")]
    return "/".join(parts)


def _read_jsonl(file: Path) -> list[dict[str, Any]]:
    rows = []
    with open(file, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise DatasetLoadError(
                    str(file), f"{file} line {number} is not JSON ({e.msg})", kind="unreadable"
                ) from e
            if not isinstance(row, dict):
                raise DatasetLoadError(
                    str(file), f"{file} line {number} is not a JSON object", kind="unreadable"
                )
            rows.append(row)
    return rows


def _read_csv(file: Path) -> list[dict[str, Any]]:
    """Rows of a CSV file; a column whose every value is a number becomes numbers (an id
    with leading zeros stays text), empty cells become null."""
    with open(file, encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    columns = rows[0].keys() if rows else ()
    for column in columns:
        if column == KEY:
            continue
        values = [r[column] for r in rows if r[column] not in ("", None)]
        kind = _kind(values)
        for r in rows:
            value = r[column]
            r[column] = None if value in ("", None) else kind(value)
    return rows


def _kind(values: list[str]):
    if values and all(INT.match(v) for v in values):
        return int
    if values and all(FLOAT.match(v) for v in values):
        return float
    return str
