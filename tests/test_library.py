"""A photo library as phones and cameras leave it: JPEGs and HEICs with EXIF dates, cameras
and GPS, an AVIF, edited copies of some photos, a RAW file and other files lookalike does
not read. Ingested with the real efficientnet-lite0, on both embedded engines: the EXIF
fields are stored, date and place filters agree with brute force, every unread file is
named with its reason, and the calibrated threshold finds the copies and nothing else."""

from __future__ import annotations

import datetime
import io
import json
import shutil
from pathlib import Path

import pillow_heif
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from conftest import make_photo
from PIL import Image

from lookalike.augment import COPIES
from lookalike.cli.main import cli
from lookalike.query import distance_m
from lookalike.store import StoreConfig, connect

ZURICH, KAMPALA, LISBON = (47.3769, 8.5417), (0.3476, 32.5825), (38.7223, -9.1393)
CAMERAS = [("Apple", "iPhone 15 Pro", "iPhone 15 Pro back camera 6.765mm f/1.78"),
           ("Canon", "Canon EOS R6", "RF24-105mm F4 L IS USM"),
           ("Google", "Pixel 8", None)]  # fmt: skip
PLACES = [ZURICH, KAMPALA, LISBON, None]  # None: no GPS fix
N = 24


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def _exif(i: int) -> Image.Exif:
    make, model, lens = CAMERAS[i % 3]
    exif = Image.Exif()
    exif[0x010F], exif[0x0110] = make, model
    sub = exif.get_ifd(0x8769)
    sub[0x9003] = f"2024:{1 + i % 12:02d}:{1 + (7 * i) % 28:02d} {8 + i % 12:02d}:30:00"
    if lens:
        sub[0xA434] = lens
    place = PLACES[i % 4]
    if place:  # a few hundred metres to a few km apart around each city
        lat, lon = place[0] + 0.01 * (i % 5), place[1] - 0.013 * (i % 3)
        gps = exif.get_ifd(0x8825)
        gps[1], gps[3] = ("N" if lat >= 0 else "S"), ("E" if lon >= 0 else "W")
        gps[2], gps[4] = _dms(abs(lat)), _dms(abs(lon))
    return exif


def _dms(degrees: float) -> tuple[float, float, float]:
    d = int(degrees)
    m = int((degrees - d) * 60)
    return float(d), float(m), round((degrees - d - m / 60) * 3600, 4)


@pytest.fixture(scope="module")
def library(tmp_path_factory, beans_dir) -> Path:
    pillow_heif.register_heif_opener()  # the plugin writes the HEIC photos
    root = tmp_path_factory.mktemp("library")
    table = pq.read_table(Path(beans_dir) / "data" / "train-00000-of-00001.parquet")
    rows = table.slice(0, 400).to_pylist()[::16][:N]  # leaves of all three classes
    for i, row in enumerate(rows):
        leaf = Image.open(io.BytesIO(row["image"]["bytes"]))
        image = make_photo(leaf, (1024, 768), seed=i)  # camera-like: large, with sensor noise
        if i < 3:
            image.save(root / f"IMG_{i:04d}.HEIC", exif=_exif(i), quality=90)
        elif i == 3:
            image.save(root / f"IMG_{i:04d}.avif", exif=_exif(i), quality=90)
        elif i == 4:
            image.save(root / f"scan_{i:04d}.jpg", quality=92)  # no EXIF at all
        else:
            image.save(root / f"IMG_{i:04d}.jpg", exif=_exif(i), quality=92)
    # Copies as people make them, one of each kind, of JPEG photos.
    (root / "copies").mkdir()
    for n, (name, edit) in enumerate(COPIES.items()):
        original = Image.open(root / f"IMG_{10 + n:04d}.jpg")
        (root / "copies" / f"IMG_{10 + n:04d}-{name}.jpg").write_bytes(edit(original))
    (root / "IMG_9000.DNG").write_bytes(b"II*\x00" + bytes(2000))  # RAW: refused in words
    (root / "logo.svg").write_text("<svg xmlns='http://www.w3.org/2000/svg'/>")
    (root / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    user = {"file_name": "IMG_0005.jpg", "taken": "2023-12-24T18:00:00Z", "place": "home"}
    (root / "metadata.jsonl").write_text(json.dumps(user) + "\n")
    return root


COPY_PAIRS = {frozenset((f"IMG_{10 + n:04d}.jpg", f"copies/IMG_{10 + n:04d}-{name}.jpg"))
              for n, name in enumerate(COPIES)}  # fmt: skip


@pytest.fixture(scope="module", params=["edge", "local"])
def ingested(request, library, effnet_dir, tmp_path_factory):
    store = tmp_path_factory.mktemp(f"store-{request.param}")
    args = ["--qdrant-path", store, "--collection", "lib", "--embedded-engine", request.param]
    result = run("ingest", "--dataset", library, "--model", effnet_dir, "--json", *args)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout), args, store


