"""An embedded store that meets a full disk, a second creator, or damaged files: one clear
error naming the store and the way back, never a crash, a traceback or silently wrong answers."""

import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from lookalike.cli.main import cli
from lookalike.embed.embedder import Embedder
from lookalike.errors import DiskFull, IngestInterrupted, StoreDamaged, StoreUnavailable
from lookalike.index import IndexSettings
from lookalike.ingest import ingest
from lookalike.records import CollectionMeta, ImageRecord
from lookalike.source import load_source
from lookalike.store import StoreConfig, connect, disk

META = CollectionMeta("m", "cls", 32, "d", "image", None)


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


@pytest.fixture(scope="module")
def embedder(tiny_vit):
    return Embedder(tiny_vit, device="cpu", precision="fp32")


@pytest.fixture(scope="module")
def pristine(tmp_path_factory, image_folder, embedder):
    """A completed ingest of the 12 images; tests corrupt copies of it."""
    path = tmp_path_factory.mktemp("pristine") / "store"
    with connect(StoreConfig(path=str(path))) as store:
        ingest(load_source(str(image_folder)), embedder, store, "colours")
    return path


@pytest.fixture
def copy(pristine, tmp_path):
    path = tmp_path / "store"
    shutil.copytree(pristine, path)  # copy2: modification times kept
    return path


def segment_file(store: Path, name: str) -> Path:
    found = list((store / "edge" / "colours" / "shard" / "segments").rglob(name))
    assert len(found) == 1, found
    return found[0]


def overwrite(path: Path, offset: int, data: bytes) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        f.write(data)


