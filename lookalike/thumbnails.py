"""Small copies of stored images, made once and kept on disk beside the store.

A page of results shows each image at ~200 pixels: sending a 12-MP original (~2 MB) for each
is most of a page's weight and time. A thumbnail is keyed by its image's content (the point's
sha256), so an edited file gets a new one and two collections of the same photos share them;
it is written to a temporary name and renamed, so a reader never sees half a file.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import re
import tempfile
from collections.abc import Callable

from PIL import Image

SIDE = 320  # pixels, the longer side: sharp on a ~200-pixel card, ~20 KB for a photo
QUALITY = 80
MEDIA_TYPE = "image/jpeg"
FOLDER = ".thumbnails"  # under an embedded store's folder: hidden, never a collection's name
SHA256 = re.compile(r"[0-9a-f]{64}")

log = logging.getLogger(__name__)

# The original image decoded no smaller than `min_side` pixels a side (a JPEG decodes at a
# DCT scale, several times faster), or None when it is gone or has changed.
Original = Callable[[int], Image.Image | None]


def cache_folder(store_path: str, url: str | None = None) -> str:
    """Where a store's thumbnails are kept: beside an embedded store's collections; a server's
    store has no folder here, so in the user's cache folder."""
    if not url:
        return os.path.join(store_path, FOLDER)
    return os.path.join(os.path.expanduser("~"), ".cache", "lookalike", "thumbnails")


class Thumbnails:
    """Thumbnails of `side` pixels (the longer side) kept in `folder` (None: made each time)."""

    def __init__(self, folder: str | None, side: int = SIDE, quality: int = QUALITY) -> None:
        self.folder, self.side, self.quality = folder, side, quality

    def file(self, sha256: str | None) -> str | None:
        """The cache file of an image with this content, or None when it cannot have one."""
        if not self.folder or not sha256 or not SHA256.fullmatch(sha256):
            return None
        return os.path.join(self.folder, sha256[:2], f"{sha256}-{self.side}.jpg")

    def jpeg(self, sha256: str | None, original: Original) -> bytes | None:
        """The thumbnail's JPEG bytes: from the cache, else made from `original` and kept."""
        file = self.file(sha256)
        if file is not None:
            try:
                with open(file, "rb") as fp:
                    return fp.read()
            except OSError:
                pass  # not made yet (or unreadable: made again)
        image = original(self.side)
        if image is None:
            return None
        data = self.encode(image)
        if file is not None:
            self._keep(file, data)
        return data

    def image(self, sha256: str | None, original: Original) -> Image.Image | None:
        """The thumbnail as an image (what a --grid draws)."""
        data = self.jpeg(sha256, original)
        if data is None:
            return None
        with Image.open(io.BytesIO(data)) as img:
            img.load()
            return img.convert("RGB")

    def encode(self, image: Image.Image) -> bytes:
        small = image if image.mode == "RGB" else image.convert("RGB")
        if max(small.size) > self.side:
            small = small.copy()
            small.thumbnail((self.side, self.side), Image.LANCZOS, reducing_gap=2.0)
        buf = io.BytesIO()
        small.save(buf, "JPEG", quality=self.quality, optimize=True, progressive=True)
        return buf.getvalue()

    def _keep(self, file: str, data: bytes) -> None:
        """Write atomically; a cache that cannot be written costs speed, never the image."""
        folder = os.path.dirname(file)
        try:
            os.makedirs(folder, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=".jpg")
            try:
                with os.fdopen(fd, "wb") as fp:
                    fp.write(data)
                os.replace(tmp, file)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
                raise
        except OSError as e:
            log.debug("thumbnail not kept at %s: %s", file, e)
