"""Camera photos vs small images: `lookalike ingest` as a user runs it, one process per run.

    python bench/photo_bench.py --dataset ../shared/data/beans \
        --model ../shared/models/efficientnet-lite0 [--photos 48] [--marginal]

Makes (once, in --workdir) 4032x3024 JPEGs from real Beans images (upscaled, with sensor-like
noise so they are ~1.7 MB each, like a phone's) and a folder of the small Beans images as they
are (256x256 JPEGs), then ingests each folder into a fresh store with `lookalike ingest` and
reports images/s (the ingest's own figure: from the model ready to the last vector stored;
imports, the model's load and the plan, paid once per run, excluded), peak RSS, and CPU
utilisation while embedding (cores busy: 2.0 is both cores of a 2-core machine) and what it
makes per image (CPU-ms per image: what other processes on a shared machine move least).

--marginal also runs `lookalike ingest` and the tutorial's pipeline (bench/ingest_bench.py's,
as a whole process) on 256 and --marginal-rows Beans images (1034: the train split): (rows -
256) / (difference in wall time) is each one's images/s with start-up excluded, the per-image
costs a process really pays. Start-ups swing by seconds on a busy machine; more rows (up to
8x the split, each train image also mirrored, flipped or turned, so every row is a new image)
make the difference large enough to outweigh that.
--python runs lookalike with another interpreter (another checkout's venv: before/after).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

TUTORIAL = """
import sys, time
sys.path.insert(0, {bench!r})
import datasets
from ingest_bench import tutorial_embeddings
from lookalike.embed.embedder import Embedder
emb = Embedder({model!r}, device="cpu", precision="fp32", fold=False)
model = emb.model.__class__.from_pretrained({model!r}).eval()
data = datasets.load_dataset({dataset!r})["train"].select(range({n}))
tutorial_embeddings(data, emb, model, "cpu")
"""


def make_photo(image, size=(4032, 3024), seed=0):
    """As tests/conftest.py's: upscaled, plus a tiled +-4 noise so it compresses like a photo."""
    import numpy as np
    from PIL import Image, ImageChops

    big = image.convert("RGB").resize(size, Image.BICUBIC)
    rng = np.random.default_rng(seed)
    tile = Image.fromarray(rng.integers(124, 133, (512, 512, 3), dtype=np.uint8))
    noise = Image.new("RGB", size)
    for x in range(0, size[0], 512):
        for y in range(0, size[1], 512):
            noise.paste(tile, (x, y))
    return ImageChops.add(big, noise, offset=-128)


def make_folders(dataset: str, workdir: Path, photos: int, small: int) -> dict[str, Path]:
    import datasets

    folders = {"photos": workdir / f"photos-{photos}", "small": workdir / f"small-{small}"}
    train = datasets.load_dataset(dataset, split="train")
    train = train.cast_column("image", datasets.Image(decode=False))
    if not folders["small"].exists():
        folders["small"].mkdir(parents=True)
        for i in range(small):  # the dataset's own JPEG bytes, as files
            (folders["small"] / f"{i:04d}.jpg").write_bytes(train[i]["image"]["bytes"])
    if not folders["photos"].exists():
        folders["photos"].mkdir(parents=True)
        for i in range(photos):
            image = datasets.Image().decode_example(train[i]["image"])
            make_photo(image, seed=i).save(folders["photos"] / f"{i:04d}.jpg", quality=90)
    return folders


def more_beans(dataset: str, workdir: Path, rows: int) -> str:
    """`dataset`, or, for more rows than its train split has, a copy of that split repeated
    with each repeat's images mirrored, flipped or turned (new images, not duplicates), as a
    Parquet dataset both lookalike and the tutorial load."""
    import datasets
    from PIL import Image

    train = datasets.load_dataset(dataset, split="train")
    if rows <= len(train):
        return dataset
    folder = workdir / f"beans-{rows}"
    parquet = folder / "data" / "train-00000-of-00001.parquet"
    if parquet.exists():
        return str(folder)
    turns = [None, *Image.Transpose]
    if rows > len(train) * len(turns):
        raise SystemExit(f"--marginal-rows: at most {len(train) * len(turns)}")
    images, labels = [], []
    for i in range(rows):
        row, turn = train[i % len(train)], turns[i // len(train)]
        image = row["image"].convert("RGB")
        image = image if turn is None else image.transpose(turn)
        buf = io.BytesIO()
        image.save(buf, "JPEG", quality=90)  # as the split's own images are stored
        images.append({"bytes": buf.getvalue(), "path": None})
        labels.append(row["labels"])
    features = datasets.Features({"image": datasets.Image(), "labels": train.features["labels"]})
    table = datasets.Dataset.from_dict({"image": images, "labels": labels}, features)
    parquet.parent.mkdir(parents=True)
    table.to_parquet(str(parquet))
    return str(folder)


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run(cmd: list[str], marks: tuple[bytes, ...] = ()) -> dict:
    """Run a command to the end: wall seconds, peak RSS, CPU seconds sampled over time, and
    when each of `marks` first showed on its stderr (the progress bar's phases).
    It runs in the temporary folder, so `python -m` finds the interpreter's own lookalike."""
    start = time.perf_counter()
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=tempfile.gettempdir()
    )
    samples: list[tuple[float, float]] = []
    seen: dict[bytes, float] = {}
    stderr = bytearray()

    def sample() -> None:
        while proc.poll() is None:
            try:
                samples.append((time.perf_counter(), cpu_seconds(proc.pid)))
            except (OSError, IndexError):
                return
            time.sleep(0.1)

    def read_stderr() -> None:
        while chunk := os.read(proc.stderr.fileno(), 1 << 16):
            stderr.extend(chunk)
            for mark in marks:
                if mark not in seen and mark in stderr:
                    seen[mark] = time.perf_counter()

    threading.Thread(target=sample, daemon=True).start()
    reader = threading.Thread(target=read_stderr, daemon=True)
    reader.start()
    stdout = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    reader.join(timeout=2)
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{stderr.decode()[-3000:]}")
    return {
        "wall": wall,
        "rss_mb": usage.ru_maxrss / 1024,
        "samples": samples,
        "stdout": stdout,
        "marks": seen,
    }


