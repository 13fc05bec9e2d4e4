"""A picture of search results: each query beside its neighbours, captioned with label and
score, like the tutorial's figure; and of near-duplicate pairs, each image named."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import click
from PIL import Image, ImageDraw, ImageFont

from lookalike.cli.console import warn
from lookalike.errors import shown
from lookalike.records import Hit, Result, StoredPoint, shown_split
from lookalike.thumbnails import Thumbnails

TILE = 192
LINE = 18
CAPTION = 3 * LINE + 4
GAP = 8


@dataclass(frozen=True)
class Tile:
    """One picture of a grid and the caption lines under it (`query`: framed, bold caption)."""

    image: Image.Image | None
    lines: Sequence[str]
    query: bool = False


def result_row(result: Result, images: Sequence[Image.Image | None]) -> list[Tile]:
    """A query (with its label, when known) and its hits, in rank order."""
    q = result.query
    title = f"query: {q.label_name}" if q.label_name is not None else "query"
    if q.kind == "text":
        row = [Tile(words_tile(q.text), ["text query"], query=True)]
    else:
        row = [Tile(q.image, [title, os.path.basename(q.text)], query=True)]
    for hit, image in zip(result.hits, images):
        label = hit.label_name if hit.label_name is not None else "-"
        name = os.path.basename(hit.path) if hit.path else ""
        row.append(Tile(image, [f"#{hit.rank} {label}", f"score {hit.score:.3f}", name]))
    return row


def thumbnails_of(source, thumbnails: Thumbnails) -> Callable[[StoredPoint], Image.Image | None]:
    """Each stored image as a grid draws it: its cached thumbnail, made from the original the
    first time. `source`: a Searcher or its Gallery; a server searched through (RemoteSearcher)
    makes and keeps its own."""
    remote = getattr(source, "candidate_thumbnail", None)
    if remote is not None:
        return remote

    def image(point: StoredPoint) -> Image.Image | None:
        gallery = getattr(source, "gallery", source)  # a Searcher's, as it is now
        return thumbnails.image(point.sha256, lambda side: gallery.image(point, side))

    return image


def hit_images(
    hits: Sequence[Hit], image_of: Callable[[StoredPoint], Image.Image | None]
) -> list[Image.Image | None]:
    """The hits' pictures for a grid; a hit whose original is gone or changed is said, on
    stderr, rather than left a blank tile without a word."""
    images = []
    for hit in hits:
        image = image_of(hit)
        if image is None:
            missing(hit)
        images.append(thumbnail(image))
    return images


def pair_images(pair, image_of) -> tuple[Image.Image | None, Image.Image | None]:
    """Both images of a near-duplicate pair, each missing one said."""
    return tuple(hit_images([pair.a, pair.b], image_of))


def missing(point: StoredPoint) -> None:
    warn(
        f"--grid: no image for {shown(point.where())}: the file is gone or has changed since "
        "it was stored (a sync brings the collection up to date); its tile is left blank"
    )


def pair_row(pair, image_a: Image.Image | None, image_b: Image.Image | None) -> list[Tile]:
    """A near-duplicate pair: both images, each named by split:row (an image folder's files
    have no row), label and file."""

    def lines(point) -> list[str]:
        label = point.label_name if point.label_name is not None else "-"
        name = os.path.basename(point.path) if point.path else ""
        where = f"{point.split}:{point.row}" if point.row is not None else shown_split(point)
        return [f"{where} {label}".strip(), name]

    a, b = lines(pair.a), lines(pair.b)
    return [Tile(image_a, a, query=True), Tile(image_b, [b[0], f"score {pair.score:.3f}", b[1]])]


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


def words_tile(text: str) -> Image.Image:
    """A text query's place in the grid: its words, wrapped, on a tile."""
    tile = Image.new("RGB", (TILE, TILE), (238, 242, 255))
    draw, font = ImageDraw.Draw(tile), _font(17)
    lines, line = [], ""
    for word in text.split():
        candidate = f"{line} {word}".strip()
        if line and draw.textlength(candidate, font=font) > TILE - 20:
            lines.append(line)
            candidate = word
        line = candidate
    lines.append(line)
    lines = lines[:8] if len(lines) <= 8 else [*lines[:7], "…"]
    top = max(10, (TILE - 22 * len(lines)) // 2)
    for i, line in enumerate(lines):
        while line and draw.textlength(line, font=font) > TILE - 20:  # one very long word
            line = line[:-2] + "…"
        draw.text((10, top + 22 * i), line, fill=(30, 58, 138), font=font)
    return tile


def _tile(image: Image.Image | None) -> Image.Image:
    tile = Image.new("RGB", (TILE, TILE), (235, 235, 235))
    if image is not None:
        thumb = image.convert("RGB")
        thumb.thumbnail((TILE, TILE))
        tile.paste(thumb, ((TILE - thumb.width) // 2, (TILE - thumb.height) // 2))
    return tile


def _caption(draw: ImageDraw.ImageDraw, x: int, y: int, lines: Sequence[str], bold: bool) -> None:
    font = _font(15)
    for i, line in enumerate(lines[: CAPTION // LINE]):
        # Cut long names so captions never run into the next tile.
        while line and draw.textlength(line, font=font) > TILE:
            line = line[:-2] + "…"
        draw.text((x, y + i * LINE), line, fill=(0, 0, 0) if bold else (60, 60, 60), font=font)


def render_grid(rows: Sequence[Sequence[Tile]]) -> Image.Image:
    """One row of tiles per query (or pair), captioned."""
    columns = max((len(r) for r in rows), default=1)
    width = GAP + columns * (TILE + GAP)
    height = GAP + len(rows) * (TILE + CAPTION + GAP)
    canvas = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(canvas)
    for r, row in enumerate(rows):
        y = GAP + r * (TILE + CAPTION + GAP)
        for c, tile in enumerate(row):
            x = GAP + c * (TILE + GAP)
            canvas.paste(_tile(tile.image), (x, y))
            if tile.query:
                draw.rectangle(
                    (x - 3, y - 3, x + TILE + 2, y + TILE + 2), outline=(30, 90, 200), width=3
                )
            _caption(draw, x, y + TILE + 3, tile.lines, bold=tile.query)
    return canvas


def save_grid(picture: Image.Image, path: str) -> None:
    """Write the picture in the format its name says (PNG for a name without extension)."""
    try:
        picture.save(path, format=None if os.path.splitext(path)[1] else "PNG")
    except (OSError, ValueError) as e:
        raise click.FileError(path, hint=getattr(e, "strerror", None) or str(e)) from e
