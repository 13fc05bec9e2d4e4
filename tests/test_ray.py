"""Ingest on Ray Data (`lookalike.distributed`) against the local ingest, on a local Ray of
two CPUs started once for the module: the same ids, payloads and vectors; changes synced the
same way; bad images reported; and the Datasink's writes to a server (the stub)."""

from __future__ import annotations

import json
import os
import pickle
import shutil
import signal

import numpy as np
import pytest
from click.testing import CliRunner

from lookalike.cli.main import cli
from lookalike.embed import ModelSettings
from lookalike.ingest import ingest
from lookalike.records import ImageRecord
from lookalike.source import load_source
from lookalike.store import StoreConfig, connect
from tests.conftest import make_image
from tests.stub_qdrant import StubQdrant

ray = pytest.importorskip("ray")
from lookalike.distributed import RayStage  # noqa: E402


@pytest.fixture(scope="module", autouse=True)
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield
    ray.shutdown()


def sync(folder, model, store_path, *, on_ray: bool, batch_size=4, **kw):
    settings = ModelSettings(str(model))
    stage = RayStage(settings, StoreConfig(path=str(store_path))) if on_ray else None
    with connect(StoreConfig(path=str(store_path))) as store:
        return ingest(
            load_source(str(folder)),
            settings,
            store,
            "c",
            batch_size=batch_size,
            embed_stage=stage,
            **kw,
        )


def points(store_path) -> dict[str, tuple[dict, np.ndarray]]:
    with connect(StoreConfig(path=str(store_path))) as store:
        tracked = store.tracked("c", "train")
        vectors = store.vectors("c", [t.id for t in tracked])
    return {t.id: (t.payload, vectors[t.id]) for t in tracked}


