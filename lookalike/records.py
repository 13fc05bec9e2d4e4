"""Typed records passed between the stages (dataset -> embedder -> store -> search)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from PIL import Image

from lookalike.errors import ModelMismatch
from lookalike.identity import same_folder, same_model
from lookalike.index import IndexSettings


@dataclass(frozen=True)
class ImageRecord:
    """One decoded candidate image and the payload it will be stored with."""

    id: str
    split: str
    row: int | None  # None for an image folder's files, whose places shift
    label: int | None
    label_name: str | None
    path: str | None
    image: Image.Image | None = field(repr=False, compare=False)
    sha256: str | None = field(default=None, kw_only=True)  # of the image's bytes
    stat: str | None = field(default=None, kw_only=True)  # a file's, taken before reading it
    metadata: dict[str, Any] = field(default_factory=dict, kw_only=True)

    def payload(self) -> dict[str, Any]:
        """The stored payload: lookalike's own fields, then the dataset's metadata fields."""
        own = {
            "label": self.label,
            "label_name": self.label_name,
            "split": self.split,
            "row": self.row,
            "path": self.path,
            "sha256": self.sha256,
        }
        if self.stat is not None:
            own["stat"] = self.stat
        return {**self.metadata, **own}


@dataclass(frozen=True)
class Skipped:
    """An item that was not embedded, and why (`kind` as in BadImage, for the edge's advice)."""

    split: str
    row: int | None
    path: str | None
    reason: str
    kind: str | None = None

    def where(self) -> str:
        return self.path or f"{self.split}:{self.row}"


# Payload fields lookalike writes itself; every other field is the dataset's metadata.
SCORE_DIGITS = 6  # a float32 cosine holds ~7 significant digits
OWN_FIELDS = ("label", "label_name", "split", "row", "path", "sha256", "stat")


def shown_split(point: Any) -> str:
    """A point's split as people should see it: none for a plain folder's files (stored as
    "train", but the folder has no split sub-folders, so their paths do not start with it)."""
    split = point.split or ""
    if point.row is None and point.path and not point.path.startswith(split + "/"):
        return ""
    return split


@dataclass(frozen=True)
class StoredPoint:
    """A point as the collection holds it: its id and payload (`sha256` is None for points
    stored before lookalike tracked content; `metadata`: the dataset's own fields)."""

    id: str
    label: int | None
    label_name: str | None
    split: str | None
    row: int | None
    path: str | None
    sha256: str | None = field(default=None, kw_only=True)
    metadata: dict[str, Any] = field(default_factory=dict, kw_only=True)

    @classmethod
    def from_payload(cls, point_id: object, payload: dict | None) -> StoredPoint:
        p = payload or {}
        return cls(
            id=str(point_id),
            label=p.get("label"),
            label_name=p.get("label_name"),
            split=p.get("split"),
            row=p.get("row"),
            path=p.get("path"),
            sha256=p.get("sha256"),
            metadata={k: v for k, v in p.items() if k not in OWN_FIELDS},
        )

    def where(self) -> str:
        """SPLIT:ROW, or the path of an image folder's file (which has no row)."""
        return f"{self.split}:{self.row}" if self.row is not None else str(self.path)

    def order(self) -> tuple:
        """A stable order for people: by split, then row, then path."""
        return (self.split or "", -1 if self.row is None else self.row, self.path or "")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Hit(StoredPoint):
    """A stored point found by a search: its rank (1 = best) and cosine similarity."""

    rank: int
    score: float

    @classmethod
    def found(cls, point: StoredPoint, rank: int, score: float) -> Hit:
        return cls(**asdict(point), rank=rank, score=float(score))

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        score = round(d.pop("score"), SCORE_DIGITS)  # 1.0, not float32's 1.0000001192092896
        return {"rank": d.pop("rank"), "id": d.pop("id"), "score": score, **d}


@dataclass(frozen=True)
class Tracked:
    """What a sync needs to know of a stored point: its id and whole payload."""

    id: str
    payload: dict[str, Any]

    @property
    def sha256(self) -> str | None:
        return self.payload.get("sha256")

    @property
    def stat(self) -> str | None:
        return self.payload.get("stat")

    @property
    def path(self) -> str | None:
        return self.payload.get("path")

    def where(self) -> str:
        return self.path or f"{self.payload.get('split')}:{self.payload.get('row')}"


@dataclass(frozen=True)
class Query:
    """What was asked (`text`: a file, SPLIT:ROW, a point id or "upload"; with `kind` "text",
    the words), its image, and what is known of it: its own point's id, its file's real
    path, its label."""

    text: str
    image: Image.Image | None = field(repr=False, compare=False)
    point_id: str | None = None
    path: str | None = None  # realpath of the query file, to recognise its stored point
    label: int | None = None
    label_name: str | None = None
    split: str | None = None
    row: int | None = None
    kind: str = "image"  # or "text": words, which have no image

    @classmethod
    def words(cls, text: str) -> Query:
        return cls(text, None, kind="text")


@dataclass(frozen=True)
class Result:
    """A query's hits; `excluded_self`: the query's own point was found and left out."""

    query: Query
    hits: list[Hit]
    excluded_self: bool = False

    def to_dict(self) -> dict:
        q = self.query
        kind = {"kind": q.kind} if q.kind != "image" else {}  # image lines as they were
        return {
            "query": q.text,
            **kind,
            "query_label": q.label,
            "query_label_name": q.label_name,
            "excluded_self": self.excluded_self,
            "hits": [h.to_dict() for h in self.hits],
        }


@dataclass(frozen=True)
class CollectionMeta:
    """What a collection was built with, stored in the collection so search can check it."""

    model: str
    pooling: str
    dim: int
    dataset: str
    image_column: str
    label_column: str | None
    label_names: tuple[str, ...] = ()
    # Whether the model has a text tower (CLIP, SigLIP) for text queries; None: recorded by a
    # lookalike before text queries, so the model decides when it loads.
    text: bool | None = None
    # The near-duplicate threshold measured on the collection's own photos, and how
    # (ingest/calibrate.py); None until a sync has calibrated it.
    duplicates: dict[str, Any] | None = None
    # The model folder's files (config, weights) as a hash, so the same model found at another
    # path is known for what it is; None: recorded before lookalike kept one.
    model_hash: str | None = None
    # The dataset the point ids were made from, when the images have since moved (`dataset`
    # is where they are now); None: where they always were.
    dataset_id: str | None = None
    synced: str | None = None  # when a sync last completed (UTC, ISO 8601)
    # What ran the model when the collection was built (torch or openvino, and precision), for
    # information only: any runtime answers its queries, so these never make two metas differ.
    runtime: str | None = field(default=None, compare=False)
    precision: str | None = field(default=None, compare=False)

    @property
    def identity(self) -> str:
        """The dataset as the point ids name it."""
        return self.dataset_id or self.dataset

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["label_names"] = list(self.label_names)
        if self.duplicates is None:
            del d["duplicates"]
        for key in ("model_hash", "dataset_id", "synced"):  # records as older lookalikes wrote them
            if d[key] is None:
                del d[key]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CollectionMeta:
        return cls(
            model=d["model"],
            pooling=d["pooling"],
            dim=int(d["dim"]),
            dataset=d["dataset"],
            image_column=d["image_column"],
            label_column=d.get("label_column"),
            label_names=tuple(d.get("label_names") or ()),
            text=d.get("text"),
            duplicates=d.get("duplicates"),
            model_hash=d.get("model_hash"),
            dataset_id=d.get("dataset_id"),
            synced=d.get("synced"),
            runtime=d.get("runtime"),
            precision=d.get("precision"),
        )


@dataclass(frozen=True)
class CollectionInfo:
    """A collection's size, vector parameters and build metadata."""

    name: str
    points: int
    dim: int
    distance: str
    meta: CollectionMeta | None
    engine: str = ""  # server, edge or local
    index: IndexSettings | None = None
    indexed_points: int | None = None  # points in the HNSW graph; the rest are scanned
    full_scan_points: int | None = None  # up to this many, segments are scanned, not indexed
    fields: dict[str, str] = field(default_factory=dict)  # payload indexes: field -> type

    def to_dict(self) -> dict[str, Any]:
        d = {"collection": self.name, "points": self.points, "dim": self.dim}
        d["distance"] = self.distance
        d.update(self.meta.to_dict() if self.meta else {})
        d["engine"] = self.engine
        d["index"] = self.index.to_dict() if self.index else None
        d["indexed_points"] = self.indexed_points
        d["full_scan_points"] = self.full_scan_points
        d["payload_indexes"] = dict(self.fields)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CollectionInfo:
        """What `to_dict` wrote (a running serve's answer to `info`)."""
        return cls(
            name=d["collection"],
            points=int(d["points"]),
            dim=int(d["dim"]),
            distance=d["distance"],
            meta=CollectionMeta.from_dict(d) if "model" in d else None,
            engine=d.get("engine", ""),
            index=IndexSettings.from_dict(d["index"]) if d.get("index") else None,
            indexed_points=d.get("indexed_points"),
            full_scan_points=d.get("full_scan_points"),
            fields=dict(d.get("payload_indexes") or {}),
        )


@dataclass(frozen=True)
class Change:
    """One difference between a collection and its images, as a sync found or applied it.

    `kind`: added, updated, renamed, removed, skipped; `where`: the image's path (or
    SPLIT:ROW when it has none); `before`: a renamed image's old path."""

    kind: str
    where: str
    before: str | None = None
    reason: str | None = None


@dataclass(frozen=True)
class IngestReport:
    """The outcome of one ingest, which syncs the collection with its images.

    added, updated, renamed, removed, unchanged count points; `embedded` counts model runs
    (a renamed image, or one whose only change is its metadata, reuses its stored vector);
    `migrated`: points of an older lookalike replaced; `pending`: files still being written,
    left for the next sync; with `dry_run` nothing was written and `changes` is the plan."""

    collection: str
    embedded: int
    skipped: tuple[Skipped, ...]
    seconds: float
    added: int = 0
    updated: int = 0
    renamed: int = 0
    removed: int = 0
    unchanged: int = 0
    migrated: int = 0
    pending: int = 0
    dry_run: bool = False
    changes: tuple[Change, ...] = ()
    payload_columns: tuple[str, ...] = ()
    embed_seconds: float | None = None  # from the model ready to the last image stored

    @property
    def images_per_s(self) -> float:
        seconds = self.seconds if self.embed_seconds is None else self.embed_seconds
        return self.embedded / seconds if seconds > 0 else 0.0

    @property
    def changed(self) -> bool:
        return bool(self.added or self.updated or self.renamed or self.removed)

    def to_dict(self) -> dict[str, Any]:
        d = {"collection": self.collection}
        for name in ("added", "updated", "renamed", "removed", "unchanged"):
            d[name] = getattr(self, name)
        d["skipped"] = len(self.skipped)
        d["embedded"] = self.embedded
        if self.migrated:
            d["migrated"] = self.migrated
        if self.pending:
            d["pending"] = self.pending
        d["payload_columns"] = list(self.payload_columns)
        d["seconds"] = round(self.seconds, 3)
        d["images_per_s"] = round(self.images_per_s, 2)
        d["skipped_items"] = [asdict(s) for s in self.skipped]
        if self.dry_run:
            d["dry_run"] = True
            d["changes"] = [asdict(c) for c in self.changes]
        return d


@dataclass(frozen=True)
class EvalReport:
    """Retrieval quality of a collection for one split of queries."""

    k: int
    queries: int
    precision_at_k: float
    precision_at_1: float
    knn_accuracy: float
    skipped: int = 0
    map_at_k: float = 0.0
    per_class_precision_at_k: dict[str, float] = field(default_factory=dict)
    near_duplicate_top1: float | None = None  # edited gallery copies that find their original
    near_identical_queries: int = 0  # queries with a near-identical gallery image: leakage
    recall_at_k: float | None = None  # the configured search against exact search

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        if self.recall_at_k is None:  # only asked-for numbers appear
            del d["recall_at_k"]
        return d


def check_compatible(info: CollectionInfo, meta: CollectionMeta, *, ingest: bool) -> None:
    """Refuse to mix vectors from different models, poolings, sizes or datasets (the dataset
    only matters when adding images: `ingest`)."""
    have = info.meta
    if have is None:
        raise ModelMismatch(info.name, "foreign")
    if info.dim != meta.dim:
        raise ModelMismatch(info.name, "dim", f"{info.dim}-d", f"{meta.dim}-d")
    if have.pooling != meta.pooling or not same_model(have.model, have.model_hash, meta.model):
        raise ModelMismatch(
            info.name,
            "model",
            f"{have.model!r} ({have.pooling} pooling)",
            # "auto": the asked model's pooling is known only once it loads; none is claimed
            f"{meta.model!r}" + (f" ({meta.pooling} pooling)" if meta.pooling != "auto" else ""),
        )
    if ingest and have.identity != meta.identity and not same_folder(have.dataset, meta.dataset):
        raise ModelMismatch(info.name, "dataset", have.dataset, meta.dataset)
