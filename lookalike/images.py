"""Turning whatever holds an image (a path, bytes, a datasets Image value, a PIL image) into an
RGB image, or a BadImage that says why not."""

from __future__ import annotations

import errno
import io
import os
import re
import stat
from typing import IO, Any

from PIL import Image, ImageOps, UnidentifiedImageError

from lookalike.defaults import DEFAULT_MAX_PIXELS
from lookalike.errors import BadImage

try:  # HEIC/HEIF, what every iPhone writes (Pillow reads AVIF itself since 11.2)
    import pillow_heif

    pillow_heif.register_heif_opener()
    HEIF_PLUGIN = True
except ImportError:  # pragma: no cover - a core dependency; said per file if it is missing
    HEIF_PLUGIN = False

ImageSource = Image.Image | str | os.PathLike | bytes | dict

# Files a folder walk reads as images: Pillow's common formats, HEIC/HEIF, AVIF.
READ_EXTENSIONS = {".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".bmp", ".gif", ".webp", ".tif"}
READ_EXTENSIONS |= {".tiff", ".heic", ".heif", ".hif", ".avif", ".ppm", ".pgm", ".pbm", ".pnm"}
READ_EXTENSIONS |= {".tga", ".ico", ".psd", ".jp2", ".j2k", ".dib", ".pcx", ".qoi"}
# Camera RAW: the sensor's data, which needs demosaicing and colour work to become a picture.
RAW_EXTENSIONS = {".dng", ".cr2", ".cr3", ".crw", ".nef", ".nrw", ".arw", ".srf", ".sr2"}
RAW_EXTENSIONS |= {".orf", ".rw2", ".raf", ".pef", ".srw", ".x3f", ".3fr", ".erf", ".kdc"}
RAW_EXTENSIONS |= {".mrw", ".raw", ".rwl", ".iiq", ".mos", ".dcr"}
# Other image files a walk names and refuses, with the reason, rather than passing over.
REFUSED_EXTENSIONS = {
    ".svg": "a vector drawing (SVG): lookalike reads raster images; export it as PNG",
    ".jxl": "JPEG XL is not readable yet; convert it to JPEG, PNG or AVIF",
    ".eps": "a PostScript drawing (EPS): export it as PNG",
    ".exr": "an OpenEXR HDR image: export it as TIFF or PNG",
    ".hdr": "a Radiance HDR image: export it as TIFF or PNG",
}
RAW_REASON = (
    "camera RAW ({ext}): sensor data, not a picture, so it is not read; lookalike reads the "
    "JPEG or HEIC the camera saves beside it, or export one from your RAW editor"
)
# Every extension a folder walk takes: read, or refused and named among the skipped.
IMAGE_EXTENSIONS = READ_EXTENSIONS | RAW_EXTENSIONS | set(REFUSED_EXTENSIONS)


def refused_format(path: str | os.PathLike) -> str | None:
    """Why lookalike does not read a file of this extension, or None if it does."""
    ext = os.path.splitext(os.fspath(path))[1].lower()
    if ext in RAW_EXTENSIONS:
        return RAW_REASON.format(ext=ext)
    if ext in (".heic", ".heif", ".hif") and not HEIF_PLUGIN:
        return "HEIC/HEIF needs the pillow-heif package: pip install pillow-heif"
    return REFUSED_EXTENSIONS.get(ext)


def check_format(path: str | os.PathLike, name: str | None = None) -> None:
    """BadImage (kind "format") for a file whose extension lookalike does not read, before
    any of its bytes are read (a RAW file is tens of megabytes)."""
    reason = refused_format(path)
    if reason:
        raise BadImage(name or str(path), reason, kind="format")


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


def open_image(
    source: ImageSource, max_pixels: int = DEFAULT_MAX_PIXELS, min_side: int | None = None
) -> Image.Image:
    """Decode `source` into an RGB image, raising BadImage with the reason.

    With `min_side`, the image may come back smaller by a whole factor, both sides staying at
    least `min_side`: a JPEG is decoded at that scale (libjpeg's DCT scaling, several times
    faster than a full decode) and any other image is box-filtered down after decoding (see
    `reduce_to`). A model that resizes to 224 pixels has no use for 12 megapixels.
    """
    name = describe(source)
    try:
        if isinstance(source, Image.Image):
            _check_size(source, name, max_pixels)
            return reduce_to(to_rgb(source), min_side)
        if isinstance(source, dict):  # a datasets Image(decode=False) value
            data, path = source.get("bytes"), source.get("path")
            source = data if data is not None else path
            if source is None:
                raise BadImage(name, "the row has no image")
        if isinstance(source, bytes):
            if not source:
                raise BadImage(name, "empty file (0 bytes)")
            return _decode(io.BytesIO(source), name, max_pixels, min_side)
        check_format(source, name)
        with open_regular_file(source, name) as fp:
            return _decode(fp, name, max_pixels, min_side)
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


# Formats whose decoder can skip work for a smaller result (PIL's draft); AVIF and the rest
# decode in full and are box-filtered down (`reduce_to`).
DRAFT_FORMATS = ("JPEG", "HEIF")


def _decode(fp: IO[bytes], name: str, max_pixels: int, min_side: int | None) -> Image.Image:
    if max_pixels > (Image.MAX_IMAGE_PIXELS or 0):
        # PIL refuses above 2x its own limit before we can look: a raised limit must win.
        Image.MAX_IMAGE_PIXELS = max_pixels
    with Image.open(fp) as img:
        _check_size(img, name, max_pixels)  # header only: nothing decoded yet
        if min_side and img.format in DRAFT_FORMATS:
            # JPEG: the largest DCT scale (1/2, 1/4, 1/8) that keeps both sides >= min_side;
            # HEIF: the smallest embedded thumbnail that does (none: a full decode).
            img.draft("RGB", (min_side, min_side))
        img.load()
        return reduce_to(to_rgb(img), min_side)


def reduce_to(image: Image.Image, min_side: int | None) -> Image.Image:
    """Box-filter down by the largest whole factor that keeps both sides >= 2 * min_side (an
    image already that small, or min_side None, comes back as it is). Twice: a box filter
    aliases where a JPEG's DCT scaling does not, and the final resize smooths that out."""
    factor = min(image.size) // (2 * min_side) if min_side else 0
    return image.reduce(factor) if factor >= 2 else image


_NOT_REGULAR = {
    stat.S_ISFIFO: "a named pipe (FIFO)",
    stat.S_ISSOCK: "a socket",
    stat.S_ISCHR: "a character device",
    stat.S_ISBLK: "a block device",
    stat.S_ISDIR: "a folder",
}


def _refuse_special(mode: int, name: str) -> None:
    if not stat.S_ISREG(mode):
        what = next((what for test, what in _NOT_REGULAR.items() if test(mode)), "not a file")
        reason = f"{what}, not an image file: only regular files are read"
        raise BadImage(name, reason, kind="not_a_file")


def open_regular_file(path: str | os.PathLike, name: str) -> IO[bytes]:
    """Open a regular file for reading; anything else (a pipe, socket or device that would
    block or never end) is refused without being read."""
    _refuse_special(os.stat(path).st_mode, name)
    # Should the path have become a pipe since the stat, opening it must not wait for a
    # writer: O_NONBLOCK, then the fstat refuses it. (Windows has no FIFOs to fear.)
    nonblock = getattr(os, "O_NONBLOCK", 0)
    fd = os.open(path, os.O_RDONLY | nonblock | getattr(os, "O_BINARY", 0))
    try:
        st = os.fstat(fd)
        _refuse_special(st.st_mode, name)
        if st.st_size == 0:
            raise BadImage(name, "empty file (0 bytes)")
        if nonblock:
            os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


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
