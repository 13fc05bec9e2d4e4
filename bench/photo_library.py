"""What reading EXIF costs a sync, and what calibrating the near-duplicate threshold costs an
ingest, on camera-sized photos made from Beans leaves.

    python bench/photo_library.py [--photos 48] [--model ../shared/models/efficientnet-lite0]

Prints: the EXIF read per 12-MP JPEG (header only, warm page cache), the same for HEIC, and
the calibration's seconds with the threshold it found.
"""

from __future__ import annotations

import argparse
import io
import sys
import tempfile
import time
from pathlib import Path

import pyarrow.parquet as pq
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from conftest import make_photo  # noqa: E402
from test_library import _exif  # noqa: E402

from lookalike.source import exif as exif_module  # noqa: E402 (registers the HEIF plugin)

SHARED = Path(__file__).resolve().parents[2] / "shared"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--photos", type=int, default=48)
    ap.add_argument("--model", default=str(SHARED / "models" / "efficientnet-lite0"))
    a = ap.parse_args()
    table = pq.read_table(SHARED / "data" / "beans" / "data" / "train-00000-of-00001.parquet")
    rows = table.slice(0, 4 * a.photos).to_pylist()[::4][: a.photos]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "photos"
        root.mkdir()
        for i, row in enumerate(rows):
            photo = make_photo(Image.open(io.BytesIO(row["image"]["bytes"])), seed=i)
            photo.save(root / f"IMG_{i:04d}.jpg", quality=90, exif=_exif(i))
            if i < 1:  # one: encoding a 12-MP HEIC takes x265 a while
                photo.save(root / f"IMG_{i:04d}.heic", quality=80, exif=_exif(i))
        for ext in ("jpg", "heic"):
            files = sorted(root.glob(f"*.{ext}"))
            started = time.perf_counter()
            for f in files:
                assert exif_module.read_exif(f).get("taken")
            ms = (time.perf_counter() - started) / len(files) * 1000
            print(f"EXIF read, 4032x3024 .{ext}: {ms:.2f} ms per file ({len(files)} files)")
        calibrate(root, a.model, Path(tmp) / "store")


def calibrate(root: Path, model: str, store_path: Path) -> None:
    from lookalike.embed.embedder import Embedder
    from lookalike.ingest import ingest
    from lookalike.ingest.calibrate import calibrate as measure
    from lookalike.source import load_source
    from lookalike.store import StoreConfig, connect

    embedder = Embedder(model, device="cpu", precision="fp32")
    source = load_source(str(root))
    with connect(StoreConfig(path=str(store_path))) as store:
        started = time.perf_counter()
        ingest(source, embedder, store, "photos")
        total = time.perf_counter() - started
        started = time.perf_counter()
        found = measure(source, embedder, store, "photos")
        seconds = time.perf_counter() - started
    print(f"ingest of {len(source)} photos (calibration included): {total:.1f} s")
    print(f"calibration alone: {seconds:.1f} s; {found}")


if __name__ == "__main__":
    main()
