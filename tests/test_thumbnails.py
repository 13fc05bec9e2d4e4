"""Thumbnails and browsing over a real embedded store of 12-MP camera photos: each hit carries
a thumbnail URL, a thumbnail is small, made once and kept beside the store, an edited file gets
a new one; GET /points pages through the collection newest first with the search's filters;
a --grid draws the kept thumbnails and says which originals are gone."""

import io
import json
import os
import shutil

import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient
from PIL import Image

from lookalike.cli.main import cli
from lookalike.cli.web import create_app
from lookalike.embed.embedder import Embedder
from lookalike.ingest import ingest
from lookalike.search import Searcher
from lookalike.source import load_source
from lookalike.store import StoreConfig, connect
from lookalike.thumbnails import FOLDER, Thumbnails, cache_folder
from tests.conftest import COLOURS, make_image, make_photo

# Four photos, each with a date taken but the last; a place to filter on.
TAKEN = {"p0.jpg": "2024-06-01T10:00:00", "p1.jpg": "2025-01-02T08:00:00", "p2.jpg": None}
PLACES = {"p0.jpg": "Alps", "p1.jpg": "coast", "p2.jpg": "Alps", "p3.jpg": "coast"}


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    root = tmp_path_factory.mktemp("camera") / "photos"
    root.mkdir()
    colours = list(COLOURS.values())
    lines = []
    for i, name in enumerate(PLACES):
        image = make_image(colours[i % len(colours)], seed=i, size=64)
        make_photo(image, seed=i).save(root / name, quality=92)
        fields = {"file_name": name, "place": PLACES[name]}
        if TAKEN.get(name):
            fields["taken"] = TAKEN[name]
        lines.append(json.dumps(fields))
    (root / "metadata.jsonl").write_text("\n".join(lines) + "\n")
    return root


@pytest.fixture(scope="module")
def served(tmp_path_factory, photos, tiny_vit):
    store_path = str(tmp_path_factory.mktemp("thumbs") / "store")
    store = connect(StoreConfig(path=store_path))
    emb = Embedder(tiny_vit, device="cpu", precision="fp32")
    ingest(load_source(str(photos)), emb, store, "camera")
    searcher = Searcher("camera", store=store, embedder=emb)
    kept = Thumbnails(cache_folder(store_path))
    client = TestClient(create_app(searcher, thumbnails=kept), base_url="http://localhost")
    yield client, searcher, kept, store_path
    store.close()


def jpeg(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, "JPEG")
    return buf.getvalue()


def test_each_hit_carries_a_small_thumbnail_kept_beside_the_store(served, photos):
    client, _, kept, store_path = served
    query = Image.open(photos / "p0.jpg").resize((400, 300))
    body = client.post("/search", files={"image": ("q.jpg", jpeg(query))}, data={"k": 4}).json()
    assert len(body["hits"]) == 4
    total = 0
    for hit in body["hits"]:
        assert hit["image"] == f"points/{hit['id']}/image"
        assert hit["thumbnail"].startswith(f"points/{hit['id']}/thumbnail?v=")
        assert hit["score"] == round(hit["score"], 6)
        response = client.get("/" + hit["thumbnail"])
        assert response.status_code == 200 and response.headers["content-type"] == "image/jpeg"
        assert "immutable" in response.headers["cache-control"]
        thumb = Image.open(io.BytesIO(response.content))
        assert max(thumb.size) == 320 and thumb.size[0] > thumb.size[1]  # 4:3, as shot
        total += len(response.content)
        assert os.path.isfile(kept.file(hit["sha256"]))
    original = client.get("/" + body["hits"][0]["image"])
    assert total < len(original.content)  # four thumbnails weigh less than one original
    assert kept.folder == os.path.join(store_path, FOLDER)


def test_a_thumbnail_is_made_once(served):
    client, searcher, kept, _ = served
    point = searcher.store.scroll("camera", 1)[0][0]
    first = client.get(f"/points/{point.id}/thumbnail").content
    made = os.stat(kept.file(point.sha256)).st_mtime_ns
    calls = []
    again = kept.jpeg(point.sha256, lambda side: calls.append(side))
    assert again == first and calls == [] and os.stat(kept.file(point.sha256)).st_mtime_ns == made
    stale = client.get(f"/points/{point.id}/thumbnail?v=0000")
    assert stale.headers["cache-control"] == "no-cache"  # a version that is not this content's
    assert client.get("/points/00000000-0000-0000-0000-000000000000/thumbnail").status_code == 404