def payloads(store: Path) -> dict[str, dict]:
    with connect(StoreConfig(path=str(store))) as s:
        return {p.path: p.metadata for p in s.scroll("lib", 1000)[0]}


def test_every_file_is_read_or_named_with_its_reason(ingested):
    report, _, store = ingested
    skipped = {s["path"]: s["reason"] for s in report["skipped_items"]}
    assert set(skipped) == {"IMG_9000.DNG", "logo.svg", "broken.jpg"}
    assert "camera RAW (.dng)" in skipped["IMG_9000.DNG"]
    assert "vector drawing" in skipped["logo.svg"]
    stored = payloads(store)
    assert len(stored) == N + len(COPIES)  # HEIC and AVIF included
    assert {"IMG_0000.HEIC", "IMG_0003.avif", "scan_0004.jpg"} <= set(stored)


def test_exif_fields_are_stored_and_the_users_own_win(ingested):
    stored = payloads(ingested[2])
    heic = stored["IMG_0001.HEIC"]
    assert heic["taken"] == "2024-02-08T09:30:00Z"
    assert (heic["camera_make"], heic["camera_model"]) == ("Canon", "Canon EOS R6")
    assert heic["lens"] == "RF24-105mm F4 L IS USM"
    assert (heic["width"], heic["height"]) == (1024, 768)
    lat, lon = KAMPALA[0] + 0.01, KAMPALA[1] - 0.013
    assert heic["location"] == pytest.approx({"lon": lon, "lat": lat}, abs=1e-5)
    assert "location" not in stored["IMG_0007.jpg"]  # no GPS fix written
    assert "taken" not in stored["scan_0004.jpg"]  # no EXIF at all
    assert stored["IMG_0005.jpg"]["taken"] == "2023-12-24T18:00:00Z"  # metadata.jsonl wins
    assert stored["IMG_0005.jpg"]["camera_make"] == "Google"  # the rest from EXIF


def _search(args, *extra) -> set[str]:
    query = ["search", Path(__file__).parent / "fixtures" / "leaf.jpg", "--k", "100", "--json"]
    result = run(*query, *args, *extra)
    assert result.exit_code == 0, result.output
    return {h["path"] for h in json.loads(result.stdout)["hits"]}


def _when(text: str) -> datetime.datetime:
    return datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))


def test_a_date_range_filter_agrees_with_brute_force(ingested):
    _, args, store = ingested
    stored = payloads(store)
    start, end = _when("2024-06-01T00:00:00Z"), _when("2024-09-01T00:00:00Z")
    expected = {p for p, m in stored.items() if "taken" in m and start <= _when(m["taken"]) < end}
    assert 3 <= len(expected) < len(stored)
    assert _search(args, "--where", "taken>=2024-06-01", "--where", "taken<2024-09") == expected
    # A day means the whole day; <= a month, up to its end.
    day = {p for p, m in stored.items() if m.get("taken", "").startswith("2024-02-08")}
    assert _search(args, "--where", "taken=2024-02-08") == day
    until = {p for p, m in stored.items() if "taken" in m and _when(m["taken"]) < start}
    assert _search(args, "--where", "taken<=2024-05") == until


