"""Embedded-store benchmark: ingest, query p50/p99, recall@5, memory and reopen time of the
embedded engines at growing sizes, with plain numpy brute force measured in the same run.

    .venv/bin/python bench/store_bench.py                      # 10k and 100k, every engine
    .venv/bin/python bench/store_bench.py --sizes 1000000 --engines numpy,edge,edge-int8-disk

Vectors are synthetic but shaped like image embeddings (see `Synthetic`): clustered, with most
variance in a few directions and a shared mean direction, L2-normalised, 768-d (ViT-base).
Queries are fresh draws from stored clusters, not stored points. Every engine cell runs in two
fresh processes: `build` (create, upsert through lookalike's Store, build the index) and
`serve` (reopen, query one at a time through Store.query, read RSS), so memory and reopen time
are what a new process sees. The first query after reopening is timed on its own (a cold
start); then the store's files are read through once and 200 warm-up queries run, so p50/p99
are a serving process's steady state. recall@5 is against exact top-5 by numpy.
Prints a Markdown table to stdout (progress to stderr) and, with --out, JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
import uuid

import numpy as np

DIM, K, CLUSTER = 768, 5, 100
WARM = 200  # queries run before timing: a fresh process faults the index and vectors in
ENGINES = {  # name: (embedded engine, IndexSettings fields)
    "numpy": (None, {}),
    "local": ("local", {}),
    "edge": ("edge", {}),
    "edge-int8": ("edge", {"quantization": "int8"}),
    "edge-int8-disk": ("edge", {"quantization": "int8", "on_disk": True}),
    "edge-binary-disk": ("edge", {"quantization": "binary", "on_disk": True}),
}
LOCAL_MAX = 100_000  # local mode is pure Python: 1M would take hours and tens of GB


class Synthetic:
    """A reproducible collection: one cluster per 100 images (a class, a product, a scene)
    around centres living mostly in a 64-d subspace with a decaying spectrum, plus a shared
    mean direction (real embeddings are far from isotropic: random pairs are not at cosine 0),
    plus per-image noise. Any slice of rows can be made on its own."""

    def __init__(self, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        self.seed = seed
        self.basis = rng.standard_normal((64, DIM)).astype(np.float32) / 8
        self.spectrum = (1 / np.sqrt(np.arange(1, 65))).astype(np.float32)
        self.mean = rng.standard_normal(DIM).astype(np.float32) / np.sqrt(DIM) * 1.2

    def _draw(self, clusters: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        centres = np.stack(
            [np.random.default_rng([self.seed, 7, int(c)]).standard_normal(64) for c in clusters]
        ).astype(np.float32)
        low = (centres + 0.35 * rng.standard_normal(centres.shape)) * self.spectrum
        noise = rng.standard_normal((len(clusters), DIM)).astype(np.float32) / np.sqrt(DIM)
        x = self.mean + low @ self.basis + 0.45 * noise
        return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)

    def points(self, first: int, n: int) -> np.ndarray:
        rows = np.arange(first, first + n)
        return self._draw(rows // CLUSTER, np.random.default_rng([self.seed, first]))

    def queries(self, n_points: int, count: int) -> np.ndarray:
        rng = np.random.default_rng([self.seed, 99, n_points])
        return self._draw(rng.integers(0, max(1, n_points // CLUSTER), count), rng)


def data_file(workdir: str, n: int) -> str:
    """The n vectors as .npy, made once per size."""
    path = os.path.join(workdir, f"vectors-{n}.npy")
    if not os.path.exists(path):
        out = np.lib.format.open_memmap(path + ".tmp", "w+", np.float32, (n, DIM))
        gen = Synthetic()
        for start in range(0, n, 50_000):
            out[start : start + 50_000] = gen.points(start, min(50_000, n - start))
        out.flush()
        del out
        os.replace(path + ".tmp", path)
    return path


def exact_top(vectors: np.ndarray, queries: np.ndarray, k: int = K) -> np.ndarray:
    sims = queries @ vectors.T
    top = np.argpartition(-sims, k, axis=1)[:, :k]
    order = np.take_along_axis(sims, top, 1).argsort(axis=1)[:, ::-1]
    return np.take_along_axis(top, order, 1)


def rss_mb(field: str = "VmRSS") -> float:
    """This process's resident memory now (VmRSS) or at its peak (VmHWM), in MB."""
    with open("/proc/self/status") as f:
        kb = next(int(line.split()[1]) for line in f if line.startswith(field + ":"))
    return kb / 1024


def point_id(row: int) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"bench/{row}"))


# ---- the two child phases -------------------------------------------------------------------


def _store(engine: str, path: str):
    from lookalike.store import StoreConfig, connect

    return connect(StoreConfig(path=path, engine=ENGINES[engine][0]))


