"""One split of a dataset as a `Source`: each row described without decoding (id, path,
label, metadata, a file's stat), fingerprinted, or decoded into an `ImageRecord`."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import datasets
import numpy as np

from lookalike.defaults import DEFAULT_MAX_PIXELS
from lookalike.errors import BadImage, DatasetLoadError
from lookalike.images import check_format, open_image
from lookalike.records import ImageRecord, Skipped
from lookalike.source.fingerprint import file_stat, read_file, sha256_bytes, sha256_file
from lookalike.source.metadata import checked

# Point ids are uuid5 of (dataset, split, path) when every row has its own path, so a point
# follows its image when rows are added, removed or reordered; else of (dataset, split, row).
ID_NAMESPACE = uuid.UUID("6f1b7a52-4d0e-4c7b-9a55-6b3f0c1e2d41")


def point_id(dataset: str, split: str, row: int) -> str:
    return str(uuid.uuid5(ID_NAMESPACE, f"{dataset}\x1f{split}\x1f{row}"))


def path_point_id(dataset: str, split: str, path: str) -> str:
    return str(uuid.uuid5(ID_NAMESPACE, f"{dataset}\x1f{split}\x1fpath\x1f{path}"))


@dataclass
class Source:
    """One split of a dataset, optionally sampled, with its columns resolved.

    Per position: `paths`, the path stored with the point (a path column, else the image's
    own), and `files`, the file holding the image (None where the row holds its bytes). With
    `path_ids` (every path present and unique) paths identify the points, else rows do.
    `payload_columns`: the dataset's own fields stored with each point; an image folder's
    come from its metadata file (`folder_metadata`, by path). An image folder's rows are only
    its files' places in name order, which every new file shifts: its points store no row."""

    name: str
    split: str
    data: datasets.Dataset  # image column not decoded: decoding happens per item, so bad ones skip
    image_column: str
    label_column: str | None
    label_names: tuple[str, ...]
    rows: np.ndarray  # original row numbers in the split, in the order they are yielded
    max_pixels: int = DEFAULT_MAX_PIXELS
    paths: list[str | None] = field(default_factory=list, repr=False)
    files: list[str | None] = field(default_factory=list, repr=False)
    path_ids: bool = False
    payload_columns: tuple[str, ...] = ()
    folder_metadata: dict[str, dict] | None = field(default=None, repr=False)
    sampled: bool = False
    # An image folder's metadata rows that name no image, by the path they name (a renamed
    # image's old row), and what a user should hear about the dataset (unmatched rows...).
    orphan_rows: dict[str, dict] = field(default_factory=dict, repr=False)
    notes: tuple[str, ...] = ()
    # Sub-folders (relative, `/`-ended) that could not be listed: their images are not gone.
    unreadable: tuple[str, ...] = ()
    own_names: tuple[str, ...] = ()  # the dataset's label names, when relabelled
    id_name: str | None = None  # the name ids are made from, when the images moved since
    _info: dict[str, list] | None = field(default=None, repr=False)
    _positions: dict | None = field(default=None, repr=False)
    _ids: dict | None = field(default=None, repr=False)
    _orphans: set[str] | None = field(default=None, repr=False)

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def is_folder(self) -> bool:
        return self.folder_metadata is not None

    def relabel(self, known: Sequence[str]) -> Source:
        """This source with a collection's label ids: names in `known` keep their ids, new
        ones follow (so a class folder added later, whatever its name, shifts no ids)."""
        if not known or tuple(known) == self.label_names:
            return self
        own = self.own_names or self.label_names
        names = (*known, *(n for n in own if n not in known))
        return replace(self, label_names=tuple(names), own_names=own, _ids=None)

    def _label(self, value) -> tuple[int | None, str | None]:
        if value is None:
            return None, None
        own = self.own_names or self.label_names
        if not isinstance(value, str):
            value = int(value)
            if value < 0:  # datasets' "no label"
                return None, None
            if not 0 <= value < len(own):
                return value, str(value)
            value = own[value]
        if self._ids is None:
            self._ids = {n: i for i, n in enumerate(self.label_names)}
        return self._ids.get(value), value

    def point_id(self, position: int) -> str:
        name = self.id_name or self.name
        if self.path_ids:
            return path_point_id(name, self.split, self.paths[position])
        return point_id(name, self.split, int(self.rows[position]))

    def _columns(self) -> dict[str, list]:
        """Every column but the images, read once (labels, paths, metadata)."""
        if self._info is None:
            names = [self.label_column]
            if self.folder_metadata is None:
                names += self.payload_columns
            names = list(dict.fromkeys(n for n in names if n))
            self._info = self.data.select_columns(names).to_dict() if names else {}
        return self._info

    def _metadata(self, position: int, path: str | None) -> dict[str, Any]:
        where = f"{path or f'row {int(self.rows[position])}'} in split {self.split!r}"
        if self.folder_metadata is not None:
            fields = self.folder_metadata.get(path or "", {})
            values = {c: fields[c] for c in self.payload_columns if c in fields}
        else:
            columns = self._columns()
            values = {c: columns[c][position] for c in self.payload_columns}
        return {c: checked(self.name, c, v, where) for c, v in values.items()}

    def orphan_fields(self, path: str | None) -> dict[str, Any]:
        """The payload fields of the metadata row that names `path`, a file no longer there
        (an image renamed since keeps them), or {}."""
        row = self.orphan_rows.get(path or "")
        if not row:
            return {}
        where = f"the metadata row of {path}"
        return {c: checked(self.name, c, row[c], where) for c in self.payload_columns if c in row}

    def kept_fields(self, path: str | None, stored: dict[str, Any]) -> dict[str, Any] | None:
        """`stored`, the fields a point holds, when the image at `path` has no metadata row
        and they are those of a row naming a file no longer there (taken at a rename); else
        None."""
        if not stored or self.folder_metadata is None or (path or "") in self.folder_metadata:
            return None
        if self._orphans is None:
            self._orphans = {_key(self.orphan_fields(p)) for p in self.orphan_rows}
        return stored if _key(stored) in self._orphans else None

    def describe(self, position: int) -> ImageRecord:
        """The record at `position` without its image: id, label, path, metadata, and a
        file's stat when the image is a file. Raises DatasetLoadError for a metadata value
        a payload cannot hold."""
        columns = self._columns()
        path = self.paths[position]
        label, label_name = self._label(
            columns[self.label_column][position] if self.label_column else None
        )
        file = self.files[position]
        stat = None
        if file is not None:
            try:
                stat = file_stat(file)
            except OSError:
                stat = None  # gone or unreadable: decoding will say why
        return ImageRecord(
            id=self.point_id(position),
            split=self.split,
            row=None if self.is_folder else int(self.rows[position]),
            label=label,
            label_name=label_name,
            path=path,
            image=None,
            stat=stat,
            metadata=self._metadata(position, path),
        )

    def fingerprint(self, position: int) -> str | None:
        """The sha256 of the image's bytes, None if they cannot be read."""
        file = self.files[position]
        try:
            if file is not None:
                return sha256_file(file)
            value = self.data[position][self.image_column]
            data = value.get("bytes") if isinstance(value, dict) else None
            return sha256_bytes(data) if data is not None else None
        except (OSError, BadImage):  # unreadable, or not a regular file: decoding says why
            return None

    def locate(self, path: str | None, row: int | None) -> int | None:
        """The position of the row with this path (or this row when rows identify them)."""
        if self._positions is None:
            keys = self.paths if self.path_ids else [int(r) for r in self.rows]
            self._positions = {k: i for i, k in enumerate(keys)}
        return self._positions.get(path if self.path_ids else row)

    def load(
        self, positions: Sequence[int], min_side: int | None = None
    ) -> tuple[list[ImageRecord], list[Skipped]]:
        """Decode these positions; unreadable images come back as Skipped, with a reason.
        Each record carries the sha256 of the very bytes decoded.

        Safe to call from several threads at once (arrow reads and PIL decoding are)."""
        records, skipped = [], []
        for item in self.items(positions, min_side):
            (records if isinstance(item, ImageRecord) else skipped).append(item)
        return records, skipped

    def items(
        self, positions: Sequence[int], min_side: int | None = None
    ) -> Iterator[ImageRecord | Skipped]:
        """Like `load`, one image at a time, decoded as it is asked for: a consumer that keeps
        only what it makes of each image holds one decoded image at a time. `min_side`: see
        `open_image`."""
        positions = list(positions)
        values = self.data.select_columns([self.image_column])[positions] if positions else {}
        for i, position in enumerate(positions):
            yield self._record(position, values[self.image_column][i], min_side)

    def batches(self, batch_size: int) -> Iterator[tuple[list[ImageRecord], list[Skipped]]]:
        """Yield (decoded records, skipped items) batch by batch; memory stays one batch."""
        for start in range(0, len(self.rows), batch_size):
            yield self.load(range(start, min(start + batch_size, len(self.rows))))

    def _record(self, position: int, value, min_side: int | None = None) -> ImageRecord | Skipped:
        record = self.describe(position)
        try:
            if self.files[position] is not None:  # a RAW file is refused before it is read
                check_format(self.files[position], record.path)
            data, stat, sha = _read(value, self.files[position])
            name = record.path or f"{self.split}:{record.row}"
            image = _decode(data, name, self.max_pixels, min_side)
        except BadImage as e:
            return Skipped(self.split, record.row, record.path, e.reason, e.kind)
        return replace(record, image=image, sha256=sha, stat=stat or record.stat)

    def record(self, row: int, min_side: int | None = None) -> ImageRecord:
        """The record at original row `row` of the split (raises BadImage if it is unreadable).
        `min_side`: see `open_image`."""
        return self.decode(self.position(row), min_side)

    def position(self, row: int) -> int:
        """Where original row `row` of the split is; DatasetLoadError if it has none."""
        position = np.flatnonzero(self.rows == row)
        if len(position) == 0:
            raise DatasetLoadError(
                self.name,
                f"row {row} is out of range for split {self.split!r} of {self.name!r} "
                f"(rows 0..{len(self.data) - 1})",
                kind="row",
                split=self.split,
            )
        return int(position[0])

    def decode(self, position: int, min_side: int | None = None) -> ImageRecord:
        """The record at `position`, decoded (raises BadImage if it is unreadable)."""
        result = self._record(position, self.data[position][self.image_column], min_side)
        if isinstance(result, Skipped):
            where = result.path or f"{self.split}:{result.row}"
            raise BadImage(where, result.reason, kind=result.kind)
        return result


