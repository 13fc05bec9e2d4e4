"""Ingest on Ray Data vs the local ingest: same images, model and machine, one run each.

    python bench/ray_bench.py --dataset ../shared/data/beans \
        --model ../shared/models/efficientnet-lite0 [--device cuda] [--limit N] [--cpus N]

Both sync the split into a fresh embedded store from a loaded source (model load excluded
for the local ingest, as bench/ingest_bench.py times it). The per-image cost is marginal:
from the first stored batch to the last, over the images after the first batch, so the
local ingest's model load and Ray's start-up (ray.init, the actors loading the model) are
left out of it; Ray's start-up is reported apart. Each Ray stage's rows/s is its rows over
the seconds its workers spent in it (one worker's rate: stages overlap).
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


def run(args, settings: ModelSettings, stage: RayStage | None) -> dict:
    source = load_source(args.dataset, args.split, limit=args.limit)
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
        result["startup_s"] = stats["startup_s"]
        result["embed_actors"] = stats["embed_actors"]
        for name in ("decode", "embed", "write"):
            busy = stats.get(f"{name}_s")
            result[f"{name}_rows_per_s"] = stats["rows"] / busy if busy else None
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--dataset", default="../shared/data/beans")
    ap.add_argument("--model", default="../shared/models/efficientnet-lite0")
    ap.add_argument("--split", default="train")
    ap.add_argument("--limit", type=int, default=None)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--precision", default="auto")
    ap.add_argument("--batch-size", type=int, default=None)
    ap.add_argument("--cpus", type=int, default=None, help="the local Ray's CPUs (default: all)")
    ap.add_argument("--gpus", type=int, default=None, help="embedding actors on GPUs")
    ap.add_argument("--json", dest="json_path", default=None)
    args = ap.parse_args()
    args.model = os.path.abspath(args.model)

    settings = ModelSettings(args.model, device=args.device, precision=args.precision)
    local = run(args, settings, None)
    stage = RayStage(settings, StoreConfig(), num_cpus=args.cpus, gpus=args.gpus)
    try:
        ray = run(args, settings, stage)
    finally:
        stage.close()
    ratio = ray["marginal_ms_per_image"] / local["marginal_ms_per_image"]
    result = {"machine": _machine(), "local": local, "ray": ray, "marginal_ratio": ratio}
    print(f"machine: {result['machine']} (shared with other jobs while measured)")
    print(f"{'path':<7}{'images':>7}{'seconds':>9}{'first batch s':>15}{'ms/image':>10}")
    for name in ("local", "ray"):
        r = result[name]
        print(
            f"{name:<7}{r['images']:>7}{r['seconds']:>9.1f}{r['to_first_batch_s']:>15.1f}"
            f"{r['marginal_ms_per_image']:>10.2f}"
        )
    print(
        f"Ray/local marginal per image: {ratio:.2f}x; Ray start-up {ray['startup_s']:.1f} s "
        f"(ray.init) + actors' model load within 'first batch'; {ray['embed_actors']} embedding "
        "actor(s); stage rows/s per worker: "
        + ", ".join(f"{s} {ray[f'{s}_rows_per_s'] or 0:.0f}" for s in ("decode", "embed", "write"))
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