def test_an_edited_file_gets_a_new_thumbnail(tmp_path, photos, tiny_vit):
    folder = tmp_path / "photos"
    shutil.copytree(photos, folder)
    store = connect(StoreConfig(path=str(tmp_path / "store")))
    emb = Embedder(tiny_vit, device="cpu", precision="fp32")
    ingest(load_source(str(folder)), emb, store, "c")
    kept = Thumbnails(str(tmp_path / "thumbs"))
    client = TestClient(
        create_app(Searcher("c", store=store, embedder=emb), thumbnails=kept),
        base_url="http://localhost",
    )
    before = {p["path"]: p for p in client.get("/points").json()["points"]}["p1.jpg"]
    old = client.get("/" + before["thumbnail"]).content
    Image.new("RGB", (800, 600), (200, 30, 30)).save(folder / "p1.jpg")  # edited in place
    ingest(load_source(str(folder)), emb, store, "c")
    client.app.state.batcher.call(lambda: None)
    after = {p["path"]: p for p in client.get("/points").json()["points"]}["p1.jpg"]
    assert after["id"] == before["id"] and after["thumbnail"] != before["thumbnail"]
    new = Image.open(io.BytesIO(client.get("/" + after["thumbnail"]).content))
    assert new.getpixel((10, 10))[0] > 150 and client.get("/" + before["thumbnail"]).content != old
    assert os.path.isfile(kept.file(before["sha256"])) and os.path.isfile(
        kept.file(after["sha256"])
    )
    store.close()


def test_browse_pages_newest_first_and_takes_filters(served):
    client, _, _, _ = served
    body = client.get("/points", params={"limit": 2}).json()
    assert (body["total"], body["order"], body["offset"]) == (4, "taken", 0)
    assert [p["path"] for p in body["points"]] == ["p1.jpg", "p0.jpg"]  # newest first
    rest = client.get("/points", params={"limit": 2, "offset": 2}).json()["points"]
    assert [p["path"] for p in rest] == ["p2.jpg", "p3.jpg"]  # undated last, by path
    assert all(p["thumbnail"] and p["metadata"]["place"] for p in body["points"] + rest)
    alps = client.get("/points", params={"where": "place=Alps"}).json()
    assert [p["path"] for p in alps["points"]] == ["p0.jpg", "p2.jpg"] and alps["total"] == 2
    none = client.get("/points", params={"where": "place=alps"}).json()
    assert none["total"] == 0 and "some have place=Alps" in none["note"]
    bad = client.get("/points", params={"where": "colour=red"})
    assert bad.status_code == 400 and "colour" in bad.json()["detail"]
    assert client.get("/points", params={"limit": 0}).status_code == 422


def test_grid_draws_kept_thumbnails_and_says_which_original_is_gone(tmp_path, photos, tiny_vit):
    folder = tmp_path / "photos"
    shutil.copytree(photos, folder)
    store_path = str(tmp_path / "store")
    store = connect(StoreConfig(path=store_path))
    ingest(load_source(str(folder)), Embedder(tiny_vit, device="cpu", precision="fp32"), store, "c")
    store.close()
    os.remove(folder / "p3.jpg")
    runner = CliRunner()
    args = ["search", "--qdrant-path", store_path, "--collection", "c", "--model", tiny_vit]
    args += ["--k", "3"]
    result = runner.invoke(cli, [*args, "--grid", str(tmp_path / "g.png"), str(folder / "p2.jpg")])
    assert result.exit_code == 0, result.output
    assert "no image for p3.jpg" in result.stderr and "blank" in result.stderr
    kept = os.listdir(os.path.join(store_path, FOLDER))
    assert len(kept) >= 2  # the hits still on disk have their thumbnails
    assert Image.open(tmp_path / "g.png").size[0] > 4 * 192


def test_a_where_with_no_hit_says_whether_other_capitals_exist(tmp_path, photos, tiny_vit):
    store_path = str(tmp_path / "store")
    store = connect(StoreConfig(path=store_path))
    ingest(load_source(str(photos)), Embedder(tiny_vit, device="cpu", precision="fp32"), store, "c")
    store.close()
    args = ["search", "--qdrant-path", store_path, "--collection", "c", "--model", tiny_vit]
    args += [str(photos / "p0.jpg")]
    result = CliRunner().invoke(cli, [*args, "--where", "place=alps"])
    assert result.exit_code == 0, result.output
    assert "(no hits)" in result.stdout
    assert "no image has place=alps, but some have place=Alps" in result.stderr
    result = CliRunner().invoke(cli, [*args, "--where", "place=moon"])
    assert "no image has place=moon, in these or other capitals" in result.stderr
    result = CliRunner().invoke(cli, [*args, "--where", "place=Alps", "--json"])
    assert "capitals" not in result.stderr  # hits: nothing to say
    hit = json.loads(result.stdout)["hits"][0]
    assert hit["score"] == round(hit["score"], 6)


def test_docs_work_offline(served):
    client = served[0]
    page = client.get("/docs")
    assert page.status_code == 200 and 'href="openapi.json"' in page.text
    assert "cdn" not in page.text.lower() and "http-api.md" in page.text
    assert "/points/{point_id}/thumbnail" in client.get("/openapi.json").json()["paths"]


def test_a_stored_picture_grouped_by_a_field_keeps_its_own_group(served):
    client, searcher, _, _ = served
    by_path = {p["path"]: p for p in client.get("/points").json()["points"]}
    form = {"point": by_path["p0.jpg"]["id"], "group_by": "place", "k": "5"}
    body = client.post("/search", data=form).json()
    assert body["excluded_self"] and by_path["p0.jpg"]["id"] not in [h["id"] for h in body["hits"]]
    # p0's place (Alps) is still there, with p2, the other photo taken there.
    assert sorted(h["metadata"]["place"] for h in body["hits"]) == ["Alps", "coast"]
