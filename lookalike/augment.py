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


def _encoded(image: Image.Image, quality: int = 90, exif: Image.Exif | None = None) -> bytes:
    import io

    buf = io.BytesIO()
    image.convert("RGB").save(buf, "JPEG", quality=quality, exif=exif or Image.Exif())
    return buf.getvalue()


def resaved_q75(image: Image.Image) -> bytes:
    """The photo saved again at JPEG quality 75 (a messenger, a web upload)."""
    return _encoded(image, 75)


def half_size(image: Image.Image) -> bytes:
    """The photo at half its width and height (an exported or e-mailed copy)."""
    size = (max(1, image.width // 2), max(1, image.height // 2))
    return _encoded(image.resize(size, Image.LANCZOS))


def small_crop(image: Image.Image) -> bytes:
    """The photo with 4% cut from each side (a straightened or trimmed copy)."""
    w, h = image.size
    return _encoded(image.crop((w // 25, h // 25, w - w // 25, h - h // 25)))


def exif_rotated(image: Image.Image) -> bytes:
    """The photo's pixels turned a quarter, with an EXIF orientation that turns them back
    (what a phone writes): the same picture to anyone who honours EXIF."""
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 clockwise to show: the pixels are turned 90 anticlockwise
    return _encoded(image.transpose(Image.Transpose.ROTATE_90), exif=exif)


# Copies a person calls the same photo, as files (JPEG bytes): what calibrates a collection's
# near-duplicate threshold (ingest/calibrate.py).
COPIES = {
    "resave-q75": resaved_q75,
    "half-size": half_size,
    "crop-4%": small_crop,
    "exif-rotation": exif_rotated,
}
