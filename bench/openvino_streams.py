"""Would ingest gain from OpenVINO's throughput mode? Model-only images/s of one converted model
(a model.xml from lookalike's cache) run three ways, rounds interleaved:

    python bench/openvino_streams.py ~/.cache/huggingface/lookalike/models/KEY/model.xml \
        [--batch 16] [--seconds 6] [--rounds 2]

- latency: what lookalike does today (PERFORMANCE_HINT LATENCY): one request, every core on
  it, one batch at a time;
- throughput, in flight: PERFORMANCE_HINT THROUGHPUT, OpenVINO's own number of requests
  (one per stream, a core or two each) kept busy with whole batches: what a pipelined ingest,
  with a batch always waiting, could reach;
- throughput, split: the same compiled model, each batch split across the requests and
  waited for before the next: what a drop-in change of the runtime's `run` could reach.

Random input of the model's size: the speed of the network does not depend on the pixels.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import openvino as ov


def latency(core: ov.Core, xml: str, x: np.ndarray, seconds: float) -> float:
    request = core.compile_model(xml, "CPU", {"PERFORMANCE_HINT": "LATENCY"}).create_infer_request()
    request.infer({0: x})
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        request.infer({0: x})
        n += len(x)
    return n / (time.perf_counter() - start)


def in_flight(core: ov.Core, xml: str, x: np.ndarray, seconds: float) -> tuple[float, int]:
    compiled = core.compile_model(xml, "CPU", {"PERFORMANCE_HINT": "THROUGHPUT"})
    jobs = compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS")
    queue = ov.AsyncInferQueue(compiled, jobs)
    for _ in range(jobs):
        queue.start_async({0: x})
    queue.wait_all()
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        queue.start_async({0: x})  # waits for a free request: `jobs` batches in flight
        n += len(x)
    queue.wait_all()
    return n / (time.perf_counter() - start), jobs


def split(core: ov.Core, xml: str, x: np.ndarray, seconds: float) -> float:
    compiled = core.compile_model(xml, "CPU", {"PERFORMANCE_HINT": "THROUGHPUT"})
    jobs = compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS")
    requests = [compiled.create_infer_request() for _ in range(jobs)]
    parts = np.array_split(x, jobs)

    def one() -> None:
        for request, part in zip(requests, parts):
            request.start_async({0: part})
        for request in requests:
            request.wait()

    one()
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        one()
        n += len(x)
    return n / (time.perf_counter() - start)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("xml", help="a converted model: MODELS_CACHE/KEY/model.xml")
    p.add_argument("--batch", type=int, default=16, help="ingest's default batch size")
    p.add_argument("--size", type=int, default=224, help="the model's input side")
    p.add_argument("--seconds", type=float, default=6.0)
    p.add_argument("--rounds", type=int, default=2)
    a = p.parse_args()
    core = ov.Core()
    x = np.random.default_rng(0).random((a.batch, 3, a.size, a.size), dtype=np.float32)
    rates: dict[str, list[float]] = {"latency": [], "throughput, in flight": [], "split": []}
    for r in range(a.rounds):
        rates["latency"].append(latency(core, a.xml, x, a.seconds))
        rate, jobs = in_flight(core, a.xml, x, a.seconds)
        rates["throughput, in flight"].append(rate)
        rates["split"].append(split(core, a.xml, x, a.seconds))
        print(
            f"round {r + 1}/{a.rounds}: " + ", ".join(f"{k} {v[-1]:.1f}" for k, v in rates.items())
        )
    base = statistics.median(rates["latency"])
    print(f"| mode (batch {a.batch}, {jobs} requests in throughput mode) | img/s | x latency |")
    print("|---|---:|---:|")
    for name, values in rates.items():
        print(
            f"| {name} | {statistics.median(values):.1f} | {statistics.median(values) / base:.2f} |"
        )


if __name__ == "__main__":
    main()
