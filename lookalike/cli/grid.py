"""A picture of search results: each query beside its neighbours, captioned with label and
score, like the tutorial's figure."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

import click
from PIL import Image, ImageDraw, ImageFont

from lookalike.records import Hit

TILE = 192
CAPTION = 40
GAP = 8


@dataclass(frozen=True)
class GridRow:
    """One query and its hits, with the images to show for them (None: not available)."""

    query: str
    query_image: Image.Image
    hits: Sequence[Hit]
    hit_images: Sequence[Image.Image | None]


def _font(size: int) -> ImageFont.ImageFont:
    return ImageFont.load_default(size=size)


def thumbnail(image: Image.Image | None) -> Image.Image | None:
    """A copy no larger than a tile: what a grid keeps of each image while it is drawn."""
    if image is None:
        return None
    rgb = image if image.mode == "RGB" else image.convert("RGB")
    scale = min(TILE / rgb.width, TILE / rgb.height, 1.0)
    size = (max(1, round(rgb.width * scale)), max(1, round(rgb.height * scale)))
    return rgb.resize(size, Image.BICUBIC, reducing_gap=2.0)


def _tile(image: Image.Image | None) -> Image.Image:
    tile = Image.new("RGB", (TILE, TILE), (235, 235, 235))
    if image is not None:
        thumb = image.convert("RGB")
        thumb.thumbnail((TILE, TILE))
        tile.paste(thumb, ((TILE - thumb.width) // 2, (TILE - thumb.height) // 2))
    return tile


def _caption(draw: ImageDraw.ImageDraw, x: int, y: int, lines: list[str], bold: bool) -> None:
    font = _font(15)
    for i, line in enumerate(lines):
        # Cut long names so captions never run into the next tile.
        while line and draw.textlength(line, font=font) > TILE:
            line = line[:-2] + "…"
        draw.text((x, y + i * 18), line, fill=(0, 0, 0) if bold else (60, 60, 60), font=font)


def render_grid(rows: Sequence[GridRow]) -> Image.Image:
    """One row per query: the query, then its hits in rank order."""
    columns = 1 + max((len(r.hits) for r in rows), default=0)
    width = GAP + columns * (TILE + GAP)
    height = GAP + len(rows) * (TILE + CAPTION + GAP)
    canvas = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(canvas)
    for r, row in enumerate(rows):
        y = GAP + r * (TILE + CAPTION + GAP)
        canvas.paste(_tile(row.query_image), (GAP, y))
        draw.rectangle(
            (GAP - 3, y - 3, GAP + TILE + 2, y + TILE + 2), outline=(30, 90, 200), width=3
        )
        _caption(draw, GAP, y + TILE + 3, ["query", row.query], bold=True)
        for c, (hit, image) in enumerate(zip(row.hits, row.hit_images), start=1):
            x = GAP + c * (TILE + GAP)
            canvas.paste(_tile(image), (x, y))
            label = hit.label_name if hit.label_name is not None else "-"
            _caption(
                draw, x, y + TILE + 3, [f"#{hit.rank} {label}", f"score {hit.score:.3f}"], False
            )
    return canvas


def save_grid(picture: Image.Image, path: str) -> None:
    """Write the picture in the format its name says (PNG for a name without extension)."""
    try:
        picture.save(path, format=None if os.path.splitext(path)[1] else "PNG")
    except (OSError, ValueError) as e:
        raise click.FileError(path, hint=getattr(e, "strerror", None) or str(e)) from e
