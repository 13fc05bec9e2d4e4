"""The one embedder used by ingest, search and eval: same processor, pooling and normalisation.

This is the only module that runs transformers/torch inference.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image
from transformers import AutoConfig, AutoImageProcessor, AutoModel

from lookalike.errors import ModelLoadError
from lookalike.images import to_rgb

POOLINGS = ("auto", "cls", "pooler", "mean", "image_features")

# Families whose image embedding is the CLS token (the tutorial's last_hidden_state[:, 0]).
# ViTModel also has a pooler, but classification checkpoints leave it randomly initialised.
CLS_FAMILIES = {
    "vit",
    "deit",
    "dinov2",
    "dinov2_with_registers",
    "beit",
    "data2vec-vision",
    "vit_msn",
}
# Families whose pooled output is the image embedding (CNNs: pooler_output is the global pool;
# last_hidden_state[:, 0] would be one feature-map channel).
POOLER_FAMILIES = {
    "efficientnet", "resnet", "regnet", "convnext", "convnextv2", "mobilenet_v1", "mobilenet_v2",
    "swin", "swinv2", "bit", "levit", "poolformer", "van",
}  # fmt: skip
# Dual-encoder models: the image tower's projected features.
IMAGE_FEATURE_FAMILIES = {"clip", "siglip", "siglip2", "chinese_clip", "altclip"}


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        return torch.device(device)
    except RuntimeError as e:
        raise ModelLoadError(f"unknown device {device!r}: use auto, cpu, cuda or mps") from e


def canonical_model_id(model: str) -> str:
    """A hub id stays as given; a local folder becomes its absolute path, so it compares equal
    whatever directory lookalike is run from."""
    return os.path.abspath(model) if os.path.isdir(model) else model


def _load_error(model: str, err: Exception) -> ModelLoadError:
    hint = (
        "the Hugging Face hub may be unreachable or the id may be wrong; "
        "download the model elsewhere and pass its local folder with --model PATH"
    )
    if os.path.isdir(model):
        hint = "the folder must hold a transformers model: config.json, weights, image processor"
    first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return ModelLoadError(f"could not load model {model!r} ({first}): {hint}")


class Embedder:
    """Embeds images into L2-normalised vectors with a transformers vision model.

    >>> emb = Embedder("nateraw/vit-base-beans")          # or a local model folder
    >>> vectors = emb.embed([image1, image2])             # (2, emb.dim) float32, unit length
    """

    def __init__(
        self,
        model: str,
        *,
        revision: str | None = None,
        device: str = "auto",
        pooling: str = "auto",
    ) -> None:
        if pooling not in POOLINGS:
            raise ModelLoadError(
                f"unknown pooling {pooling!r}: choose one of {', '.join(POOLINGS)}"
            )
        self.model_id = canonical_model_id(model)
        self.device = resolve_device(device)
        kwargs = {"revision": revision} if revision else {}
        try:
            config = AutoConfig.from_pretrained(model, **kwargs)
            self.processor = AutoImageProcessor.from_pretrained(model, **kwargs)
            self.model = AutoModel.from_pretrained(model, **kwargs)
        except (OSError, ValueError, KeyError) as e:
            raise _load_error(model, e) from e
        self.model.eval().to(self.device)
        self.model_type = config.model_type
        self.pooling = self._choose_pooling(pooling)
        self.dim = int(self.embed([Image.new("RGB", (64, 64))]).shape[1])

    def _choose_pooling(self, requested: str) -> str:
        if requested != "auto":
            return requested
        if self.model_type in IMAGE_FEATURE_FAMILIES and hasattr(self.model, "get_image_features"):
            return "image_features"
        if self.model_type in CLS_FAMILIES:
            return "cls"
        if self.model_type in POOLER_FAMILIES:
            return "pooler"
        # Unknown family: decide from the output shapes of one dummy image.
        out = self._forward(self._pixels([Image.new("RGB", (64, 64))]))
        if out.last_hidden_state is not None and out.last_hidden_state.ndim == 3:
            return "cls"
        return "pooler" if getattr(out, "pooler_output", None) is not None else "mean"

    def _pixels(self, images: Sequence[Image.Image]) -> torch.Tensor:
        # Not every image processor converts to RGB; greyscale or RGBA input must not fail.
        rgb = [im if im.mode == "RGB" else to_rgb(im) for im in images]
        batch = self.processor(images=rgb, return_tensors="pt")
        return batch["pixel_values"].to(self.device)

    def _forward(self, pixels: torch.Tensor):
        with torch.inference_mode():
            return self.model(pixel_values=pixels)

    def _pool(self, pixels: torch.Tensor) -> torch.Tensor:
        if self.pooling == "image_features":
            with torch.inference_mode():
                feats = self.model.get_image_features(pixel_values=pixels)
            return feats if isinstance(feats, torch.Tensor) else feats.pooler_output
        out = self._forward(pixels)
        hidden = out.last_hidden_state
        if self.pooling == "cls":
            if hidden.ndim != 3:
                raise ModelLoadError(
                    f"pooling 'cls' needs a token sequence, but {self.model_type!r} outputs a "
                    "feature map: use --pooling pooler or mean"
                )
            return hidden[:, 0]
        if self.pooling == "pooler":
            pooled = getattr(out, "pooler_output", None)
            if pooled is None:
                raise ModelLoadError(
                    f"{self.model_type!r} has no pooler_output: use --pooling mean"
                )
            return pooled.flatten(1)  # ResNet-style poolers are (B, C, 1, 1)
        return hidden.mean(dim=1) if hidden.ndim == 3 else hidden.mean(dim=(2, 3))

    def embed(self, images: Sequence[Image.Image]) -> np.ndarray:
        """Embed RGB images; returns float32 (len(images), dim), each row of unit length."""
        if not images:
            return np.zeros((0, getattr(self, "dim", 0)), dtype=np.float32)
        vectors = self._pool(self._pixels(images)).float()
        vectors = torch.nn.functional.normalize(vectors, dim=-1)
        return vectors.cpu().numpy()
