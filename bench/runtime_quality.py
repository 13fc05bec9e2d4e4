"""Retrieval quality of each runtime and precision on real Beans: precision@1, precision@5 and
5-NN accuracy (train as gallery, test as queries), near-duplicate top-1 (each test image's
edited copy, resized to 80% and saved as JPEG quality 70, must find its original first among
all test images), and per-image cosine to torch fp32.

    python bench/runtime_quality.py [--model ../shared/models/efficientnet-lite0] \
        [--int8 [mixed performance float-depthwise]]
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import warnings

import numpy as np
import pyarrow.parquet as pq
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from lookalike.embed.embedder import Embedder, cpu_has_native_bf16  # noqa: E402
from lookalike.embed.runtime.quantize import VARIANTS  # noqa: E402


def split(beans: str, name: str) -> tuple[list[Image.Image], np.ndarray]:
    rows = pq.read_table(f"{beans}/data/{name}-00000-of-00001.parquet").to_pylist()
    images = [Image.open(io.BytesIO(r["image"]["bytes"])).convert("RGB") for r in rows]
    return images, np.array([r["labels"] for r in rows])


def edited(image: Image.Image) -> Image.Image:
    w, h = image.size
    buf = io.BytesIO()
    image.resize((int(w * 0.8), int(h * 0.8))).save(buf, "JPEG", quality=70)
    return Image.open(io.BytesIO(buf.getvalue())).convert("RGB")


def embed(run, emb: Embedder, images, batch: int = 32) -> np.ndarray:
    out = []
    for i in range(0, len(images), batch):
        v = run(emb.preprocess(images[i : i + batch]))
        out.append(v / np.linalg.norm(v, axis=1, keepdims=True))
    return np.concatenate(out)


def scores(g, gl, q, ql, copies) -> dict:
    sims = q @ g.T
    top = np.argsort(-sims, axis=1)[:, :5]
    hits = gl[top] == ql[:, None]
    knn = [np.bincount(gl[t], minlength=3).argmax() for t in top]
    dup = np.argmax(copies @ q.T, axis=1) == np.arange(len(q))
    return {
        "p@1": float(hits[:, 0].mean()),
        "p@5": float(hits.mean()),
        "5nn": float(np.mean(np.array(knn) == ql)),
        "near_dup_top1": float(dup.mean()),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="../shared/models/efficientnet-lite0")
    p.add_argument("--beans", default="../shared/data/beans")
    p.add_argument(
        "--int8",
        nargs="*",
        choices=VARIANTS,
        help="also NNCF int8 (needs nncf), in these ways (none named: mixed)",
    )
    p.add_argument("--calibration", type=int, default=300, help="train images calibrating int8")
    args = p.parse_args()
    gallery, gl = split(args.beans, "train")
    queries, ql = split(args.beans, "test")
    copies = [edited(im) for im in queries]
    base = Embedder(args.model, device="cpu", precision="fp32", runtime="torch")
    runs = {"torch fp32": base.runtime.run}
    if cpu_has_native_bf16():
        bf16 = Embedder(args.model, device="cpu", precision="bf16", runtime="torch")
        runs["torch bf16"] = bf16.runtime.run
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for precision in ["fp32"] + (["bf16"] if cpu_has_native_bf16() else []):
            ov = Embedder(args.model, device="cpu", precision=precision, runtime="openvino")
            runs[f"openvino {precision}"] = ov.runtime.run
    if args.int8 is not None:
        from lookalike.embed.runtime.quantize import int8_runtime

        # The collection's own images: a seeded sample of the gallery (train) split.
        pick = np.random.default_rng(0).permutation(len(gallery))[: args.calibration]
        calib = base.preprocess([gallery[i] for i in pick]).numpy()
        rest = "bf16" if cpu_has_native_bf16() else "fp32"
        for variant in args.int8 or ["mixed"]:
            runs[f"openvino int8 {variant}"] = int8_runtime(base, calib, rest, variant).run
    reference = None
    print("| runtime | P@1 | P@5 | 5-NN | near-dup top-1 | cosine to torch fp32 min / mean |")
    print("|---|---|---|---|---|---|")
    for name, run in runs.items():
        g, q, c = (embed(run, base, x) for x in (gallery, queries, copies))
        if reference is None:
            reference = np.concatenate([g, q])
        cos = np.sum(np.concatenate([g, q]) * reference, axis=1)
        s = scores(g, gl, q, ql, c)
        print(
            f"| {name} | {s['p@1']:.3f} | {s['p@5']:.3f} | {s['5nn']:.3f} | "
            f"{s['near_dup_top1']:.3f} | {cos.min():.4f} / {cos.mean():.4f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
