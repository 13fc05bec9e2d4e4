"""Turning whatever holds an image (a path, bytes, a datasets Image value, a PIL image) into RGB."""

from __future__ import annotations

import io
import os
from typing import Any

from PIL import Image, ImageOps, UnidentifiedImageError

from lookalike.errors import BadImage

ImageSource = Image.Image | str | os.PathLike | bytes | dict


def to_rgb(image: Image.Image) -> Image.Image:
    """Apply EXIF orientation and convert to 3-channel RGB, as every model expects."""
    image = ImageOps.exif_transpose(image)
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        # Composite on white: dropping alpha leaves arbitrary colours under transparent pixels.
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if image.mode == "I;16" or image.mode == "I":
        # 16-bit greyscale: scale to 8 bits instead of clipping at 255.
        image = image.point(lambda v: v / 256).convert("L")
    return image.convert("RGB")


def open_image(source: ImageSource) -> Image.Image:
    """Decode `source` into an RGB image, raising BadImage with the reason."""
    name = describe(source)
    try:
        if isinstance(source, Image.Image):
            return to_rgb(source)
        if isinstance(source, dict):  # a datasets Image(decode=False) value
            data, path = source.get("bytes"), source.get("path")
            source = data if data is not None else path
            if source is None:
                raise BadImage(f"{name}: the row has no image")
        fp = io.BytesIO(source) if isinstance(source, bytes) else source
        with Image.open(fp) as img:
            img.load()
            return to_rgb(img)
    except BadImage:
        raise
    except FileNotFoundError as e:
        raise BadImage(f"{name}: no such file") from e
    except PermissionError as e:
        raise BadImage(f"{name}: permission denied") from e
    except UnidentifiedImageError as e:
        raise BadImage(f"{name}: not a readable image") from e
    except Image.DecompressionBombError as e:
        raise BadImage(f"{name}: too many pixels ({e})") from e
    except (OSError, ValueError, SyntaxError) as e:
        raise BadImage(f"{name}: cannot decode image ({e})") from e


def describe(source: Any) -> str:
    if isinstance(source, dict):
        return str(source.get("path") or "<image bytes>")
    if isinstance(source, (str, os.PathLike)):
        return str(source)
    if isinstance(source, bytes):
        return "<image bytes>"
    return "<image>"
