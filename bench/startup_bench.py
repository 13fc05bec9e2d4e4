"""Whole-command start-up: the wall time of `lookalike ...` as a user runs it, with a warm
model cache, and which heavy libraries each command imported.

    python bench/startup_bench.py [--model ../shared/models/efficientnet-lite0] [--runs 3]

Builds a small collection (40 Beans images) in a temporary folder, then times, interleaved:
`lookalike --help`, `lookalike info`, `lookalike search photo.jpg` (the OpenVINO model from
the cache, no torch), the same with --runtime torch, and a search, `info` and `ingest
--dry-run` forwarded to a running `lookalike serve`. Targets (issue 26, 2 cores, warm cache):
search <= 3 s, forwarded search <= 0.5 s, info <= 1 s.

--python PY, twice or more, times every command with each interpreter (another checkout's
venv) in the same rounds, to compare versions on one machine; the first builds and serves.
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

HEAVY = ("torch", "transformers", "datasets", "pandas", "openvino")
# Prints the heavy modules a command imported, on its exit (a site hook run in the command).
PROBE = (
    "import atexit, sys\n"
    "atexit.register(lambda: sys.stderr.write('IMPORTED ' + ' '.join(m for m in {heavy!r} "
    "if m in sys.modules) + '\\n'))\n"
)


def lookalike(args, env, timeout=600, python=sys.executable):
    start = time.perf_counter()
    out = subprocess.run(
        [python, "-m", "lookalike", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    took = time.perf_counter() - start
    if out.returncode != 0:
        raise SystemExit(f"lookalike {' '.join(args)} failed:\n{out.stderr[-2000:]}")
    imported = [ln for ln in out.stderr.splitlines() if ln.startswith("IMPORTED")]
    return took, (imported[-1][9:].split() if imported else ["?"])


def beans_photos(folder: str, n: int) -> None:
    import pyarrow.parquet as pq
    from PIL import Image

    beans = "../shared/data/beans/data/test-00000-of-00001.parquet"
    rows = pq.read_table(beans).slice(0, n).to_pylist()
    for i, row in enumerate(rows):
        Image.open(io.BytesIO(row["image"]["bytes"])).convert("RGB").save(f"{folder}/{i:03d}.jpg")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="../shared/models/efficientnet-lite0")
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--python", action="append", help="time with this interpreter (repeatable)")
    args = p.parse_args()
    work = tempfile.mkdtemp(prefix="lookalike-startup-")
    try:
        run(args, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def run(args, work: str) -> None:
    photos = os.path.join(work, "photos")
    os.makedirs(photos)
    beans_photos(photos, 40)
    site = os.path.join(work, "site")
    os.makedirs(site)
    with open(os.path.join(site, "sitecustomize.py"), "w") as f:
        f.write(PROBE.format(heavy=HEAVY))
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1")
    env["PYTHONPATH"] = site + os.pathsep + env.get("PYTHONPATH", "")
    env["LOOKALIKE_QDRANT_PATH"] = os.path.join(work, "store")
    # An installed package has its bytecode; without it every run compiles lookalike (~0.13 s).
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    pythons = args.python or [sys.executable]
    photo = os.path.join(photos, "007.jpg")
    ingest = ["ingest", "--dataset", photos, "--collection", "c", "--model", args.model]
    took, _ = lookalike(ingest, env, python=pythons[0])
    print(f"ingest of 40 photos (conversion included when not cached): {took:.1f} s")
    for python in pythons:  # warm: the OS file cache, and each checkout's bytecode
        lookalike(["search", photo, "--collection", "c"], env, python=python)
    commands = {
        "lookalike --help": ["--help"],
        "lookalike info": ["info", "--collection", "c"],
        "lookalike search photo.jpg": ["search", photo, "--collection", "c"],
        "search --runtime torch": ["search", photo, "--collection", "c", "--runtime", "torch"],
    }
    times: dict[str, list[float]] = {}
    imports: dict[str, list[str]] = {}
    timed(commands, pythons, env, args.runs, times, imports)
    port = free_port()
    serve = subprocess.Popen(
        [pythons[0], "-m", "lookalike", "serve", "--collection", "c", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        wait_for(port)
        forwarded = {
            "search forwarded to serve": ["search", photo, "--collection", "c"],
            "info forwarded to serve": ["info", "--collection", "c"],
            "ingest --dry-run through serve": ["ingest", "--dataset", photos, "--dry-run"],
        }
        forwarded["ingest --dry-run through serve"] += ["--collection", "c"]
        timed(forwarded, pythons, env, args.runs, times, imports)
    finally:
        os.killpg(serve.pid, signal.SIGINT)
        serve.wait(timeout=60)
    print("| command | median s | runs (s) | heavy modules imported |")
    print("|---|---|---|---|")
    for name, ts in times.items():
        runs = ", ".join(f"{t:.2f}" for t in ts)
        mods = ", ".join(imports[name]) or "none"
        print(f"| `{name}` | {statistics.median(ts):.2f} | {runs} | {mods} |")


def timed(commands: dict, pythons: list[str], env: dict, runs: int, times: dict, imports: dict):
    """Each command with each interpreter, `runs` rounds interleaved; into `times` and
    `imports` by name (the interpreter's number added when there are several)."""
    for _ in range(runs):
        for name, argv in commands.items():
            for i, python in enumerate(pythons):
                label = f"{name} [python {i + 1}]" if len(pythons) > 1 else name
                took, imported = lookalike(argv, env, python=python)
                times.setdefault(label, []).append(took)
                imports[label] = imported


def wait_for(port: int, timeout: float = 300) -> None:
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2):
                return
        except OSError:
            time.sleep(0.5)
    raise SystemExit("serve did not start")


if __name__ == "__main__":
    main()
