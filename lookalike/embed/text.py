"""Text queries: words embedded by the text tower of a dual encoder (CLIP, SigLIP) into the
space its image tower gave the collection.

The tower is the Embedder's own model object, so words and images always come from the same
weights, revision, device and precision; the tokenizer loads with the model's own loading
arguments (revision, trust setting). Text vectors are L2-normalised as image vectors are.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from transformers import AutoTokenizer

from lookalike.embed.embedder import Embedder
from lookalike.errors import ModelLoadError

# Trained on text padded to max_length, and pooled at the last position, padding or not: a
# query padded otherwise gets another vector.
PAD_TO_MAX = {"siglip", "siglip2"}
# Trained on lowercased text, and its (Gemma) tokenizer does not lowercase by itself.
LOWERCASE = {"siglip2"}
# A tokenizer that does not know its limit says this (transformers' VERY_LARGE_INTEGER).
NO_LIMIT = 10**12


@dataclass(frozen=True)
class Prompt:
    """A text query as the model reads it: `tokens` it makes, special tokens included, of
    which the model reads the first `limit`."""

    text: str
    tokens: int
    limit: int

    @property
    def truncated(self) -> bool:
        return self.tokens > self.limit


class TextEncoder:
    """Embeds text queries into an Embedder's image space.

    >>> text = TextEncoder(Embedder("openai/clip-vit-base-patch32"))
    >>> vectors = text.embed(["a bee on a yellow flower"])   # (1, dim) float32, unit length
    """

    def __init__(self, embedder: Embedder) -> None:
        model = embedder.model_id
        if not embedder.text_tower:
            raise ModelLoadError(model, f"model {model!r} has no text tower", kind="text")
        self.embedder = embedder
        self.tokenizer = _load_tokenizer(model, embedder.load_kwargs)
        self.limit = _token_limit(self.tokenizer, embedder.model)
        self.pad_to_max = embedder.model_type in PAD_TO_MAX
        self.lowercase = embedder.model_type in LOWERCASE

    def prompts(self, texts: Sequence[str]) -> list[Prompt]:
        """Each text as the model will read it, with its length in tokens."""
        texts = self._texts(texts)
        ids = self.tokenizer(texts, truncation=False, verbose=False)["input_ids"] if texts else []
        return [Prompt(t, len(i), self.limit) for t, i in zip(texts, ids)]

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """float32 (len(texts), dim), each row of unit length; a text longer than the model
        reads is cut to its first `limit` tokens (see `prompts`)."""
        if not texts:
            return np.zeros((0, self.embedder.dim), dtype=np.float32)
        batch = self.tokenizer(
            self._texts(texts),
            padding="max_length" if self.pad_to_max else True,
            truncation=True,
            max_length=self.limit,
            return_tensors="pt",
        )
        batch = {k: v.to(self.embedder.device) for k, v in batch.items()}
        with torch.inference_mode(), self.embedder.autocast():
            features = self.embedder.model.get_text_features(**batch)
        if not isinstance(features, torch.Tensor):
            features = features.pooler_output  # transformers 5: an output with the projection
        vectors = torch.nn.functional.normalize(features.float(), dim=-1)
        return vectors.cpu().numpy()

    def _texts(self, texts: Sequence[str]) -> list[str]:
        return [t.lower() for t in texts] if self.lowercase else list(texts)


def _load_tokenizer(model: str, load_kwargs: dict):
    try:
        tokenizer = AutoTokenizer.from_pretrained(model, **load_kwargs)
        # transformers 5 makes an empty tokenizer from a folder without tokenizer files.
        if len(tokenizer) <= len(tokenizer.all_special_ids):
            raise ValueError("no tokenizer files, only special tokens")
    except Exception as e:  # missing files, a missing tokenizer library, the hub alike
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ModelLoadError(
            model,
            f"could not load the tokenizer of {model!r} ({first}): text queries need the "
            "model's tokenizer files beside its weights",
            kind="tokenizer",
        ) from e
    return tokenizer


def _token_limit(tokenizer, model: torch.nn.Module) -> int:
    """Tokens the text tower reads: its position embeddings (CLIP's 77, SigLIP's 64), or the
    tokenizer's own limit when that is smaller."""
    config = getattr(model.config, "text_config", None) or model.config
    positions = getattr(config, "max_position_embeddings", None) or NO_LIMIT
    own = getattr(tokenizer, "model_max_length", None) or NO_LIMIT
    return int(min(positions, own))
