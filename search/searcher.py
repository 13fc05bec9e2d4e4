"""The search API: embed each query exactly as ingest embedded the candidates, ask Qdrant."""

from __future__ import annotations

import functools
import os
import re
import warnings
from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from lookalike.defaults import DEFAULT_COLLECTION, DEFAULT_MAX_PIXELS, TEXT_MODEL
from lookalike.embed.settings import ModelSettings, canonical_model_id
from lookalike.errors import (
    BadImage,
    BadQuery,
    DatasetLoadError,
    ModelMismatch,
    NoTextTower,
    TextTruncated,
)
from lookalike.images import ImageSource, open_image
from lookalike.index import SearchSettings, effective
from lookalike.query import DEFAULT_STRATEGY, Examples, PointId, QueryOptions
from lookalike.records import CollectionMeta, Hit, Query, Result, StoredPoint, check_compatible
from lookalike.search.builder import QueryBuilder, is_point_id
from lookalike.search.limits import MAX_K, SPLIT_ROW, check_k, check_text
from lookalike.search.moved import where_now
from lookalike.search.queries import (
    grouped_options,
    needs_own,
    own_point,
    own_result,
    split_own,
)
from lookalike.source.fingerprint import read_file
from lookalike.store import Store, connect

if TYPE_CHECKING:
    from lookalike.embed.embedder import Embedder
    from lookalike.embed.text import Prompt, TextEncoder
    from lookalike.source import Source

# Label ids are ASCII digits (str.isdigit also takes "²", which int() refuses), stored as the
# engines' 64-bit integers.
LABEL_ID = re.compile(r"[0-9]{1,19}", re.ASCII)
MAX_LABEL_ID = 2**63 - 1


class Gallery:
    """The images behind a collection's points. A point shows its own image: the file at its
    stored path under the dataset's folder, else its row of the dataset, and only when the
    bytes there still have the point's sha256 (never whatever sits at that row now). Points
    stored before lookalike kept fingerprints show their row, else their path."""

    def __init__(self, meta: CollectionMeta) -> None:
        self.meta = meta
        self._sources: dict[str, Source] = {}

    def source(self, split: str) -> Source:
        """The split of the collection's dataset, loaded once, with the collection's label ids."""
        if split not in self._sources:
            from lookalike.source import load_source  # datasets loads here, not on import

            self._sources[split] = load_source(
                self.meta.dataset,
                split,
                image_column=self.meta.image_column,
                label_column=self.meta.label_column,
                exif=False,  # queries need the pictures, not their fields
            ).relabel(self.meta.label_names)
            if self.meta.dataset_id:  # moved since: ids as the collection made them
                self._sources[split] = replace(self._sources[split], id_name=self.meta.dataset_id)
        return self._sources[split]

    def image(self, point: StoredPoint, min_side: int | None = None) -> Image.Image | None:
        """A stored point's own image, or None when it is gone or has changed since; with
        `min_side`, a file may be decoded smaller (see open_image: a thumbnail's original)."""
        if point.sha256 is None:
            return self._by_row_or_path(point)
        file = self._under_root(point)
        if file is not None:
            try:
                data, _, sha = read_file(file)
                return open_image(data, min_side=min_side) if sha == point.sha256 else None
            except (OSError, BadImage):
                return None
        return self._by_row(point)

    def _under_root(self, point: StoredPoint) -> str | None:
        """The file a point's path names under the dataset's folder (never outside it)."""
        root = self.meta.dataset
        if not point.path or not os.path.isdir(root):
            return None
        file = os.path.normpath(os.path.join(root, point.path))
        return file if file.startswith(root + os.sep) and os.path.isfile(file) else None

    def _by_row(self, point: StoredPoint) -> Image.Image | None:
        try:
            source = self.source(point.split)
            position = source.locate(point.path, point.row)
            record = None if position is None else source.decode(position)
        except (DatasetLoadError, BadImage):
            return None
        return record.image if record and record.sha256 == point.sha256 else None

    def _by_row_or_path(self, point: StoredPoint) -> Image.Image | None:
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
        """The file a stored point's path names, if it exists: under the dataset's folder,
        else the path as stored (a dataset's path column, or an older collection's)."""
        file = self._under_root(point)
        if file is None and point.path and os.path.isfile(point.path):
            file = point.path
        return file