def test_a_geo_filter_agrees_with_brute_force(ingested):
    _, args, store = ingested
    stored = payloads(store)
    centre = {"lat": ZURICH[0], "lon": ZURICH[1]}
    placed = {p: m["location"] for p, m in stored.items() if "location" in m}
    expected = {p for p, where in placed.items() if distance_m(centre, where) <= 3000}
    assert 2 <= len(expected) < len(placed)
    assert _search(args, "--near", f"{ZURICH[0]},{ZURICH[1]}", "--within", "3km") == expected
    leaf = Path(__file__).parent / "fixtures" / "leaf.jpg"
    result = run("search", leaf, "--near", "47,8", *args)  # --within forgotten: said

    assert result.exit_code != 0 and "--within" in result.output


def test_the_calibrated_threshold_finds_the_copies_and_no_false_pairs(ingested, effnet_dir):
    _, args, _ = ingested
    info = json.loads(run("info", "--json", *args).stdout)
    assert info["model"] == effnet_dir  # a local --model wins over the photo default
    calibration = info["duplicates"]
    assert calibration["sample"] >= 8 and 0.5 <= calibration["threshold"] < 0.99
    result = run("duplicates", "--json", *args)
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    found = {frozenset((p["a"]["path"], p["b"]["path"])) for p in lines[:-1]}
    assert lines[-1]["threshold_source"] == "calibrated"
    assert found == COPY_PAIRS, [(p["score"], p["a"]["path"], p["b"]["path"]) for p in lines]
    # search --min-score dup: a photo's copies, and nothing else.
    query = ["search", Path(_library_of(args)) / "IMG_0011.jpg", "--k", "10", "--json"]
    hits = json.loads(run(*query, "--min-score", "dup", "--include-self", *args).stdout)["hits"]
    assert {h["path"] for h in hits} == {"IMG_0011.jpg", "copies/IMG_0011-half-size.jpg"}


def _library_of(args) -> str:
    with connect(StoreConfig(path=str(args[1]))) as s:
        return s.info("lib").meta.dataset


def test_no_exif_stores_none_of_it(library, tiny_vit, tmp_path):
    folder = shutil.copytree(library, tmp_path / "lib")
    args = ["--qdrant-path", tmp_path / "s", "--collection", "lib", "--model", tiny_vit]
    assert run("ingest", "--dataset", folder, "--no-exif", *args).exit_code == 0
    stored = payloads(tmp_path / "s")
    assert stored["IMG_0006.jpg"] == {}
    assert stored["IMG_0005.jpg"] == {"taken": "2023-12-24T18:00:00Z", "place": "home"}


def test_a_dry_run_names_the_collection_and_model_it_would_create(library, tmp_path):
    result = run("ingest", "--dataset", library, "--dry-run", "--qdrant-path", tmp_path / "s")
    # Offline, the hub model cannot be had: the line says which one it would have been.
    assert f"would create collection {library.name!r} with model openai/clip-vit-base-patch32" in (
        result.stderr
    )


def test_post_search_takes_dates_and_places_as_the_command_line_does(ingested):
    from fastapi.testclient import TestClient

    from lookalike.cli.web import create_app
    from lookalike.search import Searcher

    _, args, store = ingested
    expected = _search(
        args, "--where", "taken>=2024-06-01", "--near", "47.3769,8.5417", "--within", "3km"
    )
    leaf = (Path(__file__).parent / "fixtures" / "leaf.jpg").read_bytes()
    engine = args[-1]
    with connect(StoreConfig(path=str(store), engine=engine)) as s:
        app = create_app(Searcher("lib", store=s), max_upload=2_000_000, max_pixels=20_000_000)
        form = {"k": "100", "where": "taken>=2024-06-01", "near": "47.3769,8.5417", "within": "3km"}
        with TestClient(app, base_url="http://localhost") as client:
            answer = client.post("/search", files={"image": ("q.jpg", leaf)}, data=form)
            assert answer.status_code == 200, answer.text
            assert {h["path"] for h in answer.json()["hits"]} == expected
            form["within"] = "far"
            answer = client.post("/search", files={"image": ("q.jpg", leaf)}, data=form)
            assert answer.status_code == 400 and "5km" in answer.json()["detail"]
