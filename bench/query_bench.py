"""Query speed as an application sees it: in process, over HTTP, and under concurrent clients.

    python bench/query_bench.py --dataset ../shared/data/beans \
        --model ../shared/models/efficientnet-lite0 [--gallery 300] [--seconds 6]

Builds a collection of --gallery train images in a temporary embedded store, then, in one run
on the same machine and the same JPEG queries (the dataset's test images, as uploaded):
`Searcher.search` in process and `POST /search` to a `lookalike serve`, one request at a time
and in turn (p50/p99, and `GET /health` for the cost of HTTP itself), then queries/s with 1, 8
and 32 concurrent clients for --seconds each (p50/p99 under load, and how many were told 503),
against the ceiling: `Searcher.search_many` on every query at once, in process (the model's
batched throughput bounds any server on the machine). --server-python twice compares two
checkouts (each's venv) in one run. Prints a markdown table and one JSON line.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
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
from lookalike.embed import ModelSettings
from lookalike.embed.memory import reuse_freed_memory
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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(python: str, store_path: str, port: int) -> subprocess.Popen:
    args = [python, "-m", "lookalike.cli", "serve", "--port", str(port)]
    args += ["--qdrant-path", store_path, "--collection", "bench"]
    # Run from the store's folder: a checkout as the working directory would shadow the
    # interpreter's own installed lookalike.
    server = subprocess.Popen(args, cwd=os.path.dirname(store_path))
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


def sequential(searcher: Searcher, urls: dict[str, str], data: list[bytes], rounds: int) -> dict:
    """Each query in process, then through every server, then each server's /health, in
    turn: interleaved, so that a machine busy with something else slows all of them alike."""
    clients = {name: httpx.Client(base_url=url, timeout=60) for name, url in urls.items()}
    # In process from a thread of its own, as an application's worker (and the server) calls
    # it: on a shared 2-core machine, torch called from the main thread ran up to 10x slower.
    worker = ThreadPoolExecutor(1)

    def search(d: bytes) -> None:
        worker.submit(searcher.search, d, 5).result()

    for d in data[:3]:  # warm-up
        search(d)
        for client in clients.values():
            post(client, d)
    times: dict[str, list[float]] = {"in_process": []}
    for name in clients:
        times[f"{name} search"], times[f"{name} health"] = [], []
    for _ in range(rounds):
        for d in data:
            started = time.perf_counter()
            search(d)
            times["in_process"].append(time.perf_counter() - started)
            for name, client in clients.items():
                started = time.perf_counter()
                assert post(client, d) == 200
                times[f"{name} search"].append(time.perf_counter() - started)
                started = time.perf_counter()
                client.get("/health").raise_for_status()
                times[f"{name} health"].append(time.perf_counter() - started)
    for client in clients.values():
        client.close()
    worker.shutdown()
    return {name: percentiles(t) for name, t in times.items()}


def ceiling(searcher: Searcher, data: list[bytes], rounds: int, batch: int = 0) -> float:
    """Queries/s of `Searcher.search_many` on every query at once (decode, one forward pass,
    one store request), in process from a worker thread: what no server of this machine
    can beat, since the model's batched throughput bounds it. With `batch`, in batches of
    that many: what a server's batcher can reach when that many clients wait."""
    worker = ThreadPoolExecutor(1)
    worker.submit(searcher.search_many, data[:4], 5).result()  # warm-up
    size = batch or len(data)
    started = time.perf_counter()
    for _ in range(rounds):
        for i in range(0, len(data), size):
            worker.submit(searcher.search_many, data[i : i + size], 5).result()
    worker.shutdown()
    return round(rounds * len(data) / (time.perf_counter() - started), 1)


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
    parser.add_argument("--runtime", default="auto", help="auto, torch or openvino (both sides)")
    parser.add_argument(
        "--server-python",
        action="append",
        help="run `serve` with this interpreter (another checkout's venv, to compare "
        "versions in one run; repeatable; default: this one)",
    )
    a = parser.parse_args()
    os.environ["LOOKALIKE_RUNTIME"] = a.runtime  # read by the `serve` started below

    reuse_freed_memory()  # as `serve` does: in process and served on equal terms
    data = queries(a.dataset, a.queries)
    clients = [int(n) for n in a.clients.split(",")]
    pythons = a.server_python or [sys.executable]
    names = ["serve"] if len(pythons) == 1 else [f"serve {i + 1}" for i in range(len(pythons))]
    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as stack:
        built = os.path.join(tmp, "store")
        build(a.dataset, a.model, built, a.gallery)
        urls = {}
        for name, python in zip(names, pythons):  # an embedded store serves one process
            path = shutil.copytree(built, os.path.join(tmp, name.replace(" ", "-")))
            port = free_port()
            stack.enter_context(serving(python, path, port))
            urls[name] = f"http://127.0.0.1:{port}"
        store = stack.enter_context(connect(StoreConfig(path=built)))
        searcher = Searcher("bench", store=store, settings=ModelSettings(runtime=a.runtime))
        seq = sequential(searcher, urls, data, a.rounds)
        best = ceiling(searcher, data, a.rounds)
        by_eight = ceiling(searcher, data, a.rounds, batch=8)
        loads: dict[str, dict] = {name: {} for name in urls}
        for n in clients:  # servers in turn at each level, so that they see alike machines
            for name, url in urls.items():
                loads[name][n] = concurrent(url, data, n, a.seconds)
    report = {"machine": machine(), "gallery": a.gallery, "sequential_ms": seq}
    report["ceiling_qps"] = best
    report["batches_of_8_qps"] = by_eight
    report["servers"] = dict(zip(names, pythons))
    report["concurrent"] = loads
    print_table(report)
    print(json.dumps(report))