class Searcher:
    """Search a collection with images, or with words when its model has a text tower.

    >>> searcher = Searcher("beans", store=connect(StoreConfig(path="./lookalike-data")))
    >>> hits = searcher.search("leaf.jpg", k=5, label="healthy")
    >>> hits[0].label_name, hits[0].score
    >>> hits = searcher.search_text("a leaf with rusty spots", k=5)   # CLIP, SigLIP

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
        self.meta: CollectionMeta = where_now(self.info.meta, self.store, collection)
        model = self.settings.model
        if model:
            self.settings.check(model)  # a folder that does not exist is said as such
            if canonical_model_id(model) != self.meta.model:
                # Refuse before loading: another model can only give meaningless neighbours.
                meta = _as_meta(self.meta, canonical_model_id(model))
                meta = replace(meta, pooling=self.settings.pooling)  # "auto": known once loaded
                check_compatible(self.info, meta, ingest=False)
        elif embedder is None:
            self.settings.check(self.meta.model)
        self._embedder = embedder
        self.gallery = Gallery(self.meta)
        self.index = self.info.index
        self.params = effective(params, self.index)  # with the quantization's oversampling
        self.queries = QueryBuilder(self.store, collection)

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

    def refresh(self) -> None:
        """Read the collection's metadata again (label names it gained since, by a sync)."""
        meta = self.store.info(self.collection).meta
        meta = meta and where_now(meta, self.store, self.collection)
        if meta is not None and meta != self.meta:
            self.meta = meta
            self.gallery = Gallery(meta)

    def candidate_image(self, point: StoredPoint) -> Image.Image | None:
        return self.gallery.image(point)

    def load_query(self, query: str) -> Image.Image:
        """An image file path, or SPLIT:ROW meaning that row of the collection's dataset."""
        return self.query(query).image

    def query(self, text: str) -> Query:
        """An image file, or SPLIT:ROW for that row of the collection's dataset, with what is
        known of it (its label and stored point, when it is one of the collection's)."""
        if os.path.exists(text):
            return Query(text, self.open_image(text), path=os.path.realpath(text))
        return self.row_query(*_split_row(text))

    def check_query(self, text: str) -> None:
        """BadQuery now for a query naming no file, or a split or row the dataset lacks;
        reads no image (a query's image is decoded when it is searched)."""
        if os.path.exists(text):
            return
        split, row = _split_row(text)
        try:
            self.source(split).position(row)
        except DatasetLoadError as e:
            raise BadQuery(f"query {text!r}: {e}", field="query") from e

    def row_query(self, split: str, row: int) -> Query:
        """Row `row` of `split` of the collection's dataset as a query, with its label."""
        text = f"{split}:{row}"
        try:
            record = self.source(split).record(row, self._decode_side)
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

    def open_image(self, image: ImageSource, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
        """Decode a query as ingest decodes candidates: at the size the model needs. Before the
        model has loaded (a query checked first), in full: the embedder reduces it the same way."""
        return open_image(image, max_pixels, self._decode_side)

    @property
    def _decode_side(self) -> int | None:
        return self._embedder.decode_side if self._embedder is not None else None

    def point(self, point_id: str) -> StoredPoint | None:
        return self.store.point(self.collection, point_id)

    def label_id(self, label: str | int | None) -> int | None:
        """A label name or id as the id stored in payloads; BadQuery if the collection has none."""
        if label is None:
            return None
        names = self.meta.label_names
        if isinstance(label, str) and label in names:  # a name, even one made of digits
            return names.index(label)
        if isinstance(label, int) or LABEL_ID.fullmatch(str(label)):
            value = int(label)
            top = len(names) - 1 if names else MAX_LABEL_ID
            if not 0 <= value <= top:
                shown = str(label) if len(str(label)) <= 20 else f"{str(label)[:20]}..."
                raise BadQuery(f"label id {shown} is out of range 0..{top}", field="label")
            return value
        known = ", ".join(names) or "none (the collection has no labels)"
        shown = repr(label) if len(str(label)) <= 100 else f"{str(label)[:100]!r}..."
        raise BadQuery(f"unknown label {shown}; labels are: {known}", field="label")

    def options(
        self,
        *,
        where: Sequence[str] = (),
        filter: str | dict | None = None,
        min_score: float | str | None = None,
        group_by: str | None = None,
        near: str | tuple[float, float] | None = None,
        within: str | float | None = None,
    ) -> QueryOptions:
        """Query options checked against the collection's fields: `where` items such as
        "sku=R-001", "colour=red,blue", "price<=50", "taken>=2024-06-01"; `filter` in
        Qdrant's filter JSON; `min_score` drops weaker hits ("dup": keeps only near-duplicates,
        by the collection's calibrated threshold); `group_by` keeps the best hit of
        each value; `near` (LAT,LON or a (lat, lon) pair) with `within` ("5km", or metres):
        only photos whose `location` is that close."""
        return self.queries.build(where, filter, min_score, group_by, near, within)

    def search(
        self,
        image: ImageSource,
        k: int = 5,
        label: str | int | None = None,
        options: QueryOptions | None = None,
    ) -> list[Hit]:
        """The top-k candidates most like `image` (a path, bytes or PIL image)."""
        return self.search_many([image], k=k, label=label, options=options)[0]

    def search_many(
        self,
        images: Sequence[ImageSource],
        k: int = 5,
        label: str | int | None = None,
        options: QueryOptions | None = None,
    ) -> list[list[Hit]]:
        """One list of hits per image, embedded in one batch and queried in one request."""
        check_k(k)
        label_id = self.label_id(label)
        vectors = self.embedder.embed([self.open_image(i) for i in images])
        return self.search_vectors(vectors, k=k, label=label_id, options=options)

    def search_queries(
        self,
        queries: Sequence[Query],
        k: int = 5,
        label: str | int | None = None,
        *,
        include_self: bool = False,
        options: QueryOptions | None = None,
    ) -> list[Result]:
        """Like search_many, for queries from `query()`: a query that is one of the
        collection's own images does not find itself unless `include_self`."""
        check_k(k)
        label_id = self.label_id(label)
        vectors = self.embedder.embed([q.image for q in queries])
        if needs_own(options, include_self):  # left out before grouping, not after
            return [
                self.grouped_query(q, v[None], k, label_id, options)
                for q, v in zip(queries, vectors)
            ]
        asked = min(k + 1, MAX_K + 1)
        found = self.search_vectors(vectors, k=asked, label=label_id, options=options)
        return [
            split_own(q, hits, k, self.gallery.file, include_self)
            for q, hits in zip(queries, found)
        ]

    def own_point(self, query: Query) -> StoredPoint | None:
        """The query's own stored point (it is one of the collection's images), or None."""
        own = own_point(query, self.store, self.collection, self.gallery.file, self.meta.dataset)
        return None if own is None else self.point(own)

    def grouped_query(
        self, query: Query, vector: np.ndarray, k: int, label: int | None, options: QueryOptions
    ) -> Result:
        """A grouped query without its own point, which is left out before grouping."""
        own = self.own_point(query)
        chosen = grouped_options(query, options, own and own.id)
        hits = self.search_vectors(vector, k=k, label=label, options=chosen)[0]
        return own_result(query, hits, k, own)

    @property
    def text_queries(self) -> bool:
        """Whether the collection's model can embed text queries (CLIP, SigLIP)."""
        return self.meta.text if self.meta.text is not None else self.embedder.text_tower

    @functools.cached_property
    def text_encoder(self) -> TextEncoder:
        """The text tower of the collection's model; NoTextTower if it has none."""
        if not self.text_queries:
            raise NoTextTower(self.collection, self.meta.model, self.meta.dataset, TEXT_MODEL)
        from lookalike.embed.text import TextEncoder  # transformers' tokenizers load here

        return TextEncoder(self.embedder)

    def search_text(
        self,
        text: str,
        k: int = 5,
        label: str | int | None = None,
        options: QueryOptions | None = None,
    ) -> list[Hit]:
        """The top-k candidates that best match `text` ("a bee on a yellow flower")."""
        return self.search_texts([text], k=k, label=label, options=options)[0]

    def search_texts(
        self,
        texts: Sequence[str],
        k: int = 5,
        label: str | int | None = None,
        options: QueryOptions | None = None,
    ) -> list[list[Hit]]:
        """One list of hits per text, embedded in one batch; a text longer than the model
        reads is cut, with a TextTruncated warning."""
        check_k(k)
        label_id = self.label_id(label)
        vectors, prompts = self.text_vectors(texts)
        for prompt in prompts:
            if prompt.truncated:
                warnings.warn(TextTruncated(prompt.text, prompt.tokens, prompt.limit), stacklevel=2)
        return self.search_vectors(vectors, k=k, label=label_id, options=options)

    def text_vectors(self, texts: Sequence[str]) -> tuple[np.ndarray, list[Prompt]]:
        """Text queries embedded (float32, unit rows) and as the model read them."""
        for text in texts:
            check_text(text)
        encoder = self.text_encoder
        return encoder.embed(texts), encoder.prompts(texts)

    def search_vectors(
        self,
        vectors: np.ndarray,
        k: int,
        label: int | None = None,
        params: SearchSettings | None = None,
        options: QueryOptions | None = None,
    ) -> list[list[Hit]]:
        """Hits for embedded queries; `params` overrides the searcher's search settings."""
        params = effective(params, self.index) if params else self.params
        return self.store.query(
            self.collection, vectors, k, label=label, params=params, options=options
        )

    def recommend(
        self,
        like: Sequence[ImageSource],
        unlike: Sequence[ImageSource] = (),
        k: int = 5,
        *,
        strategy: str = DEFAULT_STRATEGY,
        label: str | int | None = None,
        options: QueryOptions | None = None,
    ) -> list[Hit]:
        """Candidates like the `like` examples and unlike the `unlike` ones, in one query.
        An example is a stored point's id (a PointId, or a uuid that names no file; never
        returned itself), an image (path, bytes, PIL image) or SPLIT:ROW; `strategy` as
        Qdrant's recommend: best_score (each candidate scored by its nearest example, so
        several different examples each find their own look-alikes), average_vector or
        sum_scores."""
        check_k(k)
        examples = [*like, *unlike]
        stored = [_is_id(e) for e in examples]
        queries = [self._example(e) for e, is_id in zip(examples, stored) if not is_id]
        vectors = iter(self.embedder.embed([q.image for q in queries]) if queries else [])
        resolved = [e if is_id else next(vectors) for e, is_id in zip(examples, stored)]
        options = (options or QueryOptions()).with_label(self.label_id(label))
        # An example that is one of the collection's images (a file, SPLIT:ROW) is left out
        # of its own results, as an example given by id is.
        own = [p.id for p in map(self.own_point, queries) if p is not None]
        options = replace(options, exclude=(*options.exclude, *own))
        chosen = Examples(tuple(resolved[: len(like)]), tuple(resolved[len(like) :]), strategy)
        return self.store.recommend(self.collection, chosen, k, params=self.params, options=options)

    def search_id(
        self, point_id: str, k: int = 5, options: QueryOptions | None = None
    ) -> list[Hit]:
        """The candidates most like a stored point, without its image; never the point itself."""
        return self.recommend([point_id], k=k, strategy="average_vector", options=options)

    def _example(self, example: ImageSource) -> Query:
        if isinstance(example, str):
            return self.query(example)
        return Query("example", self.open_image(example))


def _is_id(example: object) -> bool:
    return isinstance(example, PointId) or isinstance(example, str) and is_point_id(example)


def _split_row(text: str) -> tuple[str, int]:
    match = SPLIT_ROW.match(text)
    if not match:
        raise BadQuery(
            f"no such file: {text!r} (a query is an image file, or SPLIT:ROW such as test:17)",
            field="query",
        )
    return match["split"], int(match["row"])


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
