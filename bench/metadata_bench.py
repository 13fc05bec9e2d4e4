"""A large metadata.jsonl: time and peak memory of `ingest --dry-run` and of a metadata-only
sync (every row's fields changed, no image changed).

    .venv/bin/python bench/metadata_bench.py                       # 50k images and rows
    .venv/bin/python bench/metadata_bench.py --images 10000 --keep /tmp/meta-bench

Makes (once, in --keep or a temporary folder) a folder of N tiny JPEGs in 10 class
sub-folders, a metadata.jsonl of --rows rows (default: one per image; more rows than images
name files that do not exist) with 10 fields, ~1.7 KB a row (a long description, tags, an
object, numbers, a flag), and a one-layer random ViT whose vectors have efficientnet's size
(1280: what reading stored vectors costs depends on it). Each command runs in a fresh child process
that reports its own peak memory (VmHWM). Steps: `ingest` (the first sync, embedding every
image), `dry-run` (the metadata file rewritten with every row's `rating` changed, then
`ingest --dry-run`), `resync` (that change synced: no image is embedded). Prints one JSON
line per step: seconds and peak MB. EXIF reading is off (--no-exif; --exif turns it on):
the images are tiny and carry none, and reading 50k headers is a cost of its own.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time

# The command run with its peak RSS written out: the tests' own launcher (tests/peak.py).
sys.path.insert(
    0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests")
)
from peak import LAUNCH  # noqa: E402

WORDS = ["leaf", "bean", "rust", "spot", "green", "field", "sun", "rain", "soil", "root"]


def make_images(folder: str, n: int) -> list[str]:
    from PIL import Image

    names = []
    for i in range(n):
        name = f"class_{i % 10}/img_{i:06d}.jpg"
        path = os.path.join(folder, name)
        if not os.path.exists(path):
            os.makedirs(os.path.dirname(path), exist_ok=True)
            colour = (i % 256, (i // 256) % 256, (i // 65536) % 256)
            Image.new("RGB", (8, 8), colour).save(path, quality=90)
        names.append(name)
    return names


def write_metadata(folder: str, rows: int, images: int, rating_offset: int) -> None:
    rng = random.Random(0)
    with open(os.path.join(folder, "metadata.jsonl"), "w") as f:
        for i in range(rows):
            name = f"class_{i % 10}/img_{i:06d}.jpg"  # past `images`: names no file
            row = {
                "file_name": name,
                "title": f"photo {i} of a {rng.choice(WORDS)} {rng.choice(WORDS)}",
                "description": " ".join(rng.choice(WORDS) for _ in range(280)),
                "tags": [rng.choice(WORDS) for _ in range(5)],
                "price": round(rng.uniform(1, 500), 2),
                "year": 1990 + i % 35,
                "camera": f"model-{i % 17}",
                "rating": (i + rating_offset) % 5,
                "in_stock": i % 3 == 0,
                "location": {"lat": rng.uniform(-90, 90), "lon": rng.uniform(-180, 180)},
                "sku": f"SKU-{i:08d}",
            }
            f.write(json.dumps(row) + "\n")


def tiny_model(folder: str, dim: int) -> str:
    import torch
    import transformers as tf

    if not os.path.exists(os.path.join(folder, "config.json")):
        torch.manual_seed(0)
        config = tf.ViTConfig(
            image_size=32,
            patch_size=16,
            hidden_size=dim,
            num_hidden_layers=1,
            num_attention_heads=2,
            intermediate_size=64,
        )
        tf.ViTModel(config).save_pretrained(folder)
        tf.ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(folder)
    return folder


def lookalike(*args: str) -> tuple[float, float, str]:
    """Seconds, peak MB and stderr of `lookalike ARGS` in a fresh process."""
    with tempfile.NamedTemporaryFile("r", suffix=".kb") as peak:
        start = time.perf_counter()
        child = subprocess.run(
            [sys.executable, "-c", LAUNCH, peak.name, *args], capture_output=True, text=True
        )
        seconds = time.perf_counter() - start
        if child.returncode:
            sys.exit(child.stderr[-3000:])
        return seconds, int(peak.read()) / 1024, child.stderr


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=50_000)
    parser.add_argument("--rows", type=int, default=None, help="default: one per image")
    parser.add_argument("--keep", help="make the folder, model and store here once, reuse them")
    parser.add_argument("--steps", default="ingest,dry-run,resync")
    parser.add_argument("--dim", type=int, default=1280, help="the model's vector size")
    parser.add_argument("--exif", action="store_true", help="read each image's EXIF too")
    args = parser.parse_args()
    rows = args.rows or args.images
    with tempfile.TemporaryDirectory() as scratch:
        work = args.keep or scratch
        photos, store = os.path.join(work, "photos"), os.path.join(work, f"store-{args.dim}")
        model = tiny_model(os.path.join(work, f"model-{args.dim}"), args.dim)
        make_images(photos, args.images)
        common = ["--dataset", photos, "--model", model, "--qdrant-path", store]
        common.append("--exif" if args.exif else "--no-exif")
        counter = store + "-rating-offset"  # what the store holds
        offset = 0
        if os.path.exists(counter):
            with open(counter) as f:
                offset = int(f.read())
        for step in args.steps.split(","):
            if step == "ingest":
                offset = 0
            elif step == "dry-run":  # every row changed from what is stored
                offset += 1
            write_metadata(photos, rows, args.images, offset)
            if step != "dry-run":
                with open(counter, "w") as f:
                    f.write(str(offset))
            size = os.path.getsize(os.path.join(photos, "metadata.jsonl")) / 2**20
            command = ["ingest", *common, *(["--dry-run"] if step == "dry-run" else [])]
            seconds, peak, err = lookalike(*command)
            said = [line for line in err.splitlines() if line.strip()][-1:]
            print(
                json.dumps(
                    {
                        "step": step,
                        "images": args.images,
                        "rows": rows,
                        "metadata_mb": round(size),
                        "seconds": round(seconds, 1),
                        "peak_mb": round(peak),
                        "said": said[0][:160] if said else "",
                    }
                ),
                flush=True,
            )


if __name__ == "__main__":
    main()
