"""From decoded images to the model's input, cheaply and within a fixed amount of memory.

Most vision models' image processors are one standard chain: resize (shortest edge, or to a
fixed height and width), center crop, rescale, normalize. For those, `PixelChain` does the
geometry per image on 8-bit pixels in PIL, resizing only the part the crop keeps (so a
30000x1 image costs no more than a square one), and the float work once per batch in torch,
on the model's device. Its output matches the processor's own (tests/test_pixels.py).
Any other processor is run as it is.

Where the resize keeps the aspect ratio, an image longer than MAX_ASPECT:1 is first cut to
its central MAX_ASPECT:1 part (`clamp_aspect`), so that a 30000x1 image does not resize to
7.7M x 256 pixels. The center crop that follows keeps far less than that part, so what the
model sees does not change.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

if TYPE_CHECKING:  # torch only where the float work runs in torch: a cached OpenVINO model
    import torch  # is fed by `normalize_array`, and its search never imports torch

# Decode at least this much larger than the size the processor resizes to, so its own
# resize still downsamples (and filters) rather than working from an image just its size.
DECODE_MARGIN = 1.25
# Where the resize keeps the aspect ratio, a longer image is cut to its central part of this
# ratio first, so its resized size (and memory) stays bounded.
MAX_ASPECT = 16

_STANDARD_STEPS = (
    "preprocess",
    "_preprocess",
    "_preprocess_image_like_inputs",
    "process_image",
    "convert_to_rgb",
    "resize",
    "center_crop",
    "rescale",
    "normalize",
)


def _standard_backend(processor) -> bool:
    """True if the processor's class runs its backend's steps unchanged (ViT, DeiT, BiT,
    DINOv2, CLIP, SigLIP, BLIP, PVT, MobileNetV1...), so its settings say all it does."""
    try:
        from transformers.image_processing_backends import PilBackend, TorchvisionBackend
    except ImportError:
        return False
    cls = type(processor)
    for base in (PilBackend, TorchvisionBackend):
        if issubclass(cls, base):
            return all(getattr(cls, step) is getattr(base, step) for step in _STANDARD_STEPS)
    return False


def _per_channel(value) -> tuple[float, float, float]:
    values = [float(v) for v in np.atleast_1d(value)]
    return tuple(values * 3) if len(values) == 1 else tuple(values)  # type: ignore[return-value]


def _size(processor):
    size = getattr(processor, "size", None)
    return size.get if isinstance(size, dict) else lambda key: getattr(size, key, None)


def resizes_shortest_edge(processor) -> bool:
    """True if the processor resizes the short side and keeps the aspect ratio: the resized
    size then grows with the aspect ratio, without bound."""
    get = _size(processor)
    return bool(get("shortest_edge")) and not (get("height") and get("width"))


def resize_target(processor) -> int | None:
    """The side length the processor resizes an image to (before any crop), if its settings
    say so plainly: a shortest edge (divided by `crop_pct` where the family has one) or a
    fixed height and width."""
    if not getattr(processor, "do_resize", False):
        return None
    get = _size(processor)
    if get("longest_edge") or get("max_height") or get("max_pixels"):
        return None  # fit-inside or tiling processors: the size depends on the image
    if get("shortest_edge"):
        crop_pct = getattr(processor, "crop_pct", None) or 1.0
        return math.ceil(get("shortest_edge") / crop_pct)
    if get("height") and get("width"):
        return max(get("height"), get("width"))
    return None


def decode_side(processor) -> int | None:
    """The smallest side an image may be decoded at for this processor, or None for a full
    decode (processors whose resize target cannot be read from their settings)."""
    target = resize_target(processor)
    return math.ceil(target * DECODE_MARGIN) if target else None


def clamp_aspect(image: Image.Image, limit: float = MAX_ASPECT) -> Image.Image:
    """The central part of an image longer than `limit`:1 on either axis, else the image."""
    w, h = image.size
    if w > limit * h:
        keep = max(1, round(limit * h))
        left = (w - keep) // 2
        return image.crop((left, 0, left + keep, h))
    if h > limit * w:
        keep = max(1, round(limit * w))
        top = (h - keep) // 2
        return image.crop((0, top, w, top + keep))
    return image


@dataclass(frozen=True)
class PixelChain:
    """A standard processor's settings: resize, center crop, rescale, normalize."""

    shortest_edge: int | None  # resize the short side to this, keeping the aspect ratio
    resize_to: tuple[int, int] | None  # or resize to this (height, width)
    resample: int
    crop: tuple[int, int] | None  # (height, width)
    scale: float
    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    @classmethod
    def of(cls, processor) -> PixelChain | None:
        """The chain a processor runs, or None where lookalike must run the processor itself."""
        if not _standard_backend(processor) or getattr(processor, "do_pad", False):
            return None
        size, crop = processor.size, processor.crop_size
        if not processor.do_resize or resize_target(processor) is None:
            return None
        shortest = size.shortest_edge if not (size.height and size.width) else None
        if shortest and not processor.do_center_crop:
            return None  # the output size would follow each image's aspect ratio
        try:
            resample = int(processor.resample if processor.resample is not None else 2)
        except (TypeError, ValueError):
            return None  # a torchvision interpolation mode: not a PIL filter
        normalize = processor.do_normalize
        return cls(
            shortest_edge=shortest,
            resize_to=None if shortest else (size.height, size.width),
            resample=resample,
            crop=(crop.height, crop.width) if processor.do_center_crop else None,
            scale=float(processor.rescale_factor) if processor.do_rescale else 1.0,
            mean=_per_channel(processor.image_mean) if normalize else (0.0, 0.0, 0.0),
            std=_per_channel(processor.image_std) if normalize else (1.0, 1.0, 1.0),
        )

    def _resized_size(self, width: int, height: int) -> tuple[int, int]:
        """(width, height) after the resize, as transformers computes it."""
        if self.resize_to:
            return self.resize_to[1], self.resize_to[0]
        s = self.shortest_edge
        if width <= height:
            return s, int(s * height / width)
        return int(s * width / height), s

    def geometry(self, image: Image.Image) -> np.ndarray:
        """Resize and center crop an RGB image as transformers does: (height, width, 3) uint8,
        a crop larger than the resized image padded with zeros."""
        if self.shortest_edge:
            image = clamp_aspect(image)  # a 30000x1 image would resize to 7.7M x 256
        resized = np.asarray(image.resize(self._resized_size(*image.size), self.resample))
        if not self.crop:
            return resized
        (h, w), (ch, cw) = resized.shape[:2], self.crop
        top, left = (h - ch) // 2, (w - cw) // 2
        if top >= 0 and left >= 0:
            return resized[top : top + ch, left : left + cw]
        out = np.zeros((max(h, ch), max(w, cw), 3), dtype=np.uint8)
        pad_top, pad_left = math.ceil((out.shape[0] - h) / 2), math.ceil((out.shape[1] - w) / 2)
        out[pad_top : pad_top + h, pad_left : pad_left + w] = resized
        top, left = top + pad_top, left + pad_left
        return out[top : top + ch, left : left + cw]

    def normalize(self, pixels: torch.Tensor) -> torch.Tensor:
        """(batch, height, width, 3) uint8, on any device -> the model's float32 input,
        (batch, 3, height, width) in channels-last memory (what convolutions prefer)."""
        import torch

        std = torch.tensor(self.std, device=pixels.device)
        a = self.scale / std
        b = -torch.tensor(self.mean, device=pixels.device) / std
        return torch.addcmul(b, pixels.float(), a).permute(0, 3, 1, 2)

    def normalize_array(self, pixels: np.ndarray) -> np.ndarray:
        """`normalize` in numpy, for a runtime without torch: the same numbers (the same
        float32 multiply-add), as a contiguous (batch, 3, height, width) float32 array."""
        std = np.asarray(self.std, dtype=np.float32)
        a = np.float32(self.scale) / std
        b = -np.asarray(self.mean, dtype=np.float32) / std
        out = pixels.astype(np.float32) * a + b
        return np.ascontiguousarray(out.transpose(0, 3, 1, 2))