def truncated_ids(store: Path) -> None:
    path = segment_file(store, "mutable_id_tracker.mappings")
    os.truncate(path, path.stat().st_size // 3)


def random_vectors(store: Path) -> None:
    overwrite(segment_file(store, "chunk_0.mmap"), 0, np.random.default_rng(0).bytes(4096))


def broken_settings(store: Path) -> None:
    (store / "edge" / "colours" / "lookalike.json").write_text('{"dim": 32, "meta"')


def settings_without_model(store: Path) -> None:
    path = store / "edge" / "colours" / "lookalike.json"
    settings = json.loads(path.read_text())
    path.write_text(json.dumps({**settings, "meta": {"pooling": "cls"}}))


def shard_removed(store: Path) -> None:
    shutil.rmtree(store / "edge" / "colours" / "shard")
    (store / "edge" / "colours" / "check.json").unlink()  # not even the record is left


def fewer_points_recorded(store: Path) -> None:
    check = store / "edge" / "colours" / "check.json"
    data = json.loads(check.read_text())
    check.write_text(json.dumps({**data, "points": data["points"] + 1}))


@pytest.mark.parametrize(
    "damage, reason",
    [
        (truncated_ids, "mutable_id_tracker.mappings at"),
        (random_vectors, "chunk_0.mmap changed since the last completed ingest"),
        (broken_settings, "has an unreadable lookalike.json"),
        (settings_without_model, "has an unreadable lookalike.json (KeyError: 'model')"),
        (shard_removed, "could not be read (Service runtime error"),
        (fewer_points_recorded, "holds 12 points; the last completed ingest left 13"),
    ],
    ids=["truncated-ids", "random-vectors", "broken-settings", "no-model", "no-shard", "count"],
)
def test_damage_is_named_with_the_way_back(copy, damage, reason):
    damage(copy)
    for command in (["info"], ["search", "train:0"]):
        result = run(*command, "--qdrant-path", copy, "--collection", "colours")
        assert result.exit_code == 1, result.output
        assert result.stderr.startswith(f"Error: the store at {copy} is damaged: ")
        assert reason in result.stderr and "Traceback" not in result.output
        assert "lookalike ingest --recreate --collection colours" in result.stderr


def test_a_damaged_local_mode_folder_says_to_move_it_aside(tmp_path, image_folder, tiny_vit):
    store = ["--qdrant-path", tmp_path / "old", "--embedded-engine", "local"]
    result = run("ingest", "--dataset", image_folder, "--model", tiny_vit, *store)
    assert result.exit_code == 0, result.output
    (tmp_path / "old" / "meta.json").write_text('{"collections": {"beans"')
    result = run("info", *store)
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert f"the store at {tmp_path / 'old'} is damaged: it cannot be opened" in result.stderr
    assert "move" in result.stderr and "aside and ingest again" in result.stderr


def test_a_store_folder_that_is_a_file_is_one_line(tmp_path):
    (tmp_path / "store").write_text("")
    result = run("info", "--qdrant-path", tmp_path / "store")
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert f"the store folder {tmp_path / 'store'} is a file" in result.stderr


def test_a_damaged_collection_can_be_rebuilt(copy, image_folder, tiny_vit):
    random_vectors(copy)
    store = ["--qdrant-path", copy, "--collection", "colours"]
    result = run("ingest", "--dataset", image_folder, "--model", tiny_vit, "--recreate", *store)
    assert result.exit_code == 0, result.output
    result = run("search", image_folder / "red" / "red_1.jpg", "--k", 1, "--json", *store)
    hit = json.loads(result.stdout)["hits"][0]
    assert hit["label_name"] == "red" and hit["score"] == pytest.approx(1.0, abs=1e-4)


def test_a_copied_store_is_checked_by_content_then_by_time(pristine, tmp_path):
    path = tmp_path / "copied"
    shutil.copytree(pristine, path, copy_function=shutil.copyfile)  # new modification times
    for _ in range(3):  # reads never change what is recorded
        with connect(StoreConfig(path=str(path))) as store:
            assert store.info("colours").points == 12
    recorded = json.loads((path / "edge" / "colours" / "check.json").read_text())["files"]
    for rel, (size, mtime, _) in recorded.items():
        st = (path / "edge" / "colours" / "shard" / rel).stat()
        assert (st.st_size, st.st_mtime_ns) == (size, mtime)  # refreshed: no re-read next time


@pytest.mark.parametrize(
    "index",
    [IndexSettings(), IndexSettings(quantization="int8", on_disk=True)],
    ids=["plain", "int8-on-disk"],
)
def test_an_indexed_collection_reopens_without_false_alarms(tmp_path, index):
    """Enough vectors for the engine to build its HNSW graph and quantized copy."""
    path, rng = str(tmp_path / "store"), np.random.default_rng(1)
    meta = CollectionMeta("m", "cls", 1280, "d", "image", None)
    with connect(StoreConfig(path=path)) as store:
        store.prepare("big", meta, index=index)
        for start in range(0, 2200, 550):
            records = [record(i) for i in range(start, start + 550)]
            store.upsert("big", records, rng.normal(size=(550, 1280)).astype(np.float32))
        store.finish("big")
        assert store.info("big").indexed_points == 2200
    for _ in range(2):
        with connect(StoreConfig(path=path)) as store:
            assert store.info("big").points == 2200
            assert len(store.query("big", rng.normal(size=(3, 1280)).astype(np.float32), 5)[0])
    files = json.loads((tmp_path / "store" / "edge" / "big" / "check.json").read_text())["files"]
    assert any("vector_index" in f for f in files) and any("id_tracker" in f for f in files)


def test_a_collection_with_removed_points_reopens_without_false_alarms(copy):
    """Opening a shard with deleted points rewrites its id tracker's versions file: a sync
    that removed images must not read as damage the next time."""
    with connect(StoreConfig(path=str(copy))) as store:
        ids = [p.id for p in store.scroll("colours", 3)[0]]
        store.delete("colours", ids)
        store.finish("colours")
    for _ in range(2):
        with connect(StoreConfig(path=str(copy))) as store:
            assert store.info("colours").points == 9


def record(i: int) -> ImageRecord:
    return ImageRecord(str(uuid.UUID(int=i + 1)), "train", i, i % 3, None, None, None)


def test_an_ingest_in_progress_is_not_held_to_the_last_record(copy, image_folder, embedder):
    """A write removes the record: an interrupted ingest leaves a store that still opens."""
    with connect(StoreConfig(path=str(copy))) as store:
        store.upsert("colours", [record(100)], np.ones((1, 32), np.float32))
    assert not (copy / "edge" / "colours" / "check.json").exists()
    with connect(StoreConfig(path=str(copy))) as store:
        assert store.info("colours").points == 13


def test_an_engine_panic_is_damage_not_a_crash(copy, monkeypatch):
    import qdrant_edge as qe

    class PanicException(BaseException):  # pyo3's, which is no Exception
        pass

    def panic(path, config=None):
        raise PanicException("index out of bounds: the len is 3 but the index is 7")

    monkeypatch.setattr(qe.EdgeShard, "load", staticmethod(panic))
    with connect(StoreConfig(path=str(copy))) as store, pytest.raises(StoreDamaged) as err:
        store.info("colours")
    assert "crashed the engine (index out of bounds" in str(err.value)


class FillingDisk:
    """The disk as the store sees it (shutil.disk_usage): `free` bytes, `step` fewer after each
    look, as if each write had taken them; an ingest runs into a full disk without filling a
    real one."""

    def __init__(self, monkeypatch, free: int, step: int = 0) -> None:
        self.free, self.step = free, step
        real = shutil.disk_usage

        def usage(path):
            free, self.free = self.free, self.free - self.step
            return real(path)._replace(free=max(0, free))

        monkeypatch.setattr(disk.shutil, "disk_usage", usage)


MB = 2**20


def test_a_full_disk_stops_ingest_with_the_store_readable(
    tmp_path, image_folder, embedder, monkeypatch
):
    path = str(tmp_path / "store")
    source = load_source(str(image_folder))
    config = StoreConfig(path=path, min_free_mb=1)
    # Looks: the create (2 MB with the reserve) and, once its files exist, the room to open
    # it again; then one per batch (1 MB and a little).
    fake = FillingDisk(monkeypatch, free=int(5.5 * MB), step=MB)
    with connect(config) as store, pytest.raises(IngestInterrupted) as err:
        ingest(source, embedder, store, "colours", batch_size=2)
    full = err.value.cause
    assert isinstance(full, DiskFull) and full.folder == path and full.needed > full.free
    assert err.value.stored == 6  # three batches, then the disk was too full for the fourth
    fake.free, fake.step = int(1.5 * MB), 0  # still nearly full, yet the store reads
    with connect(config) as store:
        assert store.info("colours").points == 6
    fake.free = 100 * MB  # space freed: the same ingest resumes
    with connect(config) as store:
        report = ingest(source, embedder, store, "colours", batch_size=2)
        assert (report.unchanged, report.added, report.embedded) == (6, 6, 6)
        assert store.info("colours").points == 12


def test_a_full_disk_refuses_to_open_rather_than_crash(copy, monkeypatch):
    FillingDisk(monkeypatch, 1000)
    with connect(StoreConfig(path=str(copy))) as store, pytest.raises(DiskFull) as err:
        store.info("colours")
    assert "failed to open collection 'colours': the disk holding" in str(err.value)
    assert isinstance(err.value, StoreUnavailable)


def mount_tmpfs(folder: Path, size_mb: int) -> bool:
    if os.geteuid() != 0 or not shutil.which("mount"):
        return False
    folder.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size_mb}m", "tmpfs", str(folder)],
        capture_output=True,
    )
    return done.returncode == 0