def cores_busy(samples: list[tuple[float, float]], t0: float, t1: float) -> float | None:
    """CPU seconds per second between t0 and t1 (samples nearest to them)."""
    if len(samples) < 3:
        return None
    (a, cpu_a), (b, cpu_b) = (min(samples, key=lambda s: abs(s[0] - t)) for t in (t0, t1))
    return round((cpu_b - cpu_a) / (b - a), 2) if b > a else None


# The ingest bar is the first with the unit img/s (its label names the split, or nothing).
EMBEDDING, INDEXING = b"img/s", b"building the search index"


def ingest(python: str, args, dataset: str, store: str, *extra) -> dict:
    cmd = [python, "-m", "lookalike.cli", "ingest", "--dataset", dataset, "--model", args.model]
    out = run([*cmd, "--qdrant-path", store, "--recreate", "--json", *extra], (EMBEDDING, INDEXING))
    report = json.loads(out["stdout"])
    # The embedding phase only: imports, the model's load and the plan are paid once per run,
    # and would weigh 5x more on 48 photos than on 256 small images.
    seconds = report["embedded"] / report["images_per_s"]  # from the model ready to stored
    busy = cores_busy(out["samples"], out["marks"][EMBEDDING], out["marks"][INDEXING])
    return {
        "images": report["embedded"],
        "images_per_s": round(report["embedded"] / seconds, 1),
        "peak_rss_gb": round(out["rss_mb"] / 1024, 2),
        "cores_busy": busy,
        # Less sensitive than images/s to other processes taking cores on a shared machine.
        "cpu_ms_per_image": busy and round(1000 * busy * seconds / report["embedded"]),
        "wall_s": round(out["wall"], 1),
    }


def marginal(python: str, args, work: Path) -> dict:
    """images/s between 256 and --marginal-rows Beans images, whole processes, start-up
    excluded. Each run is repeated --repeats times, interleaved, and the median wall time
    taken: a start-up swings by seconds, a large share of a small difference between sizes."""
    rows = args.marginal_rows
    dataset = more_beans(args.dataset, work, rows)
    walls: dict[tuple[str, int], list[float]] = {}
    for _ in range(args.repeats):
        for n in (256, rows):
            walls.setdefault(("lookalike", n), []).append(
                run(
                    [python, "-m", "lookalike.cli", "ingest", "--dataset", dataset]
                    + ["--model", args.model, "--limit", str(n), "--recreate"]
                    + ["--qdrant-path", str(work / "beans-store")]
                )["wall"]
            )
            script = TUTORIAL.format(
                bench=str(ROOT / "bench"), model=args.model, dataset=dataset, n=n
            )
            walls.setdefault(("tutorial", n), []).append(run([python, "-c", script])["wall"])
    median = {key: statistics.median(times) for key, times in walls.items()}
    rates = {
        name: round((rows - 256) / (median[(name, rows)] - median[(name, 256)]), 1)
        for name in ("lookalike", "tutorial")
    }
    runs = {f"{name} {n}": [round(t, 1) for t in ts] for (name, n), ts in walls.items()}
    speedup = round(rates["lookalike"] / rates["tutorial"], 2)
    return rates | {"rows": rows, "speedup": speedup, "walls": runs}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--dataset", default="../shared/data/beans")
    ap.add_argument("--model", default="../shared/models/efficientnet-lite0")
    ap.add_argument("--photos", type=int, default=48, help="camera photos to ingest")
    ap.add_argument("--small", type=int, default=256, help="small images to ingest")
    ap.add_argument("--workdir", default=None, help="keep the made folders here (reused)")
    ap.add_argument("--python", default=sys.executable, help="interpreter running lookalike")
    ap.add_argument("--marginal", action="store_true", help="also whole-process vs tutorial")
    ap.add_argument("--repeats", type=int, default=1, help="--marginal's runs of each size")
    ap.add_argument("--marginal-rows", type=int, default=1034, help="--marginal's large size")
    ap.add_argument("--extra", default="", help="more ingest options, e.g. '--compile'")
    ap.add_argument("--json", dest="json_path", default=None, help="also write results here")
    args = ap.parse_args()
    args.dataset, args.model = (
        os.path.abspath(p) if os.path.exists(p) else p for p in (args.dataset, args.model)
    )
    from ingest_bench import machine  # noqa: E402  (imports torch: after argument parsing)

    work = Path(args.workdir or tempfile.mkdtemp(prefix="lookalike-photos-"))
    folders = make_folders(args.dataset, work, args.photos, args.small)
    result: dict = {"machine": machine(), "model": args.model, "python": args.python}
    for name, folder in folders.items():
        store = str(work / f"store-{name}")
        result[name] = ingest(args.python, args, str(folder), store, *args.extra.split())
    result["photo_to_small_ratio"] = round(
        result["photos"]["images_per_s"] / result["small"]["images_per_s"], 2
    )
    if args.marginal:
        result["marginal"] = marginal(args.python, args, work)
    print(json.dumps(result, indent=2))
    if args.json_path:
        Path(args.json_path).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
