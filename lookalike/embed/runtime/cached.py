"""The Embedder of a model OpenVINO has already converted, loaded from the cache without torch
or transformers: a `lookalike search photo.jpg` then starts in about a second, not ten.

It prepares images as the Embedder does (the same PixelChain: resize and crop in Pillow, the
normalisation in numpy with the same numbers, tests/test_runtime.py) and normalises the
converted network's pooled output the same way, so its vectors are the Embedder's.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
from PIL import Image

from lookalike.embed.pixels import PixelChain
from lookalike.embed.runtime import cache, l2_normalize
from lookalike.images import reduce_to, to_rgb


class CachedEmbedder:
    """The Embedder's interface (prepare, embed_pixels, embed, dim...) for a cached model."""

    text_tower = False  # text queries load the torch model (embed/text.py)
    device_type = "cpu"

    def __init__(self, model_id: str, folder, meta: dict, precision: str) -> None:
        from lookalike.embed.runtime.openvino_runtime import OpenVINORuntime

        self.model_id = model_id
        self.model_type = meta["model_type"]
        self.pooling = meta["pooling"]
        self.dim = int(meta["dim"])
        self.decode_side = meta["decode_side"]
        chain = dict(meta["chain"])
        for name in ("resize_to", "crop", "mean", "std"):
            chain[name] = tuple(chain[name]) if chain[name] is not None else None
        self.chain = PixelChain(**chain)
        self.precision = precision
        self.runtime = OpenVINORuntime(folder / "model.xml", precision)

    @property
    def default_batch_size(self) -> int:
        return 16

    def prepare(self, images: Iterable[Image.Image]) -> np.ndarray | None:
        arrays = [self.chain.geometry(self._rgb(im)) for im in images]
        return np.stack(arrays) if arrays else None

    def _rgb(self, image: Image.Image) -> Image.Image:
        image = image if image.mode == "RGB" else to_rgb(image)
        return reduce_to(image, self.decode_side)

    def embed_pixels(self, pixels) -> np.ndarray:
        pixels = np.asarray(pixels)
        if pixels.dtype == np.uint8:
            pixels = self.chain.normalize_array(pixels)
        return l2_normalize(self.runtime.run(pixels))

    def embed(self, images: Sequence[Image.Image]) -> np.ndarray:
        if not images:
            return np.zeros((0, self.dim), dtype=np.float32)
        return self.embed_pixels(self.prepare(images))


def load_cached(
    model: str, revision: str | None, pooling: str, precision: str
) -> CachedEmbedder | None:
    """The cached conversion of `model` with `pooling` (a concrete one, as a collection
    records it), or None where there is none, it has a text tower or a non-standard processor
    (those need torch and transformers), or anything about it cannot be read."""
    from lookalike.embed.runtime.openvino_runtime import cpu_has_native_bf16, key_for
    from lookalike.embed.settings import canonical_model_id

    if pooling == "auto" or precision not in ("auto", "fp32", "bf16"):
        return None
    folder = cache.model_folder(model, revision)
    if folder is None:
        return None
    key = key_for(cache.content_hash(folder), pooling)
    meta = cache.read_meta(key)
    if meta is None or meta.get("text_tower") or meta.get("chain") is None:
        return None
    if precision == "auto":
        precision = "bf16" if cpu_has_native_bf16() else "fp32"
    try:
        return CachedEmbedder(canonical_model_id(model), cache.entry(key), meta, precision)
    except Exception:  # a damaged entry: the full path converts it again
        return None
