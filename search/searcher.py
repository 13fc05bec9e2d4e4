"""The search API: embed each query exactly as ingest embedded the candidates, ask Qdrant."""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from lookalike.defaults import DEFAULT_COLLECTION
from lookalike.embed.settings import ModelSettings, canonical_model_id
from lookalike.errors import BadImage, BadQuery, DatasetLoadError, ModelMismatch
from lookalike.images import ImageSource, open_image
from lookalike.index import SearchSettings, effective
from lookalike.records import CollectionMeta, Hit, Query, Result, StoredPoint, check_compatible
from lookalike.search.queries import split_own
from lookalike.source import Source, load_source
from lookalike.store import Store, connect

if TYPE_CHECKING:
    from lookalike.embed.embedder import Embedder

SPLIT_ROW = re.compile(r"^(?P<split>[A-Za-z_][\w.-]*):(?P<row>\d+)$")
MAX_K = 1000  # a larger k is almost certainly a typo, and costly on a server


class Gallery:
    """The images behind a collection's points: rows of its dataset, or stored paths."""

    def __init__(self, meta: CollectionMeta) -> None:
        self.meta = meta
        self._sources: dict[str, Source] = {}

    def source(self, split: str) -> Source:
        """The split of the collection's dataset, loaded once."""
        if split not in self._sources:
            self._sources[split] = load_source(
                self.meta.dataset,
                split,
                image_column=self.meta.image_column,
                label_column=self.meta.label_column,
            )
        return self._sources[split]

    def image(self, point: StoredPoint) -> Image.Image | None:
        """A stored point's image: its row of the collection's dataset, else its path."""
        if point.split is not None and point.row is not None:
            try:
                return self.source(point.split).record(point.row).image
            except (DatasetLoadError, BadImage):
                pass
        path = self.file(point)
        if path is not None:
            try:
                return open_image(path)
            except BadImage:
                return None
        return None

    def file(self, point: StoredPoint) -> str | None:
        """The file a stored point's path names, if it exists: the path as stored, or relative
        to the dataset's folder."""
        if not point.path:
            return None
        candidates = [point.path]
        if not os.path.isabs(point.path) and os.path.isdir(self.meta.dataset):
            candidates.insert(0, os.path.join(self.meta.dataset, point.path))
        return next((c for c in candidates if os.path.isfile(c)), None)


