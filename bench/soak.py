"""Soak `serve`: many clients at once for a while, each mixing plain, filtered, grouped,
recommend and text queries with a share of malformed or pathological requests. Every answer
is checked against the same query answered in-process before the soak; /health is timed all
along (p99 must stay under 100 ms); the process's memory is sampled (it must stay flat).

    python bench/soak.py                       # 16 clients, 60 s, a tiny random CLIP
    python bench/soak.py --seconds 10 --clients 8

tests/test_soak.py runs the same for ~10 s.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
COLOURS = {"red": (200, 40, 40), "green": (40, 180, 60), "blue": (40, 60, 200)}
MALFORMED_SHARE = 0.05


@dataclass
class Case:
    """One request and what it must get: `expected` hit ids (in-process), or a 4xx."""

    name: str
    path: str
    form: dict | None = None
    files: dict | None = None
    body: dict | str | None = None
    expected: list[str] | None = None
    scores: list[float] | None = None
    bad: bool = False


@dataclass
class Stats:
    answered: int = 0
    wrong: list[str] = field(default_factory=list)
    server_errors: list[str] = field(default_factory=list)
    busy: int = 0
    health: list[float] = field(default_factory=list)
    queries: list[float] = field(default_factory=list)  # seconds per answered query
    rss_mb: list[float] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def make_folder(root: Path, per_colour: int = 12) -> Path:
    """Images in colour folders with fields: a list field (tags), integers, text."""
    rng = np.random.default_rng(0)
    rows = []
    for name, colour in COLOURS.items():
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_colour):
            pixels = np.clip(np.array(colour) + rng.normal(0, 30, (48, 48, 3)), 0, 255)
            Image.fromarray(pixels.astype(np.uint8)).save(root / name / f"{name}_{i}.png")
            tags = [["sale"], ["new", "sale"], [], ["old"]][i % 4]
            rows.append({"file_name": f"{name}/{name}_{i}.png", "tags": tags, "year": 2018 + i % 5})
    (root / "metadata.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return root


def png(colour, seed: int) -> bytes:
    import io

    rng = np.random.default_rng(seed)
    pixels = np.clip(np.array(colour) + rng.normal(0, 30, (48, 48, 3)), 0, 255)
    buf = io.BytesIO()
    Image.fromarray(pixels.astype(np.uint8)).save(buf, "PNG")
    return buf.getvalue()


def cases(searcher) -> list[Case]:
    """The requests of the soak, each answered in-process first (single-threaded)."""
    from lookalike.search.searcher import Searcher  # noqa: F401 - the type, for readers

    out: list[Case] = []
    uploads = [png(c, s) for s in (101, 102) for c in COLOURS.values()]
    variants = [
        ("plain", {}),
        ("filtered", {"where": ["year>=2020"]}),
        ("tags", {"where": ["tags=sale"]}),
        ("grouped", {"group_by": "tags"}),
        ("grouped-label", {"group_by": "label_name"}),
        ("json-filter", {"filter": '{"must_not": [{"key": "year", "match": {"value": 2019}}]}'}),
    ]
    for i, data in enumerate(uploads):
        for name, extra in variants:
            options = searcher.options(**extra)
            hits = searcher.search(Image.open(__import__("io").BytesIO(data)), k=4, options=options)
            form = {"k": "4", **{k: v for k, v in extra.items()}}
            out.append(
                Case(f"{name}-{i}", "search", form=form, files={"image": ("q.png", data)},
                     expected=[h.id for h in hits], scores=[h.score for h in hits])
            )  # fmt: skip
    ids = [p.id for p in searcher.store.scroll(searcher.collection, 6)[0]]
    for i, pid in enumerate(ids):
        for strategy in ("best_score", "average_vector"):
            hits = searcher.recommend([pid], k=4, strategy=strategy)
            out.append(
                Case(f"recommend-{strategy}-{i}", "recommend",
                     body={"positive": [pid], "k": 4, "strategy": strategy},
                     expected=[h.id for h in hits], scores=[h.score for h in hits])
            )  # fmt: skip
    for words in ("red", "a blue photo", "green leaf"):
        hits = searcher.search_text(words, k=4)
        out.append(
            Case(f"text-{words}", "search", form={"text": words, "k": "4"},
                 expected=[h.id for h in hits], scores=[h.score for h in hits])
        )  # fmt: skip
    return out


def malformed() -> list[Case]:
    """Requests that must be refused with a 4xx, quickly, and never break the server."""
    deep = {"key": "year", "match": {"value": 1}}
    for _ in range(300):
        deep = {"must": [deep]}
    q = {"query": "train:0"}
    nan = '{"must": [{"key": "year", "range": {"gte": NaN}}]}'
    unknown = {"positive": ["00000000-0000-0000-0000-00000000abcd"]}
    return [
        Case("bad-json-filter", "search", form={**q, "filter": "{not json"}, bad=True),
        Case("unknown-field", "search", form={**q, "where": "brand=x"}, bad=True),
        Case("k-zero", "search", form={**q, "k": "0"}, bad=True),
        Case("deep-filter", "search", form={**q, "filter": json.dumps(deep)}, bad=True),
        Case("nan-range", "search", form={**q, "filter": nan}, bad=True),
        Case("garbage-image", "search", files={"image": ("q.png", b"\x89PNG no")}, bad=True),
        Case("reco-unknown-id", "recommend", body=unknown, bad=True),
        Case("reco-deep-body", "recommend", body="[" * 5000 + "]" * 5000, bad=True),
        # the largest grouped query: answered (or refused in time), whatever it costs
        Case("group-k-1000", "search", form={**q, "group_by": "tags", "k": "1000"}),
    ]


def _send(client: httpx.Client, case: Case) -> httpx.Response:
    if case.path == "recommend":
        content = case.body if isinstance(case.body, str) else json.dumps(case.body)
        headers = {"Content-Type": "application/json"}
        return client.post("recommend", content=content, headers=headers)
    return client.post("search", data=case.form or {}, files=case.files)


def _check(case: Case, response: httpx.Response, stats: Stats) -> None:
    status = response.status_code
    with stats.lock:
        stats.answered += 1
        if status >= 500 and status != 503:
            stats.server_errors.append(f"{case.name}: {status} {response.text[:200]}")
        elif status == 503:
            stats.busy += 1
        elif case.bad and not 400 <= status < 500:
            stats.wrong.append(f"{case.name}: {status}, expected a refusal")
        elif case.expected is not None and status != 200:
            stats.wrong.append(f"{case.name}: {status} {response.text[:200]}")
        elif case.expected is not None and not _same(case, response.json()["hits"]):
            stats.wrong.append(f"{case.name}: other hits than in-process")


def _same(case: Case, hits: list[dict]) -> bool:
    """The same hits as in-process; ids may swap only where scores tie (batched float math)."""
    got = [h["score"] for h in hits]
    if len(got) != len(case.scores) or not np.allclose(got, case.scores, atol=1e-3):
        return False
    return all(
        a == h["id"] or abs(s - h["score"]) < 1e-3
        for a, s, h in zip(case.expected, case.scores, hits)
    )


def client_loop(url: str, good: list[Case], bad: list[Case], stop, stats, seed: int) -> None:
    rng = random.Random(seed)
    with httpx.Client(base_url=url, timeout=60) as client:
        while not stop.is_set():
            case = rng.choice(bad) if rng.random() < MALFORMED_SHARE else rng.choice(good)
            try:
                started = time.perf_counter()
                response = _send(client, case)
                stats.queries.append(time.perf_counter() - started)
                _check(case, response, stats)
            except httpx.HTTPError as e:
                with stats.lock:
                    stats.server_errors.append(f"{case.name}: {type(e).__name__} {e}")


def health_loop(url: str, pid: int, seconds: float, out) -> None:
    """/health's latency and the server's memory every 50 ms, in a process of its own (the
    clients' threads would otherwise make it wait for the GIL, not for the server)."""
    health, rss = [], []
    with httpx.Client(base_url=url, timeout=10) as client:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            started = time.perf_counter()
            client.get("health").raise_for_status()
            health.append(time.perf_counter() - started)
            rss.append(rss_mb(pid))
            time.sleep(0.05)
    out.send((health, rss))


def rss_mb(pid: int) -> float:
    """The resident memory of process `pid`, in MB."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def soak(url: str, pid: int, good: list[Case], seconds: float, clients: int) -> Stats:
    """`clients` threads for `seconds` against the server at `url` (process `pid`)."""
    import multiprocessing

    stats, stop = Stats(), threading.Event()
    receive, send = multiprocessing.get_context("spawn").Pipe(duplex=False)
    poller = multiprocessing.get_context("spawn").Process(
        target=health_loop, args=(url, pid, seconds, send)
    )
    poller.start()
    bad = malformed()
    threads = [
        threading.Thread(target=client_loop, args=(url, good, bad, stop, stats, i))
        for i in range(clients)
    ]
    for t in threads:
        t.start()
    time.sleep(seconds)
    stop.set()
    for t in threads:
        t.join(timeout=120)
    if not receive.poll(timeout=60):  # bounded: a poller that died answers nothing
        poller.kill()
        raise RuntimeError("the /health poller gave no answer")
    stats.health, stats.rss_mb = receive.recv()
    poller.join(timeout=30)
    return stats


def summary(stats: Stats, seconds: float) -> dict:
    health = np.array(stats.health) * 1000
    rss = np.array(stats.rss_mb)
    third = max(1, len(rss) // 3)
    return {
        "answered": stats.answered,
        "per_second": round(stats.answered / seconds, 1),
        "wrong": len(stats.wrong),
        "server_errors": len(stats.server_errors),
        "busy_503": stats.busy,
        "query_p50_ms": round(float(np.percentile(stats.queries, 50)) * 1000, 1),
        "health_p50_ms": round(float(np.percentile(health, 50)), 1) if len(health) else None,
        "health_p99_ms": round(float(np.percentile(health, 99)), 1) if len(health) else None,
        "rss_mb_first_third": round(float(rss[:third].max()), 1) if len(rss) else None,
        "rss_mb_last_third": round(float(rss[-third:].max()), 1) if len(rss) else None,
        "first_problems": (stats.wrong + stats.server_errors)[:5],
    }


def serve(root: Path):
    """`lookalike serve` on the soak's store, in a process of its own (as users run it): its
    URL and process, once it listens."""
    import socket
    import subprocess

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    store = ["--qdrant-path", str(root / "store"), "--collection", "soak"]
    command = [sys.executable, "-m", "lookalike", "serve", *store, "--port", str(port)]
    proc = subprocess.Popen(
        command, stderr=subprocess.PIPE, env={**os.environ, "PYTHONPATH": str(ROOT)}
    )
    for line in proc.stderr:  # "serving 'soak' on http://...": it listens
        if b"serving" in line:
            break
    threading.Thread(target=proc.stderr.read, daemon=True).start()  # never blocks the server
    return f"http://127.0.0.1:{port}/", proc


def run(root: Path, model: str, seconds: float, clients: int) -> tuple[Stats, dict]:
    """Build, answer every case in-process, close the store, serve it, soak it."""
    searcher, store = build(root, model)
    with store:
        good = cases(searcher)
    url, proc = serve(root)
    try:
        stats = soak(url, proc.pid, good, seconds, clients)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    return stats, summary(stats, seconds)


def build(root: Path, model: str):
    """A collection of the soak's images on an embedded store, and its Searcher."""
    from lookalike.embed.embedder import Embedder
    from lookalike.ingest import ingest
    from lookalike.search import Searcher
    from lookalike.source import load_source
    from lookalike.store import StoreConfig, connect

    folder = make_folder(root / "images")
    store = connect(StoreConfig(path=str(root / "store")))
    embedder = Embedder(model, device="cpu", precision="fp32")
    ingest(load_source(str(folder)), embedder, store, "soak")
    store.index_fields("soak", store.field_types("soak"))
    return Searcher("soak", store=store, embedder=embedder), store


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--model", help="a CLIP or SigLIP folder (default: a tiny random CLIP)")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    sys.path.insert(0, str(ROOT))
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        model = args.model
        if model is None:
            from tests.conftest import make_tiny_clip

            (root / "clip").mkdir()
            model = make_tiny_clip(root / "clip")
        stats, result = run(root, model, args.seconds, args.clients)
    print(json.dumps({"clients": args.clients, "seconds": args.seconds, **result}, indent=2))
    ok = not stats.wrong and not stats.server_errors and (result["health_p99_ms"] or 0) < 100
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
