"""Model-only throughput of each runtime: images/s of the network and its pooling on prepared
input, no decoding, no store. One run, rounds interleaved (every variant once per round, so
a busy neighbour slows all alike), the CPU's flags printed, and each variant's min and mean
cosine to plain torch fp32 on the same real images.

    python bench/runtime_bench.py ../shared/models/efficientnet-lite0 VIT_BASE_DIR \
        [--batches 1 32] [--rounds 3] [--images ../shared/data/beans/test]

Variants: plain torch eager (fp32, and bf16 where the CPU has it natively), lookalike's own
torch path (batch norms folded, channels-last, the same precision choice as --precision auto),
OpenVINO fp32 / bf16 (where native) / int8 (NNCF, where --int8 and nncf is installed).
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import platform
import statistics
import sys
import time
import warnings

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from lookalike.embed.embedder import Embedder, cpu_has_native_bf16  # noqa: E402
from lookalike.embed.pooling import pool  # noqa: E402
from lookalike.embed.runtime.quantize import VARIANTS  # noqa: E402


def cpu_line() -> str:
    flags, name = set(), platform.processor()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    name = line.split(":", 1)[1].strip()
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    shown = sorted(f for f in flags if f.startswith(("avx512", "amx", "avx2", "avx_vnni", "fma")))
    return f"{name}, {os.cpu_count()} cores, torch threads {torch.get_num_threads()}: " + " ".join(
        shown
    )


def real_images(pattern: str | None, n: int) -> list[Image.Image]:
    paths = sorted(glob.glob(os.path.join(pattern, "**", "*.*"), recursive=True)) if pattern else []
    paths = [p for p in paths if p.lower().endswith((".jpg", ".jpeg", ".png"))][:n]
    if len(paths) < n:  # synthetic texture where no real images are given
        rng = np.random.default_rng(0)
        return [
            Image.fromarray(rng.integers(0, 256, (256, 256, 3), dtype=np.uint8)) for _ in range(n)
        ]
    return [Image.open(p).convert("RGB") for p in paths]


def variants(model: str, args) -> dict:
    """name -> callable(pixels float32 NCHW tensor) -> (batch, dim) numpy, not normalised."""
    base = Embedder(model, device="cpu", precision="fp32", runtime="torch")
    plain = base.model.__class__.from_pretrained(model).eval()
    native = cpu_has_native_bf16()

    def eager(dtype):
        def run(px):
            bf16 = dtype is torch.bfloat16
            with torch.inference_mode(), torch.autocast("cpu", torch.bfloat16, enabled=bf16):
                return pool(base.pooling, plain, px, base.model_type).float().numpy()

        return run

    found = {"torch eager fp32": eager(torch.float32)}
    if native:
        found["torch eager bf16"] = eager(torch.bfloat16)
    own = Embedder(model, device="cpu", precision="auto", runtime="torch")
    found[f"lookalike torch {own.precision}"] = own.runtime.run
    for precision in ["fp32"] + (["bf16"] if native else []):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            t0 = time.perf_counter()
            emb = Embedder(model, device="cpu", precision=precision, runtime="openvino")
        print(f"  openvino {precision}: ready in {time.perf_counter() - t0:.1f} s", flush=True)
        found[f"openvino {precision}"] = emb.runtime.run
    if args.int8 is not None:
        from lookalike.embed.runtime.quantize import int8_runtime

        calib = base.preprocess(real_images(args.images, args.calibration))
        for variant in args.int8 or ["mixed"]:
            t0 = time.perf_counter()
            rt = int8_runtime(base, calib, "bf16" if native else "fp32", variant)
            took = time.perf_counter() - t0
            print(f"  openvino int8 {variant}: quantized in {took:.1f} s", flush=True)
            found[f"openvino int8 {variant}"] = rt.run
    return base, found


def measure(run, px: torch.Tensor, min_s: float) -> float:
    run(px)  # warm: first-call allocations and JIT kernels
    n, start = 0, time.perf_counter()
    while True:
        run(px)
        n += 1
        took = time.perf_counter() - start
        if took >= min_s:
            return n * px.shape[0] / took


def bench(model: str, args) -> dict:
    print(f"\n{os.path.basename(model.rstrip('/'))}", flush=True)
    base, found = variants(model, args)
    ims = real_images(args.images, max(args.batches))
    pixels = base.preprocess(ims)
    reference = found["torch eager fp32"](pixels)
    reference /= np.linalg.norm(reference, axis=1, keepdims=True)
    quality = {}
    for name, run in found.items():
        v = run(pixels)
        v = v / np.linalg.norm(v, axis=1, keepdims=True)
        cos = np.sum(v * reference, axis=1)
        quality[name] = (float(cos.min()), float(cos.mean()))
    rates: dict[tuple[str, int], list[float]] = {}
    for r in range(args.rounds):
        for b in args.batches:
            px = pixels[:b].contiguous()
            for name, run in found.items():
                rates.setdefault((name, b), []).append(measure(run, px, args.seconds))
        print(f"  round {r + 1}/{args.rounds} done", flush=True)
    rows = []
    lookalike_torch = next(n for n in found if n.startswith("lookalike torch"))
    for name in found:
        row = {"variant": name, "cos_min": quality[name][0], "cos_mean": quality[name][1]}
        for b in args.batches:
            row[f"b{b}_median"] = statistics.median(rates[(name, b)])
            row[f"b{b}_best"] = max(rates[(name, b)])
            ref = statistics.median(rates[(lookalike_torch, b)])
            row[f"b{b}_vs_lookalike_torch"] = row[f"b{b}_median"] / ref
        rows.append(row)
    head = "| variant | " + " | ".join(f"batch {b} img/s (x own torch)" for b in args.batches)
    print(head + " | cos min / mean |")
    print("|---" * (len(args.batches) + 2) + "|")
    for row in rows:
        cells = " | ".join(
            f"{row[f'b{b}_median']:.1f} ({row[f'b{b}_vs_lookalike_torch']:.2f}x)"
            for b in args.batches
        )
        print(f"| {row['variant']} | {cells} | {row['cos_min']:.4f} / {row['cos_mean']:.4f} |")
    return {"model": model, "rows": rows}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("models", nargs="+")
    p.add_argument("--batches", type=int, nargs="+", default=[1, 32])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--seconds", type=float, default=2.0, help="minimum time per measurement")
    p.add_argument("--images", default="../shared/data/beans/test")
    p.add_argument(
        "--int8",
        nargs="*",
        choices=VARIANTS,
        help="also NNCF int8 (needs nncf), in these ways (none named: mixed)",
    )
    p.add_argument("--calibration", type=int, default=300, help="int8 calibration images")
    p.add_argument("--json", help="write the results here too")
    args = p.parse_args()
    print(cpu_line())
    print(f"torch {torch.__version__}", end="")
    try:
        import openvino

        print(f", openvino {openvino.__version__}")
    except ImportError:
        print()
    results = [bench(m, args) for m in args.models]
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"cpu": cpu_line(), "results": results}, f, indent=1)


if __name__ == "__main__":
    main()
