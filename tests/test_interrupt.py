"""Killed part-way (SIGINT, SIGKILL), ingest resumes to exactly one point per image; a second
process on the embedded store is told what to do."""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time

import pytest
from click.testing import CliRunner

from lookalike.cli.main import cli
from lookalike.store import StoreConfig, connect
from tests.conftest import make_image

ROWS = 80


def lookalike(*args) -> list[str]:
    return [sys.executable, "-m", "lookalike.cli", *[str(a) for a in args]]


class Progress:
    """Reads a child's stderr and remembers the highest n of tqdm's `n/total`."""

    def __init__(self, proc: subprocess.Popen) -> None:
        self.done, self.text = 0, ""
        threading.Thread(target=self._read, args=(proc,), daemon=True).start()

    def _read(self, proc) -> None:
        for chunk in iter(lambda: proc.stderr.read1(256), b""):
            self.text += chunk.decode(errors="replace")
            counts = re.findall(rf"(\d+)/{ROWS}", self.text)
            if counts:
                self.done = max(map(int, counts))

    def wait_for(self, n: int, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while self.done < n:
            assert time.monotonic() < deadline, f"no progress to {n}: {self.text[-500:]}"
            time.sleep(0.05)


def default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.fixture
def ingest_args(beans_dir, effnet_dir, tmp_path):
    # The real model in fp32, one image per batch: slow enough to be stopped part-way.
    return [
        "ingest",
        "--dataset",
        beans_dir,
        "--model",
        effnet_dir,
        "--limit",
        ROWS,
        "--batch-size",
        1,
        "--precision",
        "fp32",
        "--qdrant-path",
        tmp_path / "store",
    ]


# SIGKILL (nothing cleaned up) in every run; SIGINT's resume is the same path, in -m slow.
@pytest.mark.parametrize(
    "sig",
    [pytest.param(signal.SIGINT, marks=pytest.mark.slow), signal.SIGKILL],
    ids=["SIGINT", "SIGKILL"],
)
def test_killed_ingest_resumes_to_one_point_per_image(ingest_args, tmp_path, sig):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    # A shell without job control starts background jobs with SIGINT ignored, and Python then
    # keeps ignoring it: give the child the default disposition, as a terminal would.
    proc = subprocess.Popen(
        lookalike(*ingest_args), stderr=subprocess.PIPE, env=env, preexec_fn=default_sigint
    )
    progress = Progress(proc)
    progress.wait_for(20)
    proc.send_signal(sig)
    code = proc.wait(timeout=60)
    if sig == signal.SIGINT:
        assert code == 130
        assert re.search(r"interrupted: \d+ images stored in 'beans'", progress.text)
        assert "Run the same command again to resume" in progress.text
    else:
        assert code == -signal.SIGKILL

    result = CliRunner().invoke(cli, [*map(str, ingest_args), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    # Resumed, not redone. The bar counts images handed to the writer: a kill may lose the
    # few (one per batch here) still queued for it, never what was stored.
    assert report["unchanged"] >= 16
    assert report["unchanged"] + report["embedded"] == ROWS

    with connect(StoreConfig(path=str(tmp_path / "store"))) as store:
        assert store.info("beans").points == ROWS
        points, vectors, _ = store.scroll("beans", limit=1000, with_vectors=True)
    assert len({p.row for p in points}) == ROWS
    assert all(p.label_name and p.path for p in points)
    assert vectors.shape == (ROWS, 1280)


HOLDERS = {
    "local": "from qdrant_client import QdrantClient; c = QdrantClient(path={path!r})",
    "edge": "from lookalike.records import CollectionMeta; "
    "from lookalike.store import StoreConfig, connect; s = connect(StoreConfig(path={path!r})); "
    "s.prepare('beans', CollectionMeta('m', 'cls', 4, 'd', 'image', None))",
}


@pytest.mark.parametrize("engine", HOLDERS)
def test_second_process_on_the_embedded_store_gets_a_clear_message(tmp_path, engine):
    path = tmp_path / "store"
    hold = HOLDERS[engine].format(path=str(path))
    holder = subprocess.Popen(
        [sys.executable, "-c", f"import time; {hold}; print('open', flush=True); time.sleep(60)"],
        stdout=subprocess.PIPE,
    )
    try:
        assert holder.stdout.readline().strip() == b"open"
        result = CliRunner().invoke(cli, ["info", "--qdrant-path", str(path)])
    finally:
        holder.kill()
    assert result.exit_code == 1
    assert "another process" in result.stderr
    assert "--qdrant-url" in result.stderr and "Traceback" not in result.output


# A decoder that never returns for one image (a dead network disk, a pathological file): PIL
# is patched in the child process, nothing of lookalike's.
STUCK_DECODE = """
import sys, threading
from PIL import ImageFile
real_load = ImageFile.ImageFile.load
def load(self):
    if self.size == (77, 77):
        print("stuck in a worker", file=sys.stderr, flush=True)
        threading.Event().wait()
    return real_load(self)
ImageFile.ImageFile.load = load
from lookalike.cli.main import main
sys.argv = ["lookalike", *sys.argv[1:]]
main()
"""


def test_ctrl_c_stops_ingest_while_a_worker_is_stuck(image_folder, tiny_vit, tmp_path):
    root = tmp_path / "images"
    shutil.copytree(image_folder, root)
    make_image((90, 90, 90), seed=99, size=77).save(root / "red" / "stuck.png")
    args = ["ingest", "--dataset", root, "--model", tiny_vit, "--qdrant-path", tmp_path / "s"]
    proc = subprocess.Popen(
        [sys.executable, "-c", STUCK_DECODE, *map(str, args)],
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        preexec_fn=default_sigint,
    )
    try:
        progress = Progress(proc)
        deadline = time.monotonic() + 120
        while "stuck in a worker" not in progress.text:
            assert time.monotonic() < deadline and proc.poll() is None, progress.text[-500:]
            time.sleep(0.05)
        time.sleep(0.5)  # the model thread is now waiting on the stuck batch
        proc.send_signal(signal.SIGINT)
        code = proc.wait(timeout=20)
    finally:
        proc.kill()
    assert code == 130, progress.text[-500:]
    assert re.search(r"interrupted: \d+ images stored", progress.text)
