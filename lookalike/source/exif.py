"""What the camera already wrote into each photo, as payload fields.

    taken         when it was taken: EXIF DateTimeOriginal, the camera's own clock, in RFC 3339
                  ("2024-06-01T14:03:22Z"), so Qdrant's datetime ranges and index work on it
    taken_offset  the camera's offset from UTC when it wrote one ("+02:00")
    camera_make, camera_model, lens
    orientation   the EXIF orientation (1-8); the picture is always embedded upright
    width, height the picture's size as it is shown (upright)
    location      where: {"lon": .., "lat": ..}, a Qdrant geo point (for --near/--within)

`taken` keeps the camera's wall-clock time, as a photo library shows it: `taken>=2024-06-01`
means the date on the camera's clock, wherever it was. Only the file's header is read (no
pixels); a file without EXIF, or with a field it cannot make sense of, just lacks that field.
A user's metadata.jsonl wins over EXIF for the same field. An image with no EXIF block at all
gets none of these fields.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from PIL import Image, UnidentifiedImageError

from lookalike.images import refused_format

FIELDS = ("taken", "taken_offset", "camera_make", "camera_model", "lens", "orientation")
FIELDS += ("width", "height", "location")

# EXIF tags (IFD0, the Exif IFD, the GPS IFD).
MAKE, MODEL, ORIENTATION, DATETIME = 0x010F, 0x0110, 0x0112, 0x0132
EXIF_IFD, GPS_IFD = 0x8769, 0x8825
DATETIME_ORIGINAL, OFFSET_ORIGINAL, LENS_MAKE, LENS_MODEL = 0x9003, 0x9011, 0xA433, 0xA434
GPS_LAT_REF, GPS_LAT, GPS_LON_REF, GPS_LON = 1, 2, 3, 4

EXIF_TIME = re.compile(r"^(\d{4}):(\d{2}):(\d{2})[ T](\d{2}):(\d{2}):(\d{2})")
OFFSET = re.compile(r"^[+-]\d{2}:\d{2}$")
# Fields read, by (path, size, mtime): a watch re-reads only files that changed.
_CACHE: dict[tuple[str, int, int], dict[str, Any]] = {}
CACHE_LIMIT = 200_000


def with_exif(
    root: Path, files: Iterable[str], fields: dict[str, dict[str, Any]]
) -> dict[str, dict[str, Any]]:
    """`fields` (by path relative to `root`) with each file's EXIF fields under its own."""
    merged = dict(fields)
    for name in files:
        found = read_cached(os.path.join(root, name))
        if found:
            own = fields.get(name, {})
            merged[name] = {**own, **{k: v for k, v in found.items() if k not in own}}
    return merged


def read_cached(path: str) -> dict[str, Any]:
    try:
        st = os.stat(path)
    except OSError:
        return {}  # gone or unreadable: decoding will say why
    if not stat.S_ISREG(st.st_mode):
        return {}  # a pipe or device would block or never end: decoding refuses it
    key = (path, st.st_size, st.st_mtime_ns)
    if key not in _CACHE:
        if len(_CACHE) >= CACHE_LIMIT:
            _CACHE.clear()
        _CACHE[key] = read_exif(path)
    return _CACHE[key]


def read_exif(path: str | os.PathLike) -> dict[str, Any]:
    """The EXIF fields of one image file ({} for none, or a file that is not read)."""
    if refused_format(path):
        return {}
    try:
        with Image.open(path) as image:  # the header only: no pixels are decoded
            if image.format == "PNG" and "exif" not in image.info:
                # Pillow's PNG getexif() decodes the whole image to look past the pixels for
                # an eXIf chunk: planning a sync must not decode every PNG.
                return {}
            exif = image.getexif()
            # No EXIF (a screenshot, a scan, a web image): no fields, not even its size.
            return fields_of(exif, image.size) if exif else {}
    except (OSError, UnidentifiedImageError, Image.DecompressionBombError):
        return {}  # not readable: decoding will say why
    except Exception:  # a malformed EXIF block fails in many ways: the picture still counts
        return {}


def fields_of(exif: Image.Exif, size: tuple[int, int]) -> dict[str, Any]:
    """Payload fields from a parsed EXIF block and the image's stored size."""
    found: dict[str, Any] = {}
    sub = _ifd(exif, EXIF_IFD)
    taken = _datetime(sub.get(DATETIME_ORIGINAL) or exif.get(DATETIME))
    if taken:
        found["taken"] = taken
        offset = _text(sub.get(OFFSET_ORIGINAL))
        if offset and OFFSET.match(offset):
            found["taken_offset"] = offset
    for field, value in (
        ("camera_make", exif.get(MAKE)),
        ("camera_model", exif.get(MODEL)),
        ("lens", sub.get(LENS_MODEL)),
    ):
        text = _text(value)
        if text:
            found[field] = text
    orientation = exif.get(ORIENTATION)
    if isinstance(orientation, int) and 1 <= orientation <= 8:
        found["orientation"] = orientation
    width, height = size
    if found.get("orientation", 1) >= 5:  # turned a quarter: shown the other way round
        width, height = height, width
    if width and height:
        found["width"], found["height"] = int(width), int(height)
    location = _location(_ifd(exif, GPS_IFD))
    if location:
        found["location"] = location
    return found


def _ifd(exif: Image.Exif, tag: int) -> dict:
    try:
        return dict(exif.get_ifd(tag))
    except Exception:  # a broken offset: that part is missing, the rest still counts
        return {}


def _text(value: Any) -> str | None:
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if not isinstance(value, str):
        return None
    value = value.replace("\x00", "").strip()
    return value or None


def _datetime(value: Any) -> str | None:
    """EXIF's "2024:06:01 14:03:22" as RFC 3339; None for blanks ("0000:00:00 00:00:00")."""
    text = _text(value)
    match = EXIF_TIME.match(text or "")
    if not match:
        return None
    year, month, day, hour, minute, second = (int(g) for g in match.groups())
    if not (1 <= month <= 12 and 1 <= day <= 31 and hour < 24 and minute < 60 and second < 61):
        return None
    if year < 1800:
        return None
    return f"{year:04d}-{month:02d}-{day:02d}T{hour:02d}:{minute:02d}:{min(second, 59):02d}Z"


def _degrees(value: Any) -> float | None:
    try:
        d, m, s = (float(v) for v in value)
    except (TypeError, ValueError, ZeroDivisionError):
        return None
    return d + m / 60 + s / 3600


def _location(gps: dict) -> dict[str, float] | None:
    lat, lon = _degrees(gps.get(GPS_LAT)), _degrees(gps.get(GPS_LON))
    if lat is None or lon is None:
        return None
    if (_text(gps.get(GPS_LAT_REF)) or "N").upper().startswith("S"):
        lat = -lat
    if (_text(gps.get(GPS_LON_REF)) or "E").upper().startswith("W"):
        lon = -lon
    if not (-90 <= lat <= 90 and -180 <= lon <= 180) or (lat == 0 and lon == 0):
        return None  # out of range, or 0,0: a receiver with no fix
    return {"lon": round(lon, 6), "lat": round(lat, 6)}
