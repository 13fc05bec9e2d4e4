"""Moving a collection: export to Parquet and import into a new embedded store, timed, with
each phase's peak memory, to show that both stream (memory flat as the collection grows).

    .venv/bin/python bench/transfer_bench.py                     # 20k and 80k points, 768-d
    .venv/bin/python bench/transfer_bench.py --sizes 1000000
    .venv/bin/python bench/transfer_bench.py --sizes 10000,40000 --dim 256 --no-import

Each phase runs in a fresh process: `build` (an edge collection of random unit vectors with
Beans-like payloads, written through Store.upsert), `export` (lookalike export) and `import`
(lookalike import into a new folder). Peak RSS is the process's ru_maxrss, so it includes
Python, numpy and the engine's memory-mapped segments (which grow with the collection, as the
pages it reads are cached); the heap peak (tracemalloc: Python objects and numpy arrays) is
what lookalike itself holds, and stays at about a page whatever the size. Prints a Markdown
table.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time


def build(path: str, n: int, dim: int) -> None:
    import numpy as np

    from lookalike.records import CollectionMeta, ImageRecord
    from lookalike.store import StoreConfig, connect

    meta = CollectionMeta("bench-model", "cls", dim, "bench", "image", "label", ("a", "b", "c"))
    rng = np.random.default_rng(0)
    with connect(StoreConfig(path=path)) as store:
        store.prepare("c", meta)
        step = 4096
        for start in range(0, n, step):
            rows = range(start, min(n, start + step))
            records = [
                ImageRecord(
                    f"{i:08d}-0000-4000-8000-000000000000",
                    "train",
                    None,
                    i % 3,
                    "abc"[i % 3],
                    f"class/{i}.jpg",
                    None,
                    sha256=f"{i:064x}",
                )  # fmt: skip
                for i in rows
            ]
            v = rng.standard_normal((len(records), dim), dtype=np.float32)
            store.upsert("c", records, v / np.linalg.norm(v, axis=1, keepdims=True))
        # No graph: an export reads points in id order and never searches.


def phase(args: list[str]) -> dict:
    started = time.perf_counter()
    out = subprocess.run(
        [sys.executable, __file__, "--phase", *args], capture_output=True, text=True, check=True
    )
    result = json.loads(out.stdout.strip().splitlines()[-1])
    result["seconds"] = time.perf_counter() - started
    return result


def run_phase(which: str, rest: list[str]) -> None:
    import tracemalloc

    from click.testing import CliRunner

    from lookalike.cli.main import cli

    tracemalloc.start()
    if which == "build":
        build(rest[0], int(rest[1]), int(rest[2]))
    else:
        result = CliRunner().invoke(cli, [which, *rest])
        assert result.exit_code == 0, result.output
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    heap_mb = tracemalloc.get_traced_memory()[1] / 2**20  # Python objects and numpy arrays
    print(json.dumps({"peak_mb": peak_mb, "heap_mb": heap_mb}))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="20000,80000")
    parser.add_argument("--dim", type=int, default=768)
    parser.add_argument(
        "--no-import", action="store_true", help="Export only (import builds the HNSW graph)."
    )
    if sys.argv[1:2] == ["--phase"]:  # a child process: the rest are its command's words
        return run_phase(sys.argv[2], sys.argv[3:])
    args = parser.parse_args()
    print(
        "| points | vectors | export s | export RSS peak MB | export heap peak MB | file MB "
        "| import s | import RSS peak MB | import heap peak MB |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for n in map(int, args.sizes.split(",")):
        with tempfile.TemporaryDirectory() as tmp:
            src, dst, file = (os.path.join(tmp, x) for x in ("src", "dst", "c.parquet"))
            phase(["build", src, str(n), str(args.dim)])
            exp = phase(["export", file, "--qdrant-path", src])
            imp = {"seconds": float("nan"), "peak_mb": float("nan"), "heap_mb": float("nan")}
            if not args.no_import:
                imp = phase(["import", file, "--qdrant-path", dst])
            raw = n * args.dim * 4 / 2**20
            size = os.path.getsize(file) / 2**20
            print(
                f"| {n:,} | {raw:.0f} MB | {exp['seconds']:.1f} | {exp['peak_mb']:.0f} | "
                f"{exp['heap_mb']:.0f} | {size:.0f} | {imp['seconds']:.1f} | {imp['peak_mb']:.0f} "
                f"| {imp['heap_mb']:.0f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
