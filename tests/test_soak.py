"""The soak of bench/soak.py, short: 16 clients for ~10 s against `lookalike serve` in its own
process, mixing plain, filtered, grouped, recommend and text queries with 5% malformed or
pathological requests. Every answer matches the in-process one, nothing is a 5xx, /health
stays quick, and the server's memory stays flat."""

import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent / "bench"


def test_sixteen_clients_for_six_seconds(tmp_path, tiny_clip):
    sys.path.insert(0, str(BENCH))  # also for the /health poller's own process
    try:
        import soak

        stats, result = soak.run(tmp_path, tiny_clip, seconds=6, clients=16)
    finally:
        sys.path.remove(str(BENCH))
    assert result["answered"] > 60, result
    assert not stats.wrong and not stats.server_errors, result["first_problems"]
    # /health never waits behind queries: even its 99th percentile beats a typical query.
    # (bench/soak.py holds it to 100 ms on a machine of its own; a CI machine shared with
    # other jobs stalls every process now and then, so the test compares the two.)
    assert result["health_p99_ms"] < max(100, result["query_p50_ms"]), result
    assert result["rss_mb_last_third"] - result["rss_mb_first_third"] < 30, result
