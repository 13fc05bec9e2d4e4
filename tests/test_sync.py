"""A collection follows a folder that changes: the same ingest again adds, updates, follows
renames and moves, removes, and each image then finds itself. Real Beans leaves, the real
efficientnet model, real embedded stores (edge and local mode)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from lookalike.embed import ModelSettings
from lookalike.embed.embedder import Embedder
from lookalike.errors import ModelMismatch
from lookalike.ingest import ingest
from lookalike.records import ImageRecord
from lookalike.search import Searcher
from lookalike.source import load_source, point_id
from lookalike.store import StoreConfig, connect

# The collection's own model on a device that does not exist: a sync that loads it fails.
NOWHERE = ModelSettings(device="no-such-device")


@pytest.fixture(scope="module")
def effnet(effnet_dir) -> Embedder:
    return Embedder(effnet_dir, device="cpu", precision="fp32")


@pytest.fixture(params=["edge", "local"])
def config(tmp_path, request) -> StoreConfig:
    """Both embedded engines, for what reads, moves and removes points."""
    return StoreConfig(path=str(tmp_path / "store"), engine=request.param)


@pytest.fixture
def edge(tmp_path) -> StoreConfig:
    return StoreConfig(path=str(tmp_path / "store"))


@pytest.fixture
def photos(beans_photos, tmp_path) -> Path:
    """A fresh copy of the folder, to change."""
    return Path(shutil.copytree(beans_photos / "photos", tmp_path / "photos"))


def sync(config, folder, model, split="train", **kwargs):
    with connect(config) as store:
        return ingest(load_source(str(folder), split), model, store, "photos", **kwargs)


def files(folder: Path) -> dict[str, Path]:
    return {p.relative_to(folder).as_posix(): p for p in sorted(folder.rglob("*.jpg"))}


def assert_mirrors(config, folder: Path, effnet):
    """Each file finds its own point first (same path, score >= 0.99), the collection holds
    one point per file, and no hit names a file that is gone."""
    images = files(folder)
    with connect(config) as store:
        assert store.info("photos").points == len(images)
        searcher = Searcher("photos", store=store, embedder=effnet)
        results = searcher.search_many(list(images.values()), k=5)
    for (path, file), hits in zip(images.items(), results):
        assert hits[0].path == path and hits[0].score >= 0.99, (path, hits[0])
        assert hits[0].label_name == file.parent.name
        assert all((folder / h.path).is_file() for h in hits)


def change_everything(photos: Path, spare: Path) -> None:
    """The issue's scenario: new names that sort first, a deletion, an overwrite that keeps
    the old mtime, a rename, and a move to another class folder (its label changes)."""
    shutil.copy(next((spare / "healthy").iterdir()), photos / "healthy" / "000-first.jpg")
    shutil.copy(next((spare / "bean_rust").iterdir()), photos / "bean_rust" / "00-early.jpg")
    victim, overwritten, renamed, moved = sorted((photos / "angular_leaf_spot").iterdir())[:4]
    victim.unlink()
    before = overwritten.stat()
    overwritten.write_bytes(sorted((spare / "angular_leaf_spot").iterdir())[0].read_bytes())
    os.utime(overwritten, ns=(before.st_atime_ns, before.st_mtime_ns))
    renamed.rename(renamed.with_name("renamed.jpg"))
    moved.rename(photos / "healthy" / moved.name)


def test_a_changed_folder_syncs_and_each_image_finds_itself(config, photos, beans_photos, effnet):
    first = sync(config, photos, effnet)
    assert (first.added, first.embedded, first.unchanged) == (15, 15, 0)
    change_everything(photos, beans_photos / "spare")

    report = sync(config, photos, effnet)
    counts = (report.added, report.updated, report.renamed, report.removed, report.unchanged)
    assert counts == (2, 1, 2, 1, 11)
    assert report.embedded == 3  # the renamed and moved images reuse their vectors
    assert_mirrors(config, photos, effnet)
    again = sync(config, photos, NOWHERE)  # nothing changed: no model loads
    assert (again.unchanged, again.embedded, again.changed) == (16, 0, False)


def test_a_dry_run_plans_and_changes_nothing(edge, photos, beans_photos, effnet):
    sync(edge, photos, effnet)
    change_everything(photos, beans_photos / "spare")
    plan = sync(edge, photos, NOWHERE, dry_run=True)
    lines = sorted(f"{c.kind} {c.before or ''}>{c.where}" for c in plan.changes)
    assert lines == [
        "added >bean_rust/00-early.jpg",
        "added >healthy/000-first.jpg",
        f"removed >angular_leaf_spot/{plan_name(beans_photos, 0)}",
        f"renamed angular_leaf_spot/{plan_name(beans_photos, 2)}>angular_leaf_spot/renamed.jpg",
        f"renamed angular_leaf_spot/{plan_name(beans_photos, 3)}>healthy/"
        f"{plan_name(beans_photos, 3)}",
        f"updated >angular_leaf_spot/{plan_name(beans_photos, 1)}",
    ]
    assert (plan.embedded, plan.dry_run) == (0, True)
    with connect(edge) as store:
        assert store.info("photos").points == 15
        assert {p.path for p in store.scroll("photos", 100)[0]} == set(
            files(beans_photos / "photos")
        )


def plan_name(beans_photos: Path, i: int) -> str:
    return sorted((beans_photos / "photos" / "angular_leaf_spot").iterdir())[i].name


def test_keep_missing_keeps_points_of_gone_files_but_follows_renames(config, photos, effnet):
    sync(config, photos, effnet)
    gone, renamed = sorted((photos / "healthy").iterdir())[:2]
    gone.unlink()
    renamed.rename(renamed.with_name("new-name.jpg"))
    report = sync(config, photos, NOWHERE, keep_missing=True)
    assert (report.removed, report.renamed, report.unchanged) == (0, 1, 13)
    with connect(config) as store:
        paths = {p.path for p in store.scroll("photos", 100)[0]}
    assert f"healthy/{gone.name}" in paths and f"healthy/{renamed.name}" not in paths


def test_a_file_overwritten_with_garbage_loses_its_stale_point(edge, photos, effnet):
    sync(edge, photos, effnet)
    broken = sorted((photos / "bean_rust").iterdir())[0]
    broken.write_bytes(b"not a jpeg any more")
    report = sync(edge, photos, effnet)
    assert [s.path for s in report.skipped] == [f"bean_rust/{broken.name}"]
    assert report.embedded == 0
    with connect(edge) as store:
        assert store.info("photos").points == 14
        assert f"bean_rust/{broken.name}" not in {p.path for p in store.scroll("photos", 100)[0]}


def test_touching_a_file_embeds_nothing(edge, photos, effnet):
    sync(edge, photos, effnet)
    for file in photos.rglob("*.jpg"):
        os.utime(file)  # new mtimes, same bytes: read once, not embedded
    assert sync(edge, photos, NOWHERE).unchanged == 15


def test_a_new_class_folder_keeps_every_label_id(photos, beans_photos, effnet, tmp_path):
    config = StoreConfig(path=str(tmp_path / "store"))
    sync(config, photos, effnet)
    with connect(config) as store:
        before = {p.path: p.label for p in store.scroll("photos", 100)[0]}
    (photos / "aaa_new_class").mkdir()
    shutil.copy(next((beans_photos / "spare" / "healthy").iterdir()), photos / "aaa_new_class")
    sync(config, photos, effnet)
    with connect(config) as store:
        info = store.info("photos")
        after = {p.path: p.label for p in store.scroll("photos", 100)[0]}
        searcher = Searcher("photos", store=store, embedder=effnet)
        new = next((photos / "aaa_new_class").iterdir())
        only_new = searcher.search(new, k=5, label="aaa_new_class")
    assert info.meta.label_names == ("angular_leaf_spot", "bean_rust", "healthy", "aaa_new_class")
    assert all(after[path] == label for path, label in before.items())
    assert [h.path for h in only_new] == [f"aaa_new_class/{new.name}"] and only_new[0].label == 3


def test_a_sync_never_touches_another_split(beans_photos, effnet, tmp_path):
    config = StoreConfig(path=str(tmp_path / "store"))
    root = tmp_path / "splits"
    for split, cls in (("train", "healthy"), ("test", "bean_rust")):
        shutil.copytree(beans_photos / "photos" / cls, root / split / cls)
    sync(config, root, effnet, "train")
    sync(config, root, effnet, "test")
    gone = sorted((root / "test" / "bean_rust").iterdir())[0]
    gone.unlink()
    assert sync(config, root, NOWHERE, "train").removed == 0
    assert sync(config, root, NOWHERE, "test").removed == 1
    with connect(config) as store:
        points = store.scroll("photos", 100)[0]
    assert sorted(p.split for p in points) == ["test"] * 4 + ["train"] * 5
    assert all(p.path.startswith(f"{p.split}/") for p in points)  # relative to the dataset


def test_an_old_collection_is_searchable_then_migrates(config, photos, effnet):
    """Points as lookalike 0.2 stored them: row ids, paths as given, no fingerprint."""
    source = load_source(str(photos))
    records = [
        ImageRecord(
            point_id(source.name, "train", i),
            "train",
            i,
            r.label,
            r.label_name,
            str(photos / r.path),
            None,
        )
        for i, r in enumerate(source.describe(p) for p in range(len(source)))
    ]
    vectors = effnet.embed([source.decode(p).image for p in range(len(source))])
    with connect(config) as store:
        store.prepare("photos", _meta(source, effnet))
        store.upsert("photos", records, vectors)
        searcher = Searcher("photos", store=store, embedder=effnet)
        hit = searcher.search(photos / records[3].path, k=1)[0]
        assert hit.sha256 is None and searcher.candidate_image(hit) is not None
        with pytest.raises(ModelMismatch, match="older lookalike") as err:
            ingest(source, effnet, store, "photos", keep_missing=True)
        assert err.value.what == "legacy"
    report = sync(config, photos, effnet)
    assert (report.migrated, report.added, report.removed) == (15, 15, 0)
    assert_mirrors(config, photos, effnet)
    with connect(config) as store:
        assert all(p.sha256 for p in store.scroll("photos", 100)[0])


def _meta(source, embedder):
    from lookalike.ingest.worker import collection_meta

    return collection_meta(source, embedder)


def test_a_point_shows_its_own_image_never_what_replaced_it(photos, beans_photos, effnet, tmp_path):
    from fastapi.testclient import TestClient

    from lookalike.cli.web import create_app

    config = StoreConfig(path=str(tmp_path / "store"))
    sync(config, photos, effnet)
    target = sorted((photos / "healthy").iterdir())[0]
    with connect(config) as store:
        searcher = Searcher("photos", store=store, embedder=effnet)
        client = TestClient(create_app(searcher), base_url="http://localhost")
        point = searcher.search(target, k=1)[0]
        own = searcher.candidate_image(point)
        assert own is not None and own.size == (256, 256)
        assert client.get(f"/points/{point.id}/image").status_code == 200
        # Replaced under the same name and not synced yet: the point's image is gone.
        target.write_bytes(next((beans_photos / "spare" / "healthy").iterdir()).read_bytes())
        assert searcher.candidate_image(point) is None
        assert client.get(f"/points/{point.id}/image").status_code == 404
    sync(config, photos, effnet)
    with connect(config) as store:
        searcher = Searcher("photos", store=store, embedder=effnet)
        point = searcher.search(target, k=1)[0]
        assert point.path == f"healthy/{target.name}" and point.score >= 0.99
        assert searcher.candidate_image(point).tobytes() == effnet_image(target).tobytes()


def effnet_image(path):
    from lookalike.images import open_image

    return open_image(str(path))


def write_rows(folder: Path, images: list[bytes]) -> str:
    """A parquet dataset whose rows carry no path of their own: rows identify them."""
    import datasets

    folder.mkdir(exist_ok=True)
    data = datasets.Dataset.from_dict(
        {"image": [{"bytes": b, "path": None} for b in images]},
        features=datasets.Features({"image": datasets.Image()}),
    )
    data.to_parquet(str(folder / "train.parquet"))
    return str(folder)


def test_rows_without_paths_are_checked_by_content(beans_photos, effnet, tmp_path):
    leaves = [p.read_bytes() for p in sorted((beans_photos / "photos").rglob("*.jpg"))][:8]
    spare = next((beans_photos / "spare" / "healthy").iterdir()).read_bytes()
    config = StoreConfig(path=str(tmp_path / "store"))
    dataset = write_rows(tmp_path / "rows", leaves[:6])
    with connect(config) as store:
        first = ingest(load_source(dataset), effnet, store, "rows")
        assert (first.added, first.embedded) == (6, 6)
        # Row 2 replaced, row 0 dropped (every row shifts up), one row appended.
        write_rows(tmp_path / "rows", [leaves[1], spare, *leaves[3:6], leaves[6]])
        report = ingest(load_source(dataset), effnet, store, "rows")
        assert (report.updated, report.removed, report.embedded) == (6, 0, 2)
        points, vectors, _ = store.scroll("rows", 100, with_vectors=True)
    source = load_source(dataset)
    assert {p.row: p.sha256 for p in points} == {r: source.fingerprint(r) for r in range(6)}
    # Each point holds its own content's vector, including those read from shifted rows.
    expected = effnet.embed([source.decode(p.row).image for p in points])
    assert ((vectors * expected).sum(axis=1) > 0.999).all()
