"""Photo augmentations for tuning, in PIL (lookalike does not depend on torchvision).

Each returns an image of the input's size, so the model's own image processor then does
exactly what it does at ingest and search time.
"""

from __future__ import annotations

import math
import random

from PIL import Image, ImageEnhance, ImageOps


def random_resized_crop(
    image: Image.Image, rng: random.Random, scale=(0.5, 1.0), ratio=(3 / 4, 4 / 3)
) -> Image.Image:
    width, height = image.size
    for _ in range(10):
        area = width * height * rng.uniform(*scale)
        aspect = math.exp(rng.uniform(math.log(ratio[0]), math.log(ratio[1])))
        w, h = round(math.sqrt(area * aspect)), round(math.sqrt(area / aspect))
        if 0 < w <= width and 0 < h <= height:
            x, y = rng.randint(0, width - w), rng.randint(0, height - h)
            return image.resize((width, height), Image.BICUBIC, box=(x, y, x + w, y + h))
    return image.copy()


def colour_jitter(image: Image.Image, rng: random.Random, strength: float = 0.2) -> Image.Image:
    for enhance in (ImageEnhance.Brightness, ImageEnhance.Contrast, ImageEnhance.Color):
        image = enhance(image).enhance(rng.uniform(1 - strength, 1 + strength))
    return image


def augment(image: Image.Image, rng: random.Random) -> Image.Image:
    """Random resized crop, horizontal flip, mild colour jitter."""
    image = random_resized_crop(image, rng)
    if rng.random() < 0.5:
        image = ImageOps.mirror(image)
    return colour_jitter(image, rng)


def _crop(image: Image.Image) -> Image.Image:
    w, h = image.size
    return image.crop((w // 10, h // 10, w - w // 10, h - h // 10))


def _rescale(image: Image.Image) -> Image.Image:
    return image.resize((max(1, image.width // 2), max(1, image.height // 2)), Image.BILINEAR)


def _jpeg(image: Image.Image) -> Image.Image:
    import io

    buf = io.BytesIO()
    image.convert("RGB").save(buf, "JPEG", quality=30)
    return Image.open(io.BytesIO(buf.getvalue())).convert("RGB")


def _brightness(image: Image.Image) -> Image.Image:
    return ImageEnhance.Brightness(image).enhance(1.3)


# The edited copies a near-duplicate search must see through.
EDITS = {"crop": _crop, "rescale": _rescale, "jpeg": _jpeg, "brightness": _brightness}
