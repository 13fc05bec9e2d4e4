"""Ingest throughput: the tutorial's pipeline vs `lookalike ingest`, in one run, same machine,
model and images; plus query latency and precision@5 for both.

    python bench/ingest_bench.py --dataset ../shared/data/beans \
        --model ../shared/models/efficientnet-lite0 [--device cuda] [--limit N]

(a) the tutorial, reproduced: `Dataset.map(batched=True, batch_size=24)` calling a per-image
    transform, fp32, eager, one step at a time, embeddings kept in the dataset. Its
    torchvision transform chain becomes the model's own image processor applied per image
    (torchvision is not a lookalike dependency), and its `last_hidden_state[:, 0]` becomes the
    model family's correct pooling, so both pipelines compute the same embedding.
(b) lookalike's ingest into a fresh embedded Qdrant store: threaded decode/preprocess,
    reduced precision, channels-last for CNNs, upserts overlapping the model.
Both are timed from a loaded dataset and model to stored vectors.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

import datasets  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from lookalike import StoreConfig, connect  # noqa: E402
from lookalike.embed.embedder import Embedder  # noqa: E402
from lookalike.embed.pooling import pool  # noqa: E402
from lookalike.ingest import ingest  # noqa: E402
from lookalike.search import Searcher, evaluate  # noqa: E402
from lookalike.source import load_source  # noqa: E402


def tutorial_embeddings(ds: datasets.Dataset, emb: Embedder, model, device) -> np.ndarray:
    """The tutorial's extract_embeddings + map, with the per-image transform and fp32."""

    def transformation_chain(image):
        return emb.processor(images=image.convert("RGB"), return_tensors="pt")["pixel_values"][0]

    def pp(batch):
        images = batch["image"]
        image_batch_transformed = torch.stack([transformation_chain(im) for im in images])
        new_batch = {"pixel_values": image_batch_transformed.to(device)}
        with torch.no_grad():
            embeddings = pool(emb.pooling, model, new_batch["pixel_values"], emb.model_type)
        return {"embeddings": embeddings.cpu()}

    out = ds.map(pp, batched=True, batch_size=24, load_from_cache_file=False)
    return np.asarray(out["embeddings"], dtype=np.float32)


def precision_at_k(q: np.ndarray, q_labels, g: np.ndarray, g_labels, k: int = 5) -> float:
    """Tutorial-style scoring: cosine similarity to every candidate, top-k, label agreement."""
    sims = (q / np.linalg.norm(q, axis=1, keepdims=True)) @ (
        g / np.linalg.norm(g, axis=1, keepdims=True)
    ).T
    top = np.argsort(-sims, axis=1)[:, :k]
    return float((np.asarray(g_labels)[top] == np.asarray(q_labels)[:, None]).mean())


