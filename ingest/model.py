"""The model of an ingest: known by name before it loads, loaded only once an image needs
embedding, so a sync of an unchanged folder never imports torch."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from lookalike.embed import ModelSettings
from lookalike.embed.settings import canonical_model_id
from lookalike.identity import model_hash, same_model
from lookalike.records import CollectionMeta
from lookalike.source import Source

if TYPE_CHECKING:
    from lookalike.embed import Embedder


def collection_meta(source: Source, embedder: Embedder) -> CollectionMeta:
    return CollectionMeta(
        model=embedder.model_id,
        pooling=embedder.pooling,
        dim=embedder.dim,
        dataset=source.name,
        image_column=source.image_column,
        label_column=source.label_column,
        label_names=source.label_names,
        text=embedder.text_tower,
        model_hash=model_hash(embedder.model_id),
        dataset_id=source.id_name,
        runtime=embedder.runtime.name,
        precision=embedder.runtime.precision,
    )


@dataclass
class LazyModel:
    """The embedder, loaded only once an image needs embedding (a sync of an unchanged folder
    never loads it)."""

    given: Embedder | ModelSettings
    loaded: Embedder | None = None

    def target(self, source: Source, have: CollectionMeta | None) -> CollectionMeta | None:
        """The collection this ingest needs, as far as is known without loading a model."""
        if not isinstance(self.given, ModelSettings):
            return collection_meta(source, self.given)
        if have is None:
            return None
        settings = self.given
        model = canonical_model_id(settings.model) if settings.model else have.model
        pooling = settings.pooling
        same = same_model(have.model, have.model_hash, model)  # the same files moved: the same
        if pooling == "auto" and same:  # another model's is known once it loads
            pooling = have.pooling
        return replace(
            have,
            model=model,
            pooling=pooling,
            dataset=source.name,
            dataset_id=source.id_name,
            label_names=source.label_names,
        )

    def load(self, have: CollectionMeta | None) -> Embedder:
        """The embedder; from settings, the collection's model and pooling unless they say
        otherwise."""
        if self.loaded is None and isinstance(self.given, ModelSettings):
            settings = self.given
            pooling = have.pooling if have and settings.pooling == "auto" else None
            self.loaded = settings.load(settings.model or (have and have.model), pooling)
        return self.loaded or self.given
