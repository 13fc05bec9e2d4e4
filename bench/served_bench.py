"""What a dry-run sync costs when `serve` holds the store: reading a collection's stored points
(what the plan compares) through the serve's paged GET /collection/tracked, against reading
them from the store directly.

    python bench/served_bench.py [--points 50000]

Builds an embedded (edge) collection of synthetic points with a folder's payloads (path,
sha256, stat, label and three fields), serves it in this process on a free port (no model
is loaded: the pages need none), and times both reads and the largest page sent.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import socket
import tempfile
import threading
import time
import uuid

import numpy as np


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def build(path: str, n: int, model: str):
    from lookalike.records import CollectionMeta, ImageRecord
    from lookalike.store import StoreConfig, connect

    store = connect(StoreConfig(path=path))
    store.prepare("c", CollectionMeta(model, "pooler", 64, path, "image", "label", ("a", "b")))
    rng = np.random.default_rng(0)
    for start in range(0, n, 2000):
        rows = range(start, min(n, start + 2000))
        records = [
            ImageRecord(
                str(uuid.UUID(int=i + 1)),
                "train",
                None,
                i % 2,
                "ab"[i % 2],
                f"{'ab'[i % 2]}/IMG_{i:06d}.jpg",
                None,
                sha256=hashlib.sha256(str(i).encode()).hexdigest(),
                metadata={"sku": f"S{i // 7:05d}", "price": i % 97, "title": f"item {i}"},
                stat=f"{i}:{1700000000 + i}",
            )
            for i in rows
        ]
        store.upsert("c", records, rng.normal(size=(len(records), 64)).astype(np.float32))
    store.finish("c")
    return store


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--points", type=int, default=50_000)
    # Only its whereabouts are checked (a Searcher's rule): no model loads.
    p.add_argument("--model", default="../shared/models/efficientnet-lite0")
    args = p.parse_args()
    import uvicorn

    from lookalike.cli.web import create_app
    from lookalike.search.searcher import Searcher
    from lookalike.store import StoreConfig
    from lookalike.store.holders import process_token
    from lookalike.store.served import ServedStore

    with tempfile.TemporaryDirectory(prefix="lookalike-served-") as tmp:
        took = time.perf_counter()
        store = build(tmp, args.points, os.path.abspath(args.model))
        print(f"built {args.points} points in {time.perf_counter() - took:.1f} s")
        took = time.perf_counter()
        direct = store.tracked("c", "train")
        direct_s = time.perf_counter() - took
        port = free_port()
        app = create_app(Searcher("c", store=store))
        server = uvicorn.Server(uvicorn.Config(app, port=port, log_level="warning"))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        while not server.started:
            time.sleep(0.05)
        url = f"http://127.0.0.1:{port}/"
        served = ServedStore(url, StoreConfig(path=tmp), process_token())  # this process serves
        took = time.perf_counter()
        through = served.tracked("c", "train")
        served_s = time.perf_counter() - took
        server.should_exit = True
        thread.join(10)
        store.close()
    assert {t.id: t.payload for t in through} == {t.id: t.payload for t in direct}
    print("| points | from the store | through serve (pages of 512) | ratio |")
    print("|---|---|---|---|")
    print(f"| {args.points} | {direct_s:.2f} s | {served_s:.2f} s | {served_s / direct_s:.1f}x |")


if __name__ == "__main__":
    main()
