"""How a collection is indexed (fixed when it is created) and how a query uses the index.

Plain dataclasses shared by every store engine; each engine translates them to its own API.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from lookalike.errors import BadQuery


@dataclass(frozen=True)
class IndexSettings:
    """Collection options chosen at creation. Quantization keeps a compressed copy of every
    vector in RAM for the first pass of a search (int8: 4x smaller, binary: 32x) and rescores
    the best candidates with the original vectors, which may then live on disk."""

    hnsw_m: int = 16
    hnsw_ef_construct: int = 100
    on_disk: bool = False
    quantization: str = "none"  # none | int8 | binary
    shards: int = 1  # server only: split over the nodes of a cluster
    replicas: int = 1  # server only: copies of each shard on different nodes
    write_consistency: int = 1  # server only: replicas that confirm a write before it returns

    def __post_init__(self) -> None:
        if self.quantization not in ("none", "int8", "binary"):
            raise BadQuery(
                f"quantization must be none, int8 or binary, not {self.quantization!r}",
                field="quantization",
            )
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, int) and not isinstance(value, bool) and value < 1:
                raise BadQuery(f"{f.name} must be at least 1, not {value}", field=f.name)

        if self.write_consistency > self.replicas:
            raise BadQuery(
                f"write consistency {self.write_consistency} needs as many replicas, not "
                f"{self.replicas}",
                field="write_consistency",
            )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> IndexSettings:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


@dataclass(frozen=True)
class SearchSettings:
    """Per-query knobs. `exact` scans every vector (ground truth, slow at scale); `hnsw_ef`
    widens the graph search (recall up, speed down); with quantization, `oversampling` x k
    candidates are fetched from the compressed vectors and, with `rescore`, re-ranked with the
    originals."""

    exact: bool = False
    hnsw_ef: int | None = None
    oversampling: float | None = None
    rescore: bool = True

    def __post_init__(self) -> None:
        if self.hnsw_ef is not None and self.hnsw_ef < 1:
            raise BadQuery(f"hnsw_ef must be at least 1, not {self.hnsw_ef}", field="hnsw_ef")
        if self.oversampling is not None and self.oversampling < 1:
            raise BadQuery(
                f"oversampling must be at least 1, not {self.oversampling}", field="oversampling"
            )

    @property
    def is_default(self) -> bool:
        return self == SearchSettings()

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


EXACT = SearchSettings(exact=True)
# Candidates fetched per result from quantized vectors before rescoring, measured with
# bench/store_bench.py: int8 needs 2x to keep recall@5 at 1.0; binary, which keeps one bit
# per dimension, needs 8x for 0.995 on embeddings that are not centred.
OVERSAMPLING = {"int8": 2.0, "binary": 8.0}


def effective(params: SearchSettings | None, index: IndexSettings | None) -> SearchSettings:
    """`params` with the quantization's oversampling filled in where it is left unset."""
    params = params or SearchSettings()
    kind = index.quantization if index else "none"
    if kind in OVERSAMPLING and params.oversampling is None and not params.exact:
        return replace(params, oversampling=OVERSAMPLING[kind])
    return params
