"""Moving a collection without embedding again: to a Parquet file and back (`export`,
`import`), or straight from one store to another (`copy`), streamed in pages."""

from lookalike.transfer.collection import Header, LoadReport, Page, load, read
from lookalike.transfer.parquet import read_parquet, write_parquet

__all__ = ["Header", "LoadReport", "Page", "load", "read", "read_parquet", "write_parquet"]
