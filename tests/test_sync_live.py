"""Syncs that live through time: one killed part-way and run again, `lookalike watch` while
files come and go, and `serve --watch` answering searches while it syncs."""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path

from click.testing import CliRunner
from fastapi.testclient import TestClient

from lookalike.cli.main import cli
from lookalike.embed import ModelSettings
from lookalike.store import StoreConfig, connect
from tests.conftest import BEANS_LABELS
from tests.test_interrupt import default_sigint, lookalike


class Stderr:
    """A child's stderr as it comes, and the highest n of a progress bar's `n/total`."""

    def __init__(self, proc: subprocess.Popen, total: int = 0) -> None:
        self.text, self.total, self.done = "", total, 0
        threading.Thread(target=self._read, args=(proc,), daemon=True).start()

    def _read(self, proc) -> None:
        for chunk in iter(lambda: proc.stderr.read1(256), b""):
            self.text += chunk.decode(errors="replace")
            counts = re.findall(rf"(\d+)/{self.total}", self.text) if self.total else []
            self.done = max(map(int, counts), default=0)


def stored_files(store: Path, collection: str = "c") -> dict[str, str]:
    with connect(StoreConfig(path=str(store))) as s:
        points = s.scroll(collection, 1000)[0]
    assert len({p.path for p in points}) == len(points)  # one point per image
    return {p.path: p.sha256 for p in points}


def folder_files(folder: Path) -> dict[str, str]:
    return {
        p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in folder.rglob("*")
        if p.suffix in (".jpg", ".png")
    }


def beans_files(beans_dir: str, folder: Path, rows: range, prefix: str = "") -> None:
    import pyarrow.parquet as pq

    table = pq.read_table(Path(beans_dir) / "data" / "test-00000-of-00001.parquet")
    for row in table.slice(rows.start, len(rows)).to_pylist():
        target = folder / BEANS_LABELS[row["labels"]] / (prefix + Path(row["image_file_path"]).name)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(row["image"]["bytes"])


def test_a_sync_killed_part_way_converges_when_run_again(beans_dir, effnet_dir, tmp_path):
    folder, store = tmp_path / "photos", tmp_path / "store"
    beans_files(beans_dir, folder, range(0, 20))
    args = ["ingest", "--dataset", folder, "--model", effnet_dir, "--precision", "fp32"]
    args += ["--qdrant-path", store, "--collection", "c"]
    first = CliRunner().invoke(cli, [str(a) for a in args])
    assert first.exit_code == 0, first.output

    jpgs = sorted(folder.rglob("*.jpg"))
    for gone in jpgs[:4]:
        gone.unlink()
    for moved in jpgs[4:8]:
        moved.rename(moved.with_name("renamed-" + moved.name))
    beans_files(beans_dir, folder, range(20, 50), prefix="0-")  # 30 new, names sort first

    # One image per batch: slow enough to be killed while it embeds.
    proc = subprocess.Popen(
        lookalike(*args, "--batch-size", 1),
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        preexec_fn=default_sigint,
    )
    progress = Stderr(proc, total=30)
    wait_for(lambda: progress.done >= 5, f"progress: {progress.text[-300:]}")
    proc.kill()
    assert proc.wait(timeout=60) == -signal.SIGKILL
    half = stored_files(store)
    assert all(f"{g.parent.name}/{g.name}" in half for g in jpgs[:4])  # removals come last
    assert all(f"{m.parent.name}/renamed-{m.name}" in half for m in jpgs[4:8])  # reused first

    again = CliRunner().invoke(cli, [*map(str, args), "--json"])
    assert again.exit_code == 0, again.output
    report = json.loads(again.stdout)
    assert report["removed"] == 8 and report["added"] + report["unchanged"] == 46
    assert 0 < report["embedded"] <= 25  # what the killed run stored is not embedded again
    assert stored_files(store) == folder_files(folder)  # exactly the folder, every byte
    assert (
        json.loads(CliRunner().invoke(cli, [*map(str, args), "--json"]).stdout)["unchanged"] == 46
    )


