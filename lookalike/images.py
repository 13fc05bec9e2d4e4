"""Turning whatever holds an image (a path, bytes, a datasets Image value, a PIL image) into an
RGB image, or a BadImage that says why not."""

from __future__ import annotations

import errno
import io
import os
import re
from typing import Any

from PIL import Image, ImageOps, UnidentifiedImageError

from lookalike.defaults import DEFAULT_MAX_PIXELS
from lookalike.errors import BadImage

ImageSource = Image.Image | str | os.PathLike | bytes | dict


def to_rgb(image: Image.Image) -> Image.Image:
    """Apply EXIF orientation and convert any mode to 3-channel 8-bit RGB."""
    image = ImageOps.exif_transpose(image)
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        # Composite on white: dropping alpha leaves arbitrary colours under transparent pixels.
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if image.mode.startswith("I;16") or image.mode in ("I", "F"):
        # 16-bit or float greyscale: rescale the used range to 8 bits instead of clipping at 255.
        lo, hi = image.getextrema()
        scale = 255.0 / (hi - lo) if hi > lo else 0.0
        image = image.convert("F").point(lambda v: (v - lo) * scale).convert("L")
    return image.convert("RGB")


def open_image(source: ImageSource, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Decode `source` into an RGB image, raising BadImage with the reason."""
    name = describe(source)
    try:
        if isinstance(source, Image.Image):
            _check_size(source, name, max_pixels)
            return to_rgb(source)
        if isinstance(source, dict):  # a datasets Image(decode=False) value
            data, path = source.get("bytes"), source.get("path")
            source = data if data is not None else path
            if source is None:
                raise BadImage(name, "the row has no image")
        if isinstance(source, bytes):
            if not source:
                raise BadImage(name, "empty file (0 bytes)")
            fp = io.BytesIO(source)
        else:
            if os.path.isfile(source) and os.path.getsize(source) == 0:
                raise BadImage(name, "empty file (0 bytes)")
            fp = source
        if max_pixels > (Image.MAX_IMAGE_PIXELS or 0):
            # PIL refuses above 2x its own limit before we can look: a raised limit must win.
            Image.MAX_IMAGE_PIXELS = max_pixels
        with Image.open(fp) as img:
            _check_size(img, name, max_pixels)  # header only: nothing decoded yet
            img.load()
            return to_rgb(img)
    except BadImage:
        raise
    except Image.DecompressionBombError as e:  # PIL's own limit, met before ours: quote ours
        pixels = re.search(r"\((\d+) pixels\)", str(e))
        count = f"{int(pixels[1]):,} > " if pixels else "more than "
        reason = f"too many pixels ({count}{max_pixels:,})"
        raise BadImage(name, reason, kind="too_many_pixels") from e
    except FileNotFoundError as e:
        raise BadImage(name, "no such file", kind="missing") from e
    except PermissionError as e:
        raise BadImage(name, "permission denied; make it readable to include it") from e
    except UnidentifiedImageError as e:
        raise BadImage(name, "not a readable image") from e
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise BadImage(name, "symlink loop") from e
        raise BadImage(name, f"cannot decode image ({e})") from e
    except Exception as e:  # PIL's decoders fail in many ways (struct.error, IndexError...)
        raise BadImage(name, f"cannot decode image ({type(e).__name__}: {e})") from e


def _check_size(image: Image.Image, name: str, max_pixels: int) -> None:
    width, height = image.size
    if width * height > max_pixels:
        raise BadImage(
            name,
            f"too many pixels ({width}x{height} = {width * height:,} > {max_pixels:,})",
            kind="too_many_pixels",
        )
    if width == 0 or height == 0:
        raise BadImage(name, f"empty image ({width}x{height})")


def describe(source: Any) -> str:
    if isinstance(source, dict):
        return str(source.get("path") or "<image bytes>")
    if isinstance(source, (str, os.PathLike)):
        return str(source)
    if isinstance(source, bytes):
        return "<image bytes>"
    return "<image>"