def build(engine: str, data: str, path: str) -> dict:
    from lookalike.index import IndexSettings
    from lookalike.records import CollectionMeta, ImageRecord

    vectors = np.load(data, mmap_mode="r")
    n = len(vectors)
    meta = CollectionMeta("bench", "cls", DIM, "synthetic", "image", "label", ())
    started = time.perf_counter()
    with _store(engine, path) as store:
        store.prepare("bench", meta, index=IndexSettings(**ENGINES[engine][1]))
        for start in range(0, n, 4096):
            chunk = np.asarray(vectors[start : start + 4096])
            records = [
                ImageRecord(point_id(r), "train", r, r // CLUSTER % 1000, None, None, None)
                for r in range(start, start + len(chunk))
            ]
            store.upsert("bench", records, chunk)
        upserted = time.perf_counter()
        store.finish("bench")
        built = time.perf_counter()
    return {
        "upsert_per_s": n / (upserted - started),
        "build_s": built - upserted,
        "build_peak_mb": rss_mb("VmHWM"),  # includes the memory-mapped input vectors
    }


def serve(engine: str, data: str, path: str, queries: str, truth: str) -> dict:
    q, expected = np.load(queries), np.load(truth)
    base = rss_mb()
    started = time.perf_counter()
    if engine == "numpy":
        vectors = np.load(data)  # what a numpy search keeps in memory
        reopened = time.perf_counter()

        def search(v):
            return exact_top(vectors, v[None])[0].tolist()

        ids = list(range(len(vectors)))
    else:
        from lookalike.index import effective

        store = _store(engine, path)
        params = effective(None, store.info("bench").index)  # as a Searcher would
        reopened = time.perf_counter()

        def search(v):
            return [h.row for h in store.query("bench", v[None], K, params=params)[0]]

        ids = None
    t = time.perf_counter()
    search(q[0])
    first = time.perf_counter() - t
    # Steady state: what a serving process has in page cache after a while (on-disk originals
    # stay on disk, as the store's own prefetch leaves them).
    _read_through(path, skip_originals=ENGINES[engine][1].get("on_disk", False))
    for v in q[1:WARM]:
        search(v)
    times, found = [], 0
    for v, truth_rows in zip(q[WARM:], expected[WARM:]):
        t = time.perf_counter()
        rows = search(v)
        times.append(time.perf_counter() - t)
        found += len(set(rows) & set(truth_rows.tolist()))
    del ids
    return {
        "reopen_s": reopened - started,
        "first_ms": first * 1000,
        "p50_ms": float(np.percentile(times, 50) * 1000),
        "p99_ms": float(np.percentile(times, 99) * 1000),
        "recall_at_5": found / (K * len(times)),
        "rss_mb": rss_mb() - base,
        "queries": len(times),
    }


def _read_through(path: str, skip_originals: bool) -> None:
    for folder, _, files in os.walk(path):
        for file in files:
            if skip_originals and "vector_storage" in folder and "quantized" not in file:
                continue
            with open(os.path.join(folder, file), "rb") as f:
                while f.read(1 << 24):
                    pass


# ---- the parent ----------------------------------------------------------------------------


def child(*args: str) -> dict:
    out = subprocess.run(
        [sys.executable, __file__, *args], capture_output=True, text=True, check=False
    )
    if out.returncode:
        raise RuntimeError(f"{' '.join(args[:2])} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def cell(engine: str, n: int, workdir: str, queries: str, truth: str) -> dict:
    data = data_file(workdir, n)
    path = os.path.join(workdir, f"store-{engine}-{n}")
    shutil.rmtree(path, ignore_errors=True)
    row = {"n": n, "engine": engine}
    if engine == "numpy":
        row.update(upsert_per_s=None, build_s=0.0)
    else:
        row.update(child("build", engine, data, path))
    row.update(child("serve", engine, data, path, queries, truth))
    row["disk_mb"] = _size_mb(path) if os.path.exists(path) else os.path.getsize(data) / 2**20
    shutil.rmtree(path, ignore_errors=True)
    return row


def _size_mb(path: str) -> float:
    return (
        sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(path) for f in fs) / 2**20
    )


def table_row(r: dict) -> str:
    ups = f"{r['upsert_per_s']:,.0f}" if r["upsert_per_s"] else "-"
    return (
        f"| {r['n']:,} | {r['engine']} | {ups} | {r['build_s']:.1f} | {r['p50_ms']:.2f} | "
        f"{r['p99_ms']:.2f} | {r['recall_at_5']:.4f} | {r['rss_mb']:,.0f} | "
        f"{r['disk_mb']:,.0f} | {r['reopen_s']:.2f} | {r['first_ms']:.1f} |"
    )


HEADER = (
    "| N | engine | upsert points/s | index build s | query p50 ms | query p99 ms | recall@5 "
    "| RSS MB | disk MB | reopen s | first query ms |\n" + "|---" * 11 + "|"
)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="10000,100000")
    ap.add_argument(
        "--engines", default="numpy,local,edge,edge-int8,edge-int8-disk,edge-binary-disk"
    )
    ap.add_argument("--queries", type=int, default=500, help="Timed queries (after warm-up).")
    ap.add_argument("--workdir", default="/tmp/lookalike-store-bench")
    ap.add_argument("--out", default=None, help="Also write the rows as JSON here.")
    args = ap.parse_args()
    os.makedirs(args.workdir, exist_ok=True)
    print(f"machine: {os.cpu_count()} cores, {os.uname().machine}", file=sys.stderr)
    print(HEADER, flush=True)
    rows = []
    for n in map(int, args.sizes.split(",")):
        q = Synthetic().queries(n, WARM + args.queries)
        queries, truth = (os.path.join(args.workdir, f"{w}-{n}.npy") for w in ("q", "truth"))
        np.save(queries, q)
        np.save(truth, exact_top(np.load(data_file(args.workdir, n), mmap_mode="r"), q))
        for engine in args.engines.split(","):
            if engine == "local" and n > LOCAL_MAX:
                print(
                    f"skip local at {n:,}: pure-Python local mode (see LOCAL_MAX)", file=sys.stderr
                )
                continue
            print(f"{engine} at {n:,} ...", file=sys.stderr, flush=True)
            rows.append(cell(engine, n, args.workdir, queries, truth))
            print(table_row(rows[-1]), flush=True)
            if args.out:
                with open(args.out, "w") as f:
                    json.dump(rows, f, indent=1)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "build":
        print(json.dumps(build(*sys.argv[2:5])))
    elif len(sys.argv) > 1 and sys.argv[1] == "serve":
        print(json.dumps(serve(*sys.argv[2:7])))
    else:
        main()