def lookalike(*args) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "lookalike.cli", *[str(a) for a in args]]
    return subprocess.run(command, capture_output=True, text=True, timeout=300)


def test_a_real_full_disk_gives_one_line_and_no_sigbus(tmp_path, image_folder, tiny_vit, pristine):
    """On a small tmpfs (root only): what once died with SIGBUS, in ingest and then in info.
    The commands that could die run in child processes."""
    disk_dir = tmp_path / "small"
    if not mount_tmpfs(disk_dir, 48):
        pytest.skip("needs root and mount to make a small filesystem")
    try:
        # cp keeps the engine's sparse files sparse; shutil would write out their holes.
        subprocess.run(["cp", "-a", "--sparse=always", pristine, disk_dir / "store"], check=True)
        store = ["--qdrant-path", disk_dir / "store"]
        assert run("info", *store, "--collection", "colours").exit_code == 0
        ingest_args = ["ingest", "--dataset", image_folder, "--model", tiny_vit, *store]
        second = lookalike(*ingest_args, "--collection", "b")  # too little left for another
        assert second.returncode == 1, second.stderr
        assert "failed to create collection 'b': the disk holding" in second.stderr
        assert "free some space there" in second.stderr and "Traceback" not in second.stderr
        # Something else fills the disk.
        with pytest.raises(OSError), open(disk_dir / "filler", "wb", buffering=0) as f:
            while True:
                f.write(bytes(2**20))
        info = lookalike("info", *store, "--collection", "colours")
        assert info.returncode == 1 and "failed to open collection 'colours'" in info.stderr
        (disk_dir / "filler").unlink()
        info = run("info", *store, "--collection", "colours", "--json")
        assert info.exit_code == 0 and json.loads(info.stdout)["points"] == 12
    finally:
        subprocess.run(["umount", "-l", str(disk_dir)], check=False)


CREATOR = """
import sys, time, numpy as np
from lookalike.errors import StoreLocked
from lookalike.records import CollectionMeta, ImageRecord
from lookalike.store import StoreConfig, connect
path, me, start = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
meta = CollectionMeta("m", "cls", 4, "d", "image", None)
time.sleep(max(0, start - time.time()))
for attempt in range(200):  # a user running the command again while the other one works
    try:
        with connect(StoreConfig(path=path)) as store:
            store.prepare("shared", meta)
            point = f"00000000-0000-0000-0000-{me:012d}"
            rec = ImageRecord(point, "train", me, None, None, None, None)
            store.upsert("shared", [rec], np.ones((1, 4), np.float32))
            store.finish("shared")
        print("stored", attempt)
        break
    except StoreLocked:
        time.sleep(0.05)
"""


def test_processes_creating_one_collection_never_race(tmp_path):
    path, start = str(tmp_path / "store"), time.time() + 5
    creators = [
        subprocess.Popen(
            [sys.executable, "-c", CREATOR, path, str(i), str(start)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(4)
    ]
    outputs = [c.communicate(timeout=300) for c in creators]
    for creator, (out, err) in zip(creators, outputs):
        assert creator.returncode == 0 and out.startswith("stored"), err[-2000:]
    with connect(StoreConfig(path=path)) as store:
        assert store.names() == ["shared"]
        assert store.info("shared").points == 4
