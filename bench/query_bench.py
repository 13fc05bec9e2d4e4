"""Query speed as an application sees it: in process, over HTTP, and under concurrent clients.

    python bench/query_bench.py --dataset ../shared/data/beans \
        --model ../shared/models/efficientnet-lite0 [--gallery 300] [--seconds 6]

Builds a collection of --gallery train images in a temporary embedded store, then, in one run
on the same machine and the same JPEG queries (the dataset's test images, as uploaded):
`Searcher.search` in process (p50/p99), `POST /search` to a `lookalike serve` one request at a
time (p50/p99, and `GET /health` for the cost of HTTP itself), and queries/s with 1, 8 and 32
concurrent clients for --seconds each (p50/p99 under load, and how many were told 503).
Prints a markdown table and one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx

from lookalike import Embedder, Searcher, StoreConfig, connect, load_source
from lookalike.ingest import ingest


def queries(dataset: str, n: int) -> list[bytes]:
    """The test split's images as the JPEG bytes a client would upload."""
    source = load_source(dataset, "test", limit=n, seed=0)
    return [_jpeg_bytes(source, i) for i in range(len(source))]


def _jpeg_bytes(source, i: int) -> bytes:
    import io

    image = source.decode(i).image
    buf = io.BytesIO()
    image.convert("RGB").save(buf, "JPEG", quality=90)
    return buf.getvalue()


def build(dataset: str, model: str, store_path: str, gallery: int) -> None:
    source = load_source(dataset, "train", limit=gallery, seed=0)
    with connect(StoreConfig(path=store_path)) as store:
        ingest(source, Embedder(model), store, "bench")


def percentiles(seconds: list[float]) -> tuple[float, float]:
    ms = sorted(s * 1000 for s in seconds)
    p99 = ms[min(len(ms) - 1, round(0.99 * (len(ms) - 1)))]
    return round(statistics.median(ms), 1), round(p99, 1)


def in_process(store_path: str, data: list[bytes], rounds: int) -> tuple[float, float]:
    with connect(StoreConfig(path=store_path)) as store:
        searcher = Searcher("bench", store=store)
        for d in data[:3]:
            searcher.search(d, k=5)  # warm-up
        times = []
        for _ in range(rounds):
            for d in data:
                started = time.perf_counter()
                searcher.search(d, k=5)
                times.append(time.perf_counter() - started)
    return percentiles(times)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(store_path: str, port: int) -> subprocess.Popen:
    args = [sys.executable, "-m", "lookalike.cli", "serve", "--port", str(port)]
    server = subprocess.Popen([*args, "--qdrant-path", store_path, "--collection", "bench"])
    deadline = time.monotonic() + 180
    while True:
        try:
            httpx.get(f"http://127.0.0.1:{port}/health", timeout=5).raise_for_status()
            return server
        except httpx.HTTPError:
            if time.monotonic() > deadline or server.poll() is not None:
                server.kill()
                raise SystemExit("the server did not start") from None
            time.sleep(0.3)


def post(client: httpx.Client, data: bytes) -> int:
    files = {"image": ("q.jpg", data, "image/jpeg")}
    return client.post("/search", files=files, data={"k": "5"}).status_code


def sequential(url: str, data: list[bytes], rounds: int) -> dict:
    with httpx.Client(base_url=url, timeout=60) as client:
        for d in data[:3]:
            post(client, d)  # warm-up
        times, health = [], []
        for _ in range(rounds):
            for d in data:
                started = time.perf_counter()
                assert post(client, d) == 200
                times.append(time.perf_counter() - started)
                started = time.perf_counter()
                client.get("/health").raise_for_status()
                health.append(time.perf_counter() - started)
    return {"search": percentiles(times), "health": percentiles(health)}


def concurrent(url: str, data: list[bytes], clients: int, seconds: float) -> dict:
    """`clients` threads posting back to back for `seconds`; each its own connection."""
    stop = time.monotonic() + seconds
    lock = threading.Lock()
    times: list[float] = []
    statuses: dict[int, int] = {}

    def client_loop(index: int) -> None:
        with httpx.Client(base_url=url, timeout=120) as client:
            i = index
            while time.monotonic() < stop:
                started = time.perf_counter()
                status = post(client, data[i % len(data)])
                elapsed = time.perf_counter() - started
                with lock:
                    statuses[status] = statuses.get(status, 0) + 1
                    if status == 200:
                        times.append(elapsed)
                if status == 503:
                    time.sleep(0.05)
                i += clients

    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(client_loop, range(clients)))
    wall = time.perf_counter() - started
    p50, p99 = percentiles(times) if times else (None, None)
    return {"qps": round(len(times) / wall, 1), "p50": p50, "p99": p99, "statuses": statuses}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="../shared/data/beans")
    parser.add_argument("--model", default="../shared/models/efficientnet-lite0")
    parser.add_argument("--gallery", type=int, default=300, help="train images to search")
    parser.add_argument("--queries", type=int, default=30, help="test images as queries")
    parser.add_argument("--rounds", type=int, default=2, help="passes over the queries")
    parser.add_argument("--seconds", type=float, default=6, help="per concurrency level")
    parser.add_argument("--clients", default="1,8,32")
    a = parser.parse_args()

    data = queries(a.dataset, a.queries)
    with tempfile.TemporaryDirectory() as tmp:
        store_path = os.path.join(tmp, "store")
        build(a.dataset, a.model, store_path, a.gallery)
        local = in_process(store_path, data, a.rounds)
        port = free_port()
        server = start_server(store_path, port)
        url = f"http://127.0.0.1:{port}"
        try:
            seq = sequential(url, data, a.rounds)
            loads = {n: concurrent(url, data, n, a.seconds) for n in map(int, a.clients.split(","))}
        finally:
            server.send_signal(signal.SIGINT)
            server.wait(60)
    report = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "gallery": a.gallery,
        "in_process_ms": local,
        "http_ms": seq["search"],
        "health_ms": seq["health"],
        "http_over_in_process": round(seq["search"][0] / local[0], 2),
        "concurrent": loads,
    }
    print_table(report)
    print(json.dumps(report))


def print_table(r: dict) -> None:
    print(f"machine: {r['machine']}; gallery {r['gallery']} images\n")
    print("| measure | p50 ms | p99 ms | queries/s | 503s |")
    print("|---|---:|---:|---:|---:|")
    rows = [
        ("`Searcher.search` in process", *r["in_process_ms"], "", ""),
        ("`POST /search`, one at a time", *r["http_ms"], "", ""),
        ("`GET /health`, one at a time", *r["health_ms"], "", ""),
    ]
    for n, load in r["concurrent"].items():
        busy = load["statuses"].get(503, 0)
        rows.append((f"{n} concurrent clients", load["p50"], load["p99"], load["qps"], busy))
    for row in rows:
        print("| " + " | ".join(map(str, row)) + " |")
    print(f"\nHTTP p50 / in-process p50: {r['http_over_in_process']}")


if __name__ == "__main__":
    main()
