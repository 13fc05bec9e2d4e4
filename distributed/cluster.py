"""Which Ray the run uses: a local one started for it, or an existing cluster; and what it
offers (GPUs for the embedding actors, else CPU actors)."""

from __future__ import annotations

import time
from dataclasses import dataclass

from lookalike.errors import LookalikeError

LOCAL = "local"  # start a Ray for this run only


class RayUnavailable(LookalikeError):
    """Ray is not installed, or the cluster asked for cannot be reached."""

    def __init__(self, address: str, reason: str) -> None:
        self.address, self.reason = address, reason
        super().__init__(f"cannot use Ray at {address}: {reason}")


def _ray():
    try:
        import ray
    except ImportError as e:
        raise RayUnavailable(LOCAL, "Ray is not installed: pip install 'lookalike[ray]'") from e
    return ray


@dataclass
class Cluster:
    """Ray, started or joined on first use; `close` stops only a Ray this run started."""

    address: str = LOCAL
    num_cpus: int | None = None  # a local Ray's CPUs (default: all)
    started: bool = False
    startup_seconds: float | None = None

    def open(self):
        ray = _ray()
        if ray.is_initialized():  # a Ray this process joined already (tests, a notebook)
            _quiet(ray)
            return ray
        began = time.perf_counter()
        try:
            ray.init(
                address=self.address,
                num_cpus=self.num_cpus if self.address == LOCAL else None,
                include_dashboard=False,
                log_to_driver=False,
                configure_logging=False,
            )
        except (ConnectionError, RuntimeError, ValueError) as e:
            raise RayUnavailable(self.address, str(e).strip().splitlines()[0]) from e
        self.started = True
        self.startup_seconds = time.perf_counter() - began
        _quiet(ray)
        return ray

    def gpus(self) -> int:
        return int(_ray().cluster_resources().get("GPU", 0))

    def cpu_nodes(self) -> list[int]:
        """The CPUs of each live node."""
        nodes = _ray().nodes()
        return [int(n["Resources"].get("CPU", 0)) for n in nodes if n.get("Alive")]

    def close(self) -> None:
        if self.started:
            _ray().shutdown()
            self.started = False


def _quiet(ray) -> None:
    """lookalike's progress bar and summary say how a sync goes: Ray Data's own progress bars
    and per-run INFO lines would bury them (its warnings still show)."""
    import logging

    import ray.data

    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    context.print_on_execution_start = False
    context.issue_detectors_config.detectors = []  # its hints are about tuning Ray Data
    logging.getLogger("ray.data").setLevel(logging.WARNING)
    # Its note that the bars are off is for people who did not ask for that.
    logging.getLogger("ray.data._internal.progress").setLevel(logging.ERROR)
