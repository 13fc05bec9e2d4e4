"""`lookalike duplicates` on a large collection: peak memory, time and the pairs found.

    .venv/bin/python bench/duplicates_bench.py                    # 50k points, edge
    .venv/bin/python bench/duplicates_bench.py --points 2000 --engine local

Builds a collection of N synthetic unit vectors (1280-d, efficientnet's size) straight
through lookalike's Store, with planted near-duplicates: every 500th point gets an edited
copy (cosine ~0.995), every 5000th a second one (a group of three), and every other copy goes
to the `test` split (leakage). Payloads carry a path, a label and two metadata fields, as a
folder's would. Then `lookalike duplicates --json` runs in a fresh child process, which reports
its own peak memory (VmHWM, not ru_maxrss: Linux carries the parent's peak into a child's).
Prints one JSON line: points, pairs found and planted, groups, cross-split pairs, seconds,
peak MB and MB per 1000 points. `--keep FOLDER` builds the store there once and reuses it.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid

import numpy as np

DIM = 1280
COPY_EVERY, TRIPLE_EVERY = 500, 5000
# The command run with its peak RSS written out: the tests' own launcher (tests/peak.py).
sys.path.insert(
    0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests")
)
from peak import LAUNCH  # noqa: E402


def planted(n: int) -> list[tuple[int, int]]:
    """(original row, copy row) pairs: copies are appended after the n originals."""
    pairs, row = [], n
    for i in range(0, n, COPY_EVERY):
        for _ in range(2 if i % TRIPLE_EVERY == 0 else 1):
            pairs.append((i, row))
            row += 1
    return pairs


def vectors(n: int, copies: list[tuple[int, int]]) -> np.ndarray:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n + len(copies), DIM), dtype=np.float32)
    for original, copy in copies:  # small noise: cosine ~0.995 to the original
        x[copy] = x[original] + 0.1 * rng.standard_normal(DIM, dtype=np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def build(path: str, n: int, engine: str) -> int:
    from lookalike.records import CollectionMeta, ImageRecord
    from lookalike.store import StoreConfig, connect

    copies = planted(n)
    x = vectors(n, copies)
    copy_rows = {c for _, c in copies}
    meta = CollectionMeta("synthetic-model", "pooler", DIM, "synthetic", "image", "label", ("a",))
    with connect(StoreConfig(path=path, engine=engine)) as store:
        store.prepare("c", meta)
        for start in range(0, len(x), 2048):
            rows = range(start, min(start + 2048, len(x)))
            records = [
                ImageRecord(
                    str(uuid.uuid5(uuid.NAMESPACE_URL, f"bench/{i}")),
                    "test" if i in copy_rows and i % 2 else "train",
                    None,
                    0,
                    "a",
                    f"photos/folder-{i // 1000}/IMG_{i:06d}.jpg",
                    None,
                    sha256=f"{i:064x}",
                    metadata={"camera": f"model-{i % 7}", "year": 2000 + i % 20},
                )
                for i in rows
            ]
            store.upsert("c", records, x[rows.start : rows.stop])
        store.finish("c")
    return len(copies)


def run_duplicates(path: str, engine: str) -> tuple[list[dict], float, float]:
    """The command's JSON lines, its wall time and its peak MB."""
    args = ["duplicates", "--json", "--qdrant-path", path, "--embedded-engine", engine]
    with tempfile.NamedTemporaryFile("r", suffix=".kb") as peak:
        start = time.perf_counter()
        child = subprocess.run(
            [sys.executable, "-c", LAUNCH, peak.name, *args], capture_output=True, text=True
        )
        seconds = time.perf_counter() - start
        if child.returncode:
            sys.exit(child.stderr[-2000:])
        return (
            [json.loads(line) for line in child.stdout.splitlines()],
            seconds,
            int(peak.read()) / 1024,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=50_000)
    parser.add_argument("--engine", choices=("edge", "local"), default="edge")
    parser.add_argument("--keep", help="build the store in this folder once and reuse it")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        path = args.keep or os.path.join(scratch, "store")
        copies = planted(args.points)  # a group of three is three pairs
        expected = len(copies) + len({o for o, _ in copies if o % TRIPLE_EVERY == 0})
        if not os.path.exists(path):
            start = time.perf_counter()
            # In a child too, so that this process stays small.
            code = "import sys; sys.path.insert(0, sys.argv[1]); import duplicates_bench as b; "
            code += "b.build(sys.argv[2], int(sys.argv[3]), sys.argv[4])"
            here = os.path.dirname(os.path.abspath(__file__))
            command = [sys.executable, "-c", code, here, path, str(args.points), args.engine]
            subprocess.run(command, check=True)
            print(f"built in {time.perf_counter() - start:.0f} s", file=sys.stderr)
        found, seconds, peak = run_duplicates(path, args.engine)
        *pairs, summary = found
        total = summary["points"]
        print(
            json.dumps(
                {
                    "engine": args.engine,
                    "points": total,
                    "pairs": len(pairs),
                    "planted": expected,
                    "cross_split_pairs": summary["cross_split_pairs"],
                    "groups": len(summary["groups"]),
                    "threshold": summary["threshold"],
                    "seconds": round(seconds, 1),
                    "peak_mb": round(peak),
                    "mb_per_1000_points": round(peak / total * 1000, 1),
                }
            )
        )


if __name__ == "__main__":
    main()
