"""The peak memory of a `lookalike` command run to its end in a child process.

Not `wait4`'s ru_maxrss: Linux carries the peak from before exec into it, which is the forking
test process's (gigabytes late in a full run), so every child would seem as big as pytest.
The child reads its own high-water mark (VmHWM, reset at exec) as it exits instead.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile

LAUNCH = """
import atexit, sys

def write_peak(path=sys.argv[1]):
    with open("/proc/self/status") as f:
        kb = next(line.split()[1] for line in f if line.startswith("VmHWM:"))
    with open(path, "w") as out:
        out.write(kb)

atexit.register(write_peak)
sys.argv = ["lookalike", *sys.argv[2:]]
from lookalike.cli.main import main

main()
"""


def peak_mb(*args) -> float:
    """Run `lookalike ARGS` to the end (it must succeed) and return its peak memory in MB."""
    with tempfile.NamedTemporaryFile("r", suffix=".kb") as out:
        command = [sys.executable, "-c", LAUNCH, out.name, *[str(a) for a in args]]
        child = subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        assert child.returncode == 0, child.stderr.decode()[-2000:]
        return int(out.read()) / 1024
