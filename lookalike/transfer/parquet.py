"""A collection as one Parquet file: a row per point (id, `embedding`, lookalike's own payload
fields as columns for people and tools, and the whole payload as JSON for the way back), and
the collection's record in the schema's metadata. Written and read in row groups of a page,
so neither side holds the collection in memory. pandas and `datasets.load_dataset("parquet")`
read it as it is."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from lookalike.errors import BadQuery
from lookalike.records import Tracked
from lookalike.transfer.collection import PAGE, Header, Page

KEY = b"lookalike"  # the schema metadata key holding the header
OWN = {
    "label": pa.int64(),
    "label_name": pa.string(),
    "split": pa.string(),
    "row": pa.int64(),
    "path": pa.string(),
    "sha256": pa.string(),
}


def schema(header: Header) -> pa.Schema:
    columns = [
        pa.field("id", pa.string(), nullable=False),
        pa.field("embedding", pa.list_(pa.float32(), header.meta.dim), nullable=False),
        *(pa.field(name, kind) for name, kind in OWN.items()),
        pa.field("payload", pa.string(), nullable=False),
    ]
    return pa.schema(columns, metadata={KEY: header.to_json().encode()})


def _table(page: Page, schema: pa.Schema) -> pa.Table:
    dim = schema.field("embedding").type.list_size
    flat = pa.array(np.ascontiguousarray(page.vectors, np.float32).reshape(-1))
    columns = {
        "id": pa.array([p.id for p in page.points], pa.string()),
        "embedding": pa.FixedSizeListArray.from_arrays(flat, dim),
    }
    for name, kind in OWN.items():
        columns[name] = pa.array([p.payload.get(name) for p in page.points], kind)
    payloads = [json.dumps(p.payload, sort_keys=True, ensure_ascii=False) for p in page.points]
    columns["payload"] = pa.array(payloads, pa.string())
    return pa.Table.from_pydict(columns, schema=schema)


def write_parquet(path: str, header: Header, pages: Iterable[Page], on_progress=None) -> int:
    """Write the collection to `path` (through a temporary file beside it, renamed when
    complete: an interrupted export leaves no half file). Returns the points written."""
    s = schema(header)
    partial, written = f"{path}.partial", 0
    try:
        with pq.ParquetWriter(partial, s, compression="zstd") as writer:
            for page in pages:
                writer.write_table(_table(page, s), row_group_size=PAGE)
                written += len(page.points)
                if on_progress:
                    on_progress(len(page.points))
        os.replace(partial, path)
    finally:
        if os.path.exists(partial):
            os.remove(partial)
    return written


def read_parquet(path: str, page: int = PAGE) -> tuple[Header, Iterator[Page]]:
    """The file's header and its points page by page; BadQuery for a file that is not one."""
    try:
        file = pq.ParquetFile(path)
    except (OSError, pa.ArrowException) as e:
        raise BadQuery(
            f"{path} is not a Parquet file lookalike can read ({e})", field="file"
        ) from e
    metadata = file.schema_arrow.metadata or {}
    if KEY not in metadata:
        raise BadQuery(
            f"{path} holds no lookalike collection record (was it written by `lookalike export`?)",
            field="file",
        )
    header = Header.from_json(metadata[KEY], path)
    missing = {"id", "embedding", "payload"} - set(file.schema_arrow.names)
    if missing:
        raise BadQuery(f"{path} lacks the column(s) {', '.join(sorted(missing))}", field="file")
    return header, _pages(file, page)


def _pages(file: pq.ParquetFile, size: int) -> Iterator[Page]:
    for batch in file.iter_batches(batch_size=size, columns=["id", "embedding", "payload"]):
        ids = batch.column("id").to_pylist()
        payloads = [json.loads(p) for p in batch.column("payload").to_pylist()]
        embedding = batch.column("embedding")
        dim = embedding.type.list_size if hasattr(embedding.type, "list_size") else None
        values = embedding.flatten().to_numpy(zero_copy_only=False).astype(np.float32, copy=False)
        vectors = values.reshape(len(ids), dim or (len(values) // max(1, len(ids))))
        yield Page([Tracked(i, p) for i, p in zip(ids, payloads)], vectors)