def _key(fields: dict[str, Any]) -> str:
    return json.dumps(fields, sort_keys=True)


def image_files(data: datasets.Dataset, column: str) -> tuple[list, list]:
    """Each row's image path as the image column gives it, and its file (None where the row
    holds the image's bytes), read without copying any image."""
    if isinstance(data.features[column], datasets.Value):  # a column of file paths
        paths = list(data[column])
        return paths, paths
    if data._indices is None:  # the table as stored: read the struct's fields in place
        chunks = data.data.column(column).chunks
    else:
        table = data.select_columns([column]).with_format("arrow")
        chunks = [table[i : i + 1024][column].combine_chunks() for i in range(0, len(data), 1024)]
    paths, files = [], []
    for chunk in chunks:
        names = chunk.field("path").to_pylist()
        paths += names
        files += [
            None if b else p for b, p in zip(chunk.field("bytes").is_valid().to_pylist(), names)
        ]
    return paths, files


def _read(value, file: str | None) -> tuple[bytes, str | None, str]:
    """The image's bytes, a file's stat (taken before reading), and the bytes' sha256."""
    if file is None:
        data = value.get("bytes") if isinstance(value, dict) else None
        if data is None:
            raise BadImage("<row>", "the row has no image")
        return data, None, sha256_bytes(data)
    try:
        return read_file(file)
    except OSError:
        open_image(file)  # raises the BadImage that says why the file cannot be read
        raise BadImage(file, "could not read the file") from None


def _decode(data: bytes, name: str, max_pixels: int, min_side: int | None):
    try:
        return open_image(data, max_pixels, min_side)
    except BadImage as e:
        raise BadImage(name, e.reason, kind=e.kind) from e