def assert_same(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for point_id, (payload, vector) in a.items():
        assert b[point_id][0] == payload
        assert float(vector @ b[point_id][1]) >= 0.999


def counts(report) -> tuple:
    d = report.to_dict()
    return tuple(d[k] for k in ("embedded", "added", "updated", "renamed", "removed", "unchanged"))


@pytest.fixture
def folder(image_folder, tmp_path):
    copy = tmp_path / "photos"
    shutil.copytree(image_folder, copy)
    return copy


def test_a_folder_on_ray_is_stored_as_the_local_ingest_stores_it(folder, tiny_vit, tmp_path):
    (folder / "red" / "broken.jpg").write_bytes(b"not a jpeg")
    (folder / "green" / "empty.png").write_bytes(b"")
    local = sync(folder, tiny_vit, tmp_path / "local", on_ray=False)
    on_ray = sync(folder, tiny_vit, tmp_path / "ray", on_ray=True)
    assert counts(on_ray) == counts(local) == (12, 12, 0, 0, 0, 0)
    assert_same(points(tmp_path / "local"), points(tmp_path / "ray"))
    # Bad images: skipped and reported with their paths, as locally; no block failed.
    assert {s.path for s in on_ray.skipped} == {"red/broken.jpg", "green/empty.png"}
    assert sorted(on_ray.skipped, key=str) == sorted(local.skipped, key=str)


@pytest.mark.slow
def test_a_changed_folder_syncs_on_ray_as_it_does_locally(folder, tiny_vit, tmp_path):
    for where, on_ray in (("local", False), ("ray", True)):
        sync(folder, tiny_vit, tmp_path / where, on_ray=on_ray)
    (folder / "red" / "red_0.jpg").rename(folder / "red" / "renamed.jpg")  # keeps its vector
    (folder / "green" / "green_1.jpg").unlink()
    make_image((250, 250, 0), seed=99).save(folder / "blue" / "blue_0.jpg")  # new content
    make_image((0, 0, 0), seed=98).save(folder / "blue" / "new.jpg")
    reports = {}
    for where, on_ray in (("local", False), ("ray", True)):
        reports[where] = sync(folder, tiny_vit, tmp_path / where, on_ray=on_ray)
    # embedded, added, updated, renamed, removed, unchanged
    assert counts(reports["ray"]) == counts(reports["local"]) == (2, 1, 1, 1, 1, 9)
    assert_same(points(tmp_path / "local"), points(tmp_path / "ray"))
    again = sync(folder, tiny_vit, tmp_path / "ray", on_ray=True)  # converged: nothing to do
    assert counts(again) == (0, 0, 0, 0, 0, 12)


@pytest.mark.slow
def test_the_local_ingest_and_ray_take_turns_on_one_collection(folder, tiny_vit, tmp_path):
    sync(folder, tiny_vit, tmp_path / "s", on_ray=True)
    assert counts(sync(folder, tiny_vit, tmp_path / "s", on_ray=False))[-1] == 12
    make_image((9, 9, 9), seed=7).save(folder / "red" / "extra.jpg")
    assert counts(sync(folder, tiny_vit, tmp_path / "s", on_ray=True))[:2] == (1, 1)


@pytest.mark.slow
def test_ingest_dash_dash_ray_prints_the_local_summary_and_json(folder, tiny_vit, tmp_path):
    def run(*extra):
        args = ["ingest", "--dataset", folder, "--model", tiny_vit, "--collection", "c"]
        args += ["--qdrant-path", tmp_path / "store", "--json", *extra]
        result = CliRunner().invoke(cli, [str(a) for a in args])
        assert result.exit_code == 0, result.output
        return json.loads(result.stdout)

    on_ray = run("--ray")
    assert (on_ray["embedded"], on_ray["added"], on_ray["skipped"]) == (12, 12, 0)
    assert run("--ray")["unchanged"] == 12  # nothing to embed: Ray is not even asked
    assert ray.is_initialized()  # the module's Ray, joined, not stopped by the command


# The Datasink against the stub server.


def upserts_answered(statuses):
    """A stub whose n-th upsert gets statuses(n): 200 or an error status."""

    def behave(method, path, n):
        if method == "PUT" and path == "/collections/c/points":
            status = statuses(n)
            return {"operation_id": n, "status": "completed"} if status == 200 else status
        return 404

    return behave


def rows(n: int) -> list[dict]:
    out = []
    for i in range(n):
        point_id = f"00000000-0000-0000-0000-{i:012d}"
        record = ImageRecord(point_id, "train", i, 0, "a", f"{i}.jpg", None)
        vector = np.zeros(4, dtype=np.float32)
        vector[i % 4] = 1
        times = {"t_decode": 0.0, "t_embed": 0.0}
        out.append({"record": pickle.dumps(record), "ok": True, "vector": vector, **times})
    return out


def write(stub, n: int, batch: int = 64):
    from lookalike.distributed.sink import QdrantSink, Tally

    tally = ray.remote(num_cpus=0)(Tally).remote()
    config = StoreConfig(url=stub.url, retries=2, backoff=0.01, check_compatibility=False)
    sink = QdrantSink(config, "c", tally, batch)
    error = None
    try:
        ray.data.from_items(rows(n), override_num_blocks=2).write_datasink(sink)
    except Exception as e:
        error = e
    return ray.get(tally.result.remote())[0], error


def sent(stub) -> list[list[str]]:
    return [b["batch"]["ids"] for b in stub.bodies("PUT", "/collections/c/points")]


def test_the_sink_upserts_batches_of_64_to_256_and_waits_for_each():
    stub = StubQdrant(upserts_answered(lambda n: 200))
    try:
        written, error = write(stub, 300, batch=10)  # asked for 10: raised to 64
    finally:
        stub.close()
    assert error is None and len(written) == 300
    assert all(len(ids) <= 64 for ids in sent(stub)) and max(map(len, sent(stub))) == 64
    puts = [r for r in stub.requests if r["method"] == "PUT"]
    assert all("wait=true" in r["query"] for r in puts)
    assert sorted(i for ids in sent(stub) for i in ids) == sorted(written)


def test_the_sink_retries_a_503_and_stores_everything():
    stub = StubQdrant(upserts_answered(lambda n: 503 if n in (2, 3) else 200))
    try:
        written, error = write(stub, 200)
    finally:
        stub.close()
    assert error is None and len(written) == 200
    assert len(sent(stub)) == 4 + 2  # four batches, two of them retried


def test_a_refused_write_stops_the_run_with_the_rows_it_had_written():
    stub = StubQdrant(upserts_answered(lambda n: 200 if n <= 2 else 400))
    try:
        written, error = write(stub, 300)
    finally:
        stub.close()
    assert error is not None and "HTTP 400" in str(error)
    stored = sent(stub)[:2]  # the two the server accepted; nothing after counts
    assert sorted(written) == sorted(i for ids in stored for i in ids)


def embedding_actors() -> list[int]:
    """The pids of Ray Data's embedding actors (their process title names the stage)."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                title = f.read().decode(errors="replace")
        except OSError:
            continue
        if title.startswith("ray::") and "Embed" in title:
            found.append(int(pid))
    return found


@pytest.mark.slow
def test_an_embedding_actor_killed_mid_run_loses_and_duplicates_nothing(tiny_vit, tmp_path):
    folder = tmp_path / "many"
    for c, colour in enumerate(((200, 40, 40), (40, 60, 200))):
        (folder / str(c)).mkdir(parents=True)
        for i in range(30):
            make_image(colour, seed=100 * c + i).save(folder / str(c) / f"{i}.jpg")
    killed: list[int] = []

    def kill_once(n: int) -> None:  # after the first stored batch, as an OOM killer would
        if not killed and (pids := embedding_actors()):
            os.kill(pids[0], signal.SIGKILL)
            killed.append(pids[0])

    report = sync(folder, tiny_vit, tmp_path / "ray", on_ray=True, on_progress=kill_once)
    assert killed, "no embedding actor was found to kill"
    assert counts(report) == (60, 60, 0, 0, 0, 0)
    sync(folder, tiny_vit, tmp_path / "local", on_ray=False)
    assert_same(points(tmp_path / "local"), points(tmp_path / "ray"))  # 60 points, each once
    again = sync(folder, tiny_vit, tmp_path / "ray", on_ray=True)
    assert counts(again) == (0, 0, 0, 0, 0, 60)
    assert len(points(tmp_path / "ray")) == 60


@pytest.mark.slow
def test_beans_on_ray_are_stored_as_the_local_ingest_stores_them(beans_dir, effnet_dir, tmp_path):
    settings = ModelSettings(effnet_dir)
    stores = {}
    for where, stage in (("local", None), ("ray", RayStage(settings, StoreConfig()))):
        stores[where] = tmp_path / where
        with connect(StoreConfig(path=str(stores[where]))) as store:
            source = load_source(beans_dir, "train", limit=48)
            report = ingest(source, settings, store, "c", batch_size=16, embed_stage=stage)
            assert (report.embedded, report.added, len(report.skipped)) == (48, 48, 0)
    assert_same(points(stores["local"]), points(stores["ray"]))


def server(upsert_status):
    """The contract tests' server with no collection yet, whose n-th upsert gets
    upsert_status(n)."""
    from tests.test_server_contract import fresh_server

    def behave(method, path, n):
        if method == "PUT" and path == "/collections/c/points":
            return upserts_answered(upsert_status)(method, path, n)
        return fresh_server(method, path, n)

    return behave


@pytest.mark.slow  # the sink's own tests below cover its writes and refusals in every run
@pytest.mark.parametrize("status", [200, 400])
def test_ingest_on_ray_into_a_server_writes_from_the_workers(folder, tiny_vit, status):
    stub = StubQdrant(server(lambda n: status))
    args = ["ingest", "--dataset", folder, "--model", tiny_vit, "--collection", "c", "--ray"]
    args += ["--qdrant-url", stub.url, "--json"]
    try:
        result = CliRunner().invoke(cli, [str(a) for a in args])
    finally:
        stub.close()
    if status == 200:
        assert result.exit_code == 0, result.output
        assert json.loads(result.stdout)["added"] == 12
        assert sorted(i for ids in sent(stub) for i in ids) == sorted(
            load_source(str(folder)).point_id(p) for p in range(12)
        )
    else:  # refused: the run stops, saying what is stored (nothing) and how to resume
        assert result.exit_code == 1
        assert "HTTP 400" in result.stderr and "the 0 images before them" in result.stderr