@contextlib.contextmanager
def serving(python: str, store_path: str, port: int):
    server = start_server(python, store_path, port)
    try:
        yield server
    finally:
        server.send_signal(signal.SIGINT)
        server.wait(60)


def machine() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            name = next(ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name"))
    except (OSError, StopIteration):
        name = platform.machine()
    return f"{name}, {os.cpu_count()} cores"


def print_table(r: dict) -> None:
    print(f"machine: {r['machine']}; gallery {r['gallery']} images")
    for name, python in r["servers"].items():
        print(f"{name}: {python}")
    print("\n| measure | p50 ms | p99 ms | queries/s | 503s |")
    print("|---|---:|---:|---:|---:|")
    seq = r["sequential_ms"]
    rows = [("`Searcher.search` in process", *seq["in_process"], "", "")]
    ceiling_row = ("`Searcher.search_many`, every query at once (the ceiling)", "", "")
    rows.append((*ceiling_row, r["ceiling_qps"], ""))
    rows.append(("`Searcher.search_many`, batches of 8", "", "", r["batches_of_8_qps"], ""))
    for name, loads in r["concurrent"].items():
        rows.append((f"`POST /search` ({name}), one at a time", *seq[f"{name} search"], "", ""))
        rows.append((f"`GET /health` ({name}), one at a time", *seq[f"{name} health"], "", ""))
        for n, load in loads.items():
            busy = load["statuses"].get(503, 0)
            rows.append(
                (f"{n} concurrent clients ({name})", load["p50"], load["p99"], load["qps"], busy)
            )
    for row in rows:
        print("| " + " | ".join(map(str, row)) + " |")
    for name in r["concurrent"]:
        ratio = round(seq[f"{name} search"][0] / seq["in_process"][0], 2)
        print(f"\n{name}: HTTP p50 / in-process p50 = {ratio}")
        for n, load in r["concurrent"][name].items():
            share = round(100 * load["qps"] / r["ceiling_qps"])
            print(f"{name}: {n} clients reach {share}% of the in-process ceiling")
        if 8 in r["concurrent"][name]:
            ratio = round(r["concurrent"][name][8]["qps"] / r["batches_of_8_qps"], 2)
            print(f"{name}: 8 clients / in-process batches of 8 = {ratio}")


if __name__ == "__main__":
    main()