def wait_for(condition, what: str, timeout: float = 120):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def test_watch_follows_files_as_they_come_and_go(image_folder, tiny_vit, tmp_path):
    folder, store = Path(shutil.copytree(image_folder, tmp_path / "photos")), tmp_path / "store"
    built = ["--dataset", folder, "--qdrant-path", store, "--collection", "c", "--device", "cpu"]
    result = CliRunner().invoke(cli, ["ingest", *map(str, built), "--model", str(tiny_vit)])
    assert result.exit_code == 0, result.output
    # No --model: the collection's own, as ingest would take.
    args = ["watch", *built, "--interval", 0.2, "--settle", 1.0]
    proc = subprocess.Popen(
        lookalike(*args),
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        preexec_fn=default_sigint,
    )
    log = Stderr(proc)
    try:
        wait_for(lambda: "watching" in log.text, "the first sync")
        assert "added " not in log.text  # built already, by the same model
        shutil.copy(folder / "red" / "red_0.jpg", folder / "red" / "copy.jpg")
        (folder / "blue" / "blue_3.jpg").unlink()
        # A file still being written is left alone until it has settled.
        whole = (folder / "green" / "green_0.jpg").read_bytes()
        with open(folder / "green" / "arriving.jpg", "wb") as f:
            f.write(whole[: len(whole) // 2])
            f.flush()
            time.sleep(0.3)
            f.write(whole[len(whole) // 2 :])
        wait_for(lambda: "added green/arriving.jpg" in log.text, "the new file")
        wait_for(lambda: "removed blue/blue_3.jpg" in log.text, "the removal")
        assert "added red/copy.jpg" in log.text and "skipped" not in log.text
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=60) == 0
    finally:
        proc.kill()
    assert f"stopped watching {folder}" in log.text
    assert stored_files(store) == folder_files(folder)


def test_serve_watch_searches_while_it_syncs(image_folder, tiny_vit, tmp_path):
    from lookalike.cli.sync import DatasetSettings, WatchSettings, serving_watched
    from lookalike.cli.web import create_app

    folder = Path(shutil.copytree(image_folder, tmp_path / "photos"))
    config = StoreConfig(path=str(tmp_path / "store"))
    data = DatasetSettings(dataset=str(folder))
    watching = WatchSettings(interval=0.2, settle=0.3)
    model = ModelSettings(model=tiny_vit, device="cpu")
    time.sleep(watching.settle)  # the copies are new files: younger ones wait a look
    with serving_watched(config, "c", model, None, data, watching) as searcher:
        client = TestClient(create_app(searcher), base_url="http://localhost")

        def points() -> int:
            return client.get("/health").json()["points"]

        def top(path: Path) -> dict:
            files = {"image": (path.name, path.read_bytes(), "image/jpeg")}
            return client.post("/search", files=files, data={"k": "1"}).json()["hits"][0]

        assert points() == 12  # built from the folder before serving
        (folder / "purple").mkdir()
        new = folder / "purple" / "p.png"
        make_purple(new)
        wait_for(lambda: points() == 13, "the new file to be served")
        hit = top(new)
        assert (hit["path"], hit["label_name"], hit["score"] > 0.99) == (
            "purple/p.png",
            "purple",
            True,
        )
        assert "purple" in client.get("/health").json()["labels"]
        assert client.get(f"/points/{hit['id']}/image").status_code == 200
        (folder / "red" / "red_1.jpg").unlink()
        wait_for(lambda: points() == 12, "the removal")
    assert stored_files(tmp_path / "store") == folder_files(folder)


def make_purple(path: Path) -> None:
    from tests.conftest import make_image

    buf = io.BytesIO()
    make_image((150, 40, 190), seed=77).save(buf, "PNG")
    path.write_bytes(buf.getvalue())
