"""The one embedder for ingest and search, and the model settings that load it. The only
package that runs transformers/torch inference; torch loads when `Embedder` is first used."""

from importlib import import_module

from lookalike.embed.settings import ModelSettings

__all__ = ["Embedder", "ModelSettings"]


def __getattr__(name: str):
    if name == "Embedder":
        return import_module("lookalike.embed.embedder").Embedder
    raise AttributeError(f"module 'lookalike.embed' has no attribute {name!r}")
