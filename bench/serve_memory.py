"""Peak memory of `lookalike serve` under parallel uploads of large photos.

    python bench/serve_memory.py --store PATH --collection NAME [--uploads 16] [--mp 40]

Starts `lookalike serve` on the collection, sends --uploads parallel searches, each a --mp
megapixel JPEG made from a Beans-like test pattern, and reports the server's resident memory
before and at its peak (Linux: /proc VmHWM, and the rusage of the stopped server), with the
HTTP statuses seen (503s are the server asking a client to come back later).
"""

from __future__ import annotations

import argparse
import io
import os
import signal
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
from PIL import Image


def photo(megapixels: float, seed: int = 0) -> bytes:
    """A smooth, photo-like JPEG of that many pixels (4:3), a few MB on disk."""
    width = int((megapixels * 1e6 * 4 / 3) ** 0.5)
    height = int(megapixels * 1e6 / width)
    rng = np.random.default_rng(seed)
    small = Image.fromarray(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8))
    buf = io.BytesIO()
    small.resize((width, height), Image.BICUBIC).save(buf, "JPEG", quality=80)
    return buf.getvalue()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def peak_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM")


def measure(store: str, collection: str, uploads: int, megapixels: float) -> dict:
    port = free_port()
    args = [sys.executable, "-m", "lookalike.cli", "serve", "--port", str(port)]
    args += ["--qdrant-path", store, "--collection", collection]
    server = subprocess.Popen(args, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                httpx.get(f"{url}/health", timeout=5).raise_for_status()
                break
            except httpx.HTTPError:
                assert time.monotonic() < deadline and server.poll() is None, "server did not start"
                time.sleep(0.2)
        small = photo(0.1)
        httpx.post(f"{url}/search", files={"image": ("q.jpg", small)}, timeout=60)
        before = peak_mb(server.pid)
        data = photo(megapixels)

        def post(_):
            files = {"image": ("q.jpg", data, "image/jpeg")}
            return httpx.post(f"{url}/search", files=files, timeout=300).status_code

        started = time.perf_counter()
        with ThreadPoolExecutor(uploads) as pool:
            statuses = list(pool.map(post, range(uploads)))
        seconds = time.perf_counter() - started
        during = peak_mb(server.pid)
    finally:
        server.send_signal(signal.SIGINT)
        _, _, usage = os.wait4(server.pid, 0)
    return {
        "upload_mb": round(len(data) / 1e6, 1),
        "rss_before_mb": round(before),
        "rss_peak_mb": round(max(during, usage.ru_maxrss / 1024)),
        "statuses": {s: statuses.count(s) for s in sorted(set(statuses))},
        "seconds": round(seconds, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", required=True)
    parser.add_argument("--collection", required=True)
    parser.add_argument("--uploads", type=int, default=16)
    parser.add_argument("--mp", type=float, default=40)
    a = parser.parse_args()
    print(measure(a.store, a.collection, a.uploads, a.mp))


if __name__ == "__main__":
    main()
