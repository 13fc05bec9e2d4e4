"""Where one image's preparation goes: CPU-ms per image of each step ingest runs before the
model, one thread, for the JPEGs of a folder (photo_bench.py's --workdir holds two).

    python bench/photo_steps.py /tmp/bench13/photos-48 [--model ../shared/models/efficientnet-lite0]

Steps: reading and hashing the file (as ingest reads it), the JPEG decode at the scale the
model's processor allows (libjpeg's DCT scaling), EXIF orientation, RGB conversion, resize and
crop; and, for reference, a full-size decode.
"""

from __future__ import annotations

import argparse
import io
import time
from pathlib import Path

from PIL import Image, ImageOps
from transformers import AutoImageProcessor

from lookalike.embed.pixels import PixelChain, decode_side
from lookalike.source.fingerprint import read_file


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("folder")
    ap.add_argument("--model", default="../shared/models/efficientnet-lite0")
    args = ap.parse_args()
    processor = AutoImageProcessor.from_pretrained(args.model)
    chain, side = PixelChain.of(processor), decode_side(processor)
    files = sorted(Path(args.folder).glob("*.jpg"))
    spent: dict[str, float] = {}

    def step(name, fn):
        start = time.process_time()
        result = fn()
        spent[name] = spent.get(name, 0.0) + time.process_time() - start
        return result

    def draft(data: bytes) -> Image.Image:
        image = Image.open(io.BytesIO(data))
        image.draft("RGB", (side, side))
        image.load()
        return image

    def full(data: bytes) -> Image.Image:
        image = Image.open(io.BytesIO(data))
        image.load()
        return image

    for file in files:
        data, _, _ = step("read and sha256", lambda f=file: read_file(f))
        image = step(f"decode at >= {side} px", lambda d=data: draft(d))
        image = step("EXIF orientation", lambda im=image: ImageOps.exif_transpose(im))
        image = step("RGB conversion", lambda im=image: im.convert("RGB"))
        step("resize and crop", lambda im=image: chain.geometry(im))
        step("(full-size decode, for reference)", lambda d=data: full(d))
    print(f"{len(files)} images from {args.folder}, decoded at {image.size[0]}x{image.size[1]}")
    for name, seconds in spent.items():
        print(f"{name:36s} {1000 * seconds / len(files):7.1f} CPU-ms per image")


if __name__ == "__main__":
    main()