class Searcher:
    """Search a collection with images.

    >>> searcher = Searcher("beans", store=connect(StoreConfig(path="./lookalike-data")))
    >>> hits = searcher.search("leaf.jpg", k=5, label="healthy")
    >>> hits[0].label_name, hits[0].score

    The collection's model loads on the first search (or `searcher.embedder`), so a query,
    label or split that cannot be answered is refused before that.
    """

    def __init__(
        self,
        collection: str = DEFAULT_COLLECTION,
        *,
        store: Store | None = None,
        settings: ModelSettings | None = None,
        embedder: Embedder | None = None,
        params: SearchSettings | None = None,
    ) -> None:
        self.store = store or connect()
        self.collection = collection
        self.settings = settings or ModelSettings()
        self.info = self.store.info(collection)
        if self.info.meta is None:
            raise ModelMismatch(collection, "foreign")
        self.meta: CollectionMeta = self.info.meta
        model = self.settings.model
        if model:
            self.settings.check(model)  # a folder that does not exist is said as such
            if canonical_model_id(model) != self.meta.model:
                # Refuse before loading: another model can only give meaningless neighbours.
                meta = _as_meta(self.meta, canonical_model_id(model))
                check_compatible(self.info, meta, ingest=False)
        elif embedder is None:
            self.settings.check(self.meta.model)
        self._embedder = embedder
        self.gallery = Gallery(self.meta)
        self.index = self.info.index
        self.params = effective(params, self.index)  # with the quantization's oversampling

    @property
    def embedder(self) -> Embedder:
        """The collection's model, loaded on first use and checked against the collection."""
        if self._embedder is None:
            model = self.settings.model or self.meta.model
            self._embedder = self.settings.load(model, self.meta.pooling)
        if not getattr(self, "_checked", False):
            emb = self._embedder
            check_compatible(self.info, _as_meta(self.meta, emb.model_id, emb), ingest=False)
            self._checked = True
        return self._embedder

    def source(self, split: str) -> Source:
        return self.gallery.source(split)

    def candidate_image(self, point: StoredPoint) -> Image.Image | None:
        return self.gallery.image(point)

    def load_query(self, query: str) -> Image.Image:
        """An image file path, or SPLIT:ROW meaning that row of the collection's dataset."""
        return self.query(query).image

    def query(self, text: str) -> Query:
        """An image file, or SPLIT:ROW for that row of the collection's dataset, with what is
        known of it (its label and stored point, when it is one of the collection's)."""
        if os.path.exists(text):
            return Query(text, open_image(text), path=os.path.realpath(text))
        match = SPLIT_ROW.match(text)
        if not match:
            raise BadQuery(
                f"no such file: {text!r} (a query is an image file, or SPLIT:ROW such as test:17)",
                field="query",
            )
        return self.row_query(match["split"], int(match["row"]))

    def row_query(self, split: str, row: int) -> Query:
        """Row `row` of `split` of the collection's dataset as a query, with its label."""
        text = f"{split}:{row}"
        try:
            record = self.source(split).record(row)
        except DatasetLoadError as e:
            raise BadQuery(f"query {text!r}: {e}", field="query") from e
        return Query(
            text,
            record.image,
            point_id=record.id,
            label=record.label,
            label_name=record.label_name,
            split=record.split,
            row=record.row,
        )

    def point_query(self, point_id: str) -> Query:
        """The stored point `point_id` as a query (a clicked result), with its label."""
        point = self.point(point_id)
        image = self.candidate_image(point) if point else None
        if point is None or image is None:
            raise BadQuery(f"no image for point {point_id}", field="point")
        return Query(
            point_id,
            image,
            point_id=point.id,
            label=point.label,
            label_name=point.label_name,
            split=point.split,
            row=point.row,
        )

    def point(self, point_id: str) -> StoredPoint | None:
        return self.store.point(self.collection, point_id)

    def label_id(self, label: str | int | None) -> int | None:
        """A label name or id as the id stored in payloads; BadQuery if the collection has none."""
        if label is None:
            return None
        names = self.meta.label_names
        if isinstance(label, int) or str(label).isdigit():
            value = int(label)
            if names and not 0 <= value < len(names):
                raise BadQuery(
                    f"label id {value} is out of range 0..{len(names) - 1}", field="label"
                )
            return value
        if label in names:
            return names.index(label)
        known = ", ".join(names) or "none (the collection has no labels)"
        raise BadQuery(f"unknown label {label!r}; labels are: {known}", field="label")

    def search(self, image: ImageSource, k: int = 5, label: str | int | None = None) -> list[Hit]:
        """The top-k candidates most like `image` (a path, bytes or PIL image)."""
        return self.search_many([image], k=k, label=label)[0]

    def search_many(
        self, images: Sequence[ImageSource], k: int = 5, label: str | int | None = None
    ) -> list[list[Hit]]:
        """One list of hits per image, embedded in one batch and queried in one request."""
        check_k(k)
        label_id = self.label_id(label)
        vectors = self.embedder.embed([open_image(i) for i in images])
        return self.search_vectors(vectors, k=k, label=label_id)

    def search_queries(
        self,
        queries: Sequence[Query],
        k: int = 5,
        label: str | int | None = None,
        *,
        include_self: bool = False,
    ) -> list[Result]:
        """Like search_many, for queries from `query()`: a query that is one of the
        collection's own images does not find itself unless `include_self`."""
        check_k(k)
        label_id = self.label_id(label)
        vectors = self.embedder.embed([q.image for q in queries])
        found = self.search_vectors(vectors, k=min(k + 1, MAX_K + 1), label=label_id)
        return [
            split_own(q, hits, k, self.gallery.file, include_self)
            for q, hits in zip(queries, found)
        ]

    def search_vectors(
        self,
        vectors: np.ndarray,
        k: int,
        label: int | None = None,
        params: SearchSettings | None = None,
    ) -> list[list[Hit]]:
        """Hits for embedded queries; `params` overrides the searcher's search settings."""
        params = effective(params, self.index) if params else self.params
        return self.store.query(self.collection, vectors, k, label=label, params=params)


def check_k(k: int) -> None:
    if not 1 <= k <= MAX_K:
        raise BadQuery(f"k must be between 1 and {MAX_K}, not {k}", field="k")


def _as_meta(meta: CollectionMeta, model: str, embedder: Embedder | None = None) -> CollectionMeta:
    return CollectionMeta(
        model=model,
        pooling=embedder.pooling if embedder else meta.pooling,
        dim=embedder.dim if embedder else meta.dim,
        dataset=meta.dataset,
        image_column=meta.image_column,
        label_column=meta.label_column,
        label_names=meta.label_names,
    )
