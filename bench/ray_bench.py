"""Ingest on Ray Data vs the local ingest: same images, model and machine, one run each.

    python bench/ray_bench.py --dataset ../shared/data/beans \
        --model ../shared/models/efficientnet-lite0 [--device cuda] [--limit N] [--cpus N]

Each path syncs --small images (default 256) and then all of them (1034 Beans train images)
into fresh embedded stores, the driver's model loaded before the clock starts. The per-image
cost is marginal, (T(all) - T(small)) / (all - small), as bench/ingest_bench.py's whole-
process comparison takes it: what is paid once per run (the local pipeline filling, Ray's
actors loading the model while the first images decode) cancels out. Ray itself is started
once before both Ray runs; that start-up (ray.init) is reported apart, and so is each Ray
run's wait for its first stored batch. A stage's rows/s is its rows over the seconds its
workers spent in it (one worker's rate; the stages overlap).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

from lookalike import StoreConfig, connect  # noqa: E402
from lookalike.distributed import RayStage  # noqa: E402
from lookalike.embed import ModelSettings  # noqa: E402
from lookalike.ingest import ingest  # noqa: E402
from lookalike.source import load_source  # noqa: E402

STAGES = ("decode", "embed", "write")


class Clock:
    """When each batch was stored (progress callbacks), for the marginal per-image cost."""

    def __init__(self) -> None:
        self.began = time.perf_counter()
        self.marks: list[tuple[float, int]] = []

    def __call__(self, n: int) -> None:
        self.marks.append((time.perf_counter(), n))

    def summary(self) -> dict:
        (first, first_n), (last, _) = self.marks[0], self.marks[-1]
        rest = sum(n for _, n in self.marks) - first_n
        return {
            "images": sum(n for _, n in self.marks),
            "seconds": last - self.began,
            "to_first_batch_s": first - self.began,
            "marginal_ms_per_image": 1000 * (last - first) / max(rest, 1),
        }


def run(args, settings: ModelSettings, stage: RayStage | None, limit: int | None) -> dict:
    source = load_source(args.dataset, args.split, limit=limit)
    store_path = tempfile.mkdtemp(prefix="lookalike-raybench-")
    try:
        with connect(StoreConfig(path=store_path)) as store:
            # The driver's model: loaded before the clock starts, as ingest_bench does.
            embedder = settings.load(args.model)
            clock = Clock()
            report = ingest(
                source,
                embedder,
                store,
                "bench",
                batch_size=args.batch_size,
                on_progress=clock,
                embed_stage=stage,
            )
            result = clock.summary()
            result["points"] = store.info("bench").points
            result["skipped"] = len(report.skipped)
    finally:
        shutil.rmtree(store_path, ignore_errors=True)
    if stage is not None:
        stats = stage.stats
        result["embed_actors"] = stats["embed_actors"]
        for name in STAGES:
            busy = stats.get(f"{name}_s")
            result[f"{name}_rows_per_s"] = stats["rows"] / busy if busy else None
    return result


def marginal(small: dict, large: dict) -> float:
    return 1000 * (large["seconds"] - small["seconds"]) / (large["images"] - small["images"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--dataset", default="../shared/data/beans")
    ap.add_argument("--model", default="../shared/models/efficientnet-lite0")
    ap.add_argument("--split", default="train")
    ap.add_argument("--limit", type=int, default=None, help="images of the larger run (all)")
    ap.add_argument("--small", type=int, default=256, help="images of the smaller run")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--precision", default="auto")
    ap.add_argument("--batch-size", type=int, default=None)
    ap.add_argument("--cpus", type=int, default=None, help="the local Ray's CPUs (default: all)")
    ap.add_argument("--gpus", type=int, default=None, help="embedding actors on GPUs")
    ap.add_argument("--json", dest="json_path", default=None)
    args = ap.parse_args()
    args.model = os.path.abspath(args.model)

    settings = ModelSettings(args.model, device=args.device, precision=args.precision)
    runs = {"local": [run(args, settings, None, n) for n in (args.small, args.limit)]}
    stage = RayStage(settings, StoreConfig(), num_cpus=args.cpus, gpus=args.gpus)
    try:
        stage.cluster.open()  # once, timed apart: both Ray runs start from a running Ray
        runs["ray"] = [run(args, settings, stage, n) for n in (args.small, args.limit)]
    finally:
        stage.close()
    result = {"machine": _machine(), "ray_init_s": stage.cluster.startup_seconds}
    for name, (small, large) in runs.items():
        cost = marginal(small, large)
        result[name] = {"small": small, "all": large, "marginal_ms_per_image": cost}
    ratio = result["ray"]["marginal_ms_per_image"] / result["local"]["marginal_ms_per_image"]
    result["marginal_ratio"] = ratio
    print(f"machine: {result['machine']} (shared with other jobs while measured)")
    print(f"{'path':<7}{'images':>13}{'seconds':>15}{'first batch s':>15}{'ms/image':>10}")
    for name in ("local", "ray"):
        small, large = result[name]["small"], result[name]["all"]
        print(
            f"{name:<7}{small['images']:>6} {large['images']:>6}"
            f"{small['seconds']:>7.1f} {large['seconds']:>7.1f}"
            f"{small['to_first_batch_s']:>7.1f} {large['to_first_batch_s']:>7.1f}"
            f"{result[name]['marginal_ms_per_image']:>10.2f}"
        )
    large = result["ray"]["all"]
    print(
        f"Ray/local marginal per image: {ratio:.2f}x; ray.init {result['ray_init_s']:.1f} s; "
        f"{large['embed_actors']} embedding actor(s); stage rows/s per worker: "
        + ", ".join(f"{s} {large[f'{s}_rows_per_s'] or 0:.0f}" for s in STAGES)
    )
    print(json.dumps(result))
    if args.json_path:
        Path(args.json_path).write_text(json.dumps(result, indent=2))


def _machine() -> str:
    import platform

    import torch

    cpu = platform.processor() or "cpu"
    if os.path.exists("/proc/cpuinfo"):
        with open("/proc/cpuinfo") as f:
            names = [ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")]
        cpu = names[0] if names else cpu
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return f"{cpu}, {os.cpu_count()} cores, {gpu}, torch {torch.__version__}"


if __name__ == "__main__":
    main()