class GpuSampler:
    """Mean GPU utilisation from nvidia-smi while a block runs (None without a GPU)."""

    def __init__(self) -> None:
        self.samples: list[float] = []
        self._stop = threading.Event()
        self.enabled = torch.cuda.is_available() and shutil.which("nvidia-smi") is not None

    def _run(self) -> None:
        cmd = ["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits"]
        while not self._stop.wait(0.2):
            out = subprocess.run(cmd, capture_output=True, text=True).stdout.split()
            if out:
                self.samples.append(float(out[0]))

    def __enter__(self):
        if self.enabled:
            self._thread = threading.Thread(target=self._run, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()

    @property
    def mean(self) -> float | None:
        return round(float(np.mean(self.samples)), 1) if self.samples else None


def run_tutorial(args, emb: Embedder, device) -> dict:
    # The tutorial's model: fp32, eager, contiguous memory, no autocast.
    model = emb.model.__class__.from_pretrained(args.model).eval().to(device)
    splits = datasets.load_dataset(args.dataset)
    gallery = splits[args.split]
    if args.limit:
        gallery = gallery.shuffle(seed=42).select(range(min(args.limit, len(gallery))))
    t0 = time.perf_counter()
    g = tutorial_embeddings(gallery, emb, model, device)
    seconds = time.perf_counter() - t0
    q = tutorial_embeddings(splits[args.query_split], emb, model, device)
    p5 = precision_at_k(q, splits[args.query_split]["labels"], g, gallery["labels"])
    return {"images": len(gallery), "seconds": seconds, "precision_at_5": p5}


def run_lookalike(args, store_path: str) -> dict:
    emb = Embedder(args.model, device=args.device, precision=args.precision, runtime=args.runtime)
    source = load_source(args.dataset, args.split, limit=args.limit, seed=42)
    with connect(StoreConfig(path=store_path)) as store, GpuSampler() as gpu:
        t0 = time.perf_counter()
        report = ingest(source, emb, store, "bench", batch_size=args.batch_size, recreate=True)
        seconds = time.perf_counter() - t0
    with connect(StoreConfig(path=store_path)) as store:
        searcher = Searcher("bench", store=store, embedder=emb)
        p5 = evaluate(searcher, args.query_split, k=5).precision_at_k
        latency = query_latency(searcher, args.query_split, n=args.queries)
    result = {"images": report.embedded, "seconds": seconds, "precision_at_5": p5}
    return result | latency | {"gpu_util_percent": gpu.mean, "precision": emb.precision}


def query_latency(searcher: Searcher, split: str, n: int) -> dict:
    """Embed one image and ask for its top 5, n times: the latency an application sees."""
    source = searcher.source(split)
    images = [source.record(int(r) % len(source)).image for r in range(n)]
    searcher.search(images[0], k=5)  # warm-up
    times = []
    for image in images:
        t0 = time.perf_counter()
        searcher.search(image, k=5)
        times.append((time.perf_counter() - t0) * 1000)
    return {
        "query_p50_ms": float(np.percentile(times, 50)),
        "query_p99_ms": float(np.percentile(times, 99)),
    }


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    if os.path.exists("/proc/cpuinfo"):
        with open("/proc/cpuinfo") as f:
            names = [ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")]
        cpu = names[0] if names else cpu
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return f"{cpu}, {os.cpu_count()} cores, {gpu}, torch {torch.__version__}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--dataset", default="../shared/data/beans")
    ap.add_argument("--model", default="../shared/models/efficientnet-lite0")
    ap.add_argument("--split", default="train")
    ap.add_argument("--query-split", default="test")
    ap.add_argument("--limit", type=int, default=None, help="gallery rows (default: all)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--precision", default="auto")
    ap.add_argument("--runtime", default="auto", help="lookalike's: auto, torch or openvino")
    ap.add_argument("--batch-size", type=int, default=None, help="lookalike's (default: auto)")
    ap.add_argument("--queries", type=int, default=100)
    ap.add_argument("--json", dest="json_path", default=None, help="also write results here")
    args = ap.parse_args()

    emb = Embedder(args.model, device=args.device, precision="fp32")
    store = tempfile.mkdtemp(prefix="lookalike-bench-")
    try:
        tutorial = run_tutorial(args, emb, emb.device)
        fast = run_lookalike(args, store)
    finally:
        shutil.rmtree(store, ignore_errors=True)
    for r in (tutorial, fast):
        r["images_per_s"] = r["images"] / r["seconds"]
    result = {
        "machine": machine(),
        "model": args.model,
        "tutorial": tutorial,
        "lookalike": fast,
        "speedup": fast["images_per_s"] / tutorial["images_per_s"],
        "precision_at_5_delta": fast["precision_at_5"] - tutorial["precision_at_5"],
    }
    print(f"machine: {result['machine']}")
    print(f"{'pipeline':<12}{'images':>8}{'seconds':>10}{'images/s':>10}{'p@5':>8}")
    for name in ("tutorial", "lookalike"):
        r = result[name]
        print(
            f"{name:<12}{r['images']:>8}{r['seconds']:>10.1f}{r['images_per_s']:>10.1f}"
            f"{r['precision_at_5']:>8.4f}"
        )
    print(f"speedup: {result['speedup']:.2f}x   p@5 delta: {result['precision_at_5_delta']:+.4f}")
    print(
        f"query latency (embed 1 image + top-5, {args.queries} queries): "
        f"p50 {fast['query_p50_ms']:.1f} ms, p99 {fast['query_p99_ms']:.1f} ms; "
        f"lookalike precision {fast['precision']}; GPU util {fast['gpu_util_percent']}"
    )
    print(json.dumps(result))
    if args.json_path:
        Path(args.json_path).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
