"""The HTTP API over a real embedded store: every endpoint, every refusal, concurrency."""

import io
from concurrent.futures import ThreadPoolExecutor

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from lookalike.cli.web import create_app
from lookalike.embed.embedder import Embedder
from lookalike.ingest import ingest
from lookalike.search import Searcher
from lookalike.source import load_source
from lookalike.store import StoreConfig, connect
from tests.conftest import COLOURS, make_image


@pytest.fixture(scope="module")
def searcher(tmp_path_factory, image_folder, tiny_vit):
    store = connect(StoreConfig(path=str(tmp_path_factory.mktemp("api") / "store")))
    emb = Embedder(tiny_vit, device="cpu", precision="fp32")
    ingest(load_source(str(image_folder)), emb, store, "colours")
    yield Searcher("colours", store=store, embedder=emb)
    store.close()


@pytest.fixture(scope="module")
def client(searcher):
    app = create_app(searcher, max_upload=200_000, max_pixels=1_000_000)
    return TestClient(app, base_url="http://localhost")


def png(colour=COLOURS["blue"], size=48, seed=7) -> bytes:
    buf = io.BytesIO()
    make_image(colour, seed=seed, size=size).save(buf, "PNG")
    return buf.getvalue()


def solid_png(size: int) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (size, size), (9, 9, 9)).save(buf, "PNG")
    return buf.getvalue()


def post(client, data: bytes, name="q.png", **form):
    return client.post("/search", files={"image": (name, data, "image/png")}, data=form)


def test_search_returns_hits_like_the_cli(client, searcher):
    response = post(client, png(), k="3")
    assert response.status_code == 200
    hits = response.json()["hits"]
    assert [h["rank"] for h in hits] == [1, 2, 3]
    assert set(hits[0]) == {
        *("rank", "id", "score", "label", "label_name", "split", "row", "path"),
        *("sha256", "metadata", "image", "thumbnail"),
    }
    assert hits[0]["label_name"] == "blue"
    expected = searcher.search(Image.open(io.BytesIO(png())), k=3)
    assert [h["id"] for h in hits] == [h.id for h in expected]


def test_a_stored_point_as_the_query_does_not_find_itself(client):
    clicked = post(client, png(), k="1").json()["hits"][0]
    body = client.post("/search", data={"point": clicked["id"], "k": "3"}).json()
    assert (body["query_label_name"], body["excluded_self"]) == ("blue", True)
    assert clicked["id"] not in [h["id"] for h in body["hits"]] and len(body["hits"]) == 3
    kept = client.post("/search", data={"point": clicked["id"], "include_self": "true"}).json()
    assert kept["hits"][0]["id"] == clicked["id"] and not kept["excluded_self"]


def test_a_row_of_the_dataset_as_the_query(client):
    body = client.post("/search", data={"query": "train:0", "k": "2"}).json()
    assert body["query"] == "train:0" and body["query_label_name"] == "blue"
    assert body["excluded_self"] and len(body["hits"]) == 2
    image = client.get("/rows/train/0/image")
    assert image.status_code == 200 and image.headers["content-type"] == "image/jpeg"
    assert client.get("/rows/test/0/image").status_code == 404


@pytest.mark.parametrize(
    "form, files, detail",
    [
        ({}, None, "send one query"),
        ({"query": "train:0"}, {"image": ("q.png", png(), "image/png")}, "send one query"),
        ({"query": "/etc/passwd"}, None, "is not SPLIT:ROW"),
        ({"query": "train:999"}, None, "row 999 is out of range"),
        ({"point": "00000000-0000-0000-0000-000000000000"}, None, "no image for point"),
    ],
)
def test_one_query_of_a_known_kind(client, form, files, detail):
    response = client.post("/search", data=form, files=files)
    assert response.status_code == 400 and detail in response.json()["detail"]


def test_the_page_has_an_icon(client):
    assert 'rel="icon"' in client.get("/").text
    icon = client.get("/favicon.svg")
    assert icon.status_code == 200 and icon.headers["content-type"] == "image/svg+xml"


def test_label_filter(client):
    hits = post(client, png(), k="10", label="red").json()["hits"]
    assert len(hits) == 4 and {h["label_name"] for h in hits} == {"red"}


def test_point_image_is_the_candidate(client):
    hit = post(client, png(), k="1").json()["hits"][0]
    response = client.get(f"/points/{hit['id']}/image")
    assert response.status_code == 200 and response.headers["content-type"] == "image/jpeg"
    image = Image.open(io.BytesIO(response.content))
    assert image.size == (48, 48)
    r, g, b = image.resize((1, 1)).getpixel((0, 0))
    assert b > r and b > g  # a blue candidate


def test_health_and_page_and_schema(client):
    health = client.get("/health").json()
    assert health == {
        "status": "ok",
        "collection": "colours",
        "points": 12,
        "model": health["model"],
        "labels": ["blue", "green", "red"],
        "fields": health["fields"],
        "text": False,  # a ViT: no text queries
    }
    assert health["fields"]["label_name"] == "keyword"  # what the page's filter box names
    page = client.get("/")
    assert page.status_code == 200 and '<input type="file"' in page.text
    schema = client.get("/openapi.json").json()
    assert {"/search", "/health", "/points/{point_id}/image"} <= set(schema["paths"])
    assert client.get("/docs").status_code == 200


@pytest.mark.parametrize(
    "data, name, form, status, detail",
    [
        (b"GIF89a but not really", "q.gif", {}, 400, "upload: not a readable image"),
        (b"", "q.png", {}, 400, "upload: empty file"),
        (solid_png(1200), "q.png", {}, 400, "too many pixels"),  # small file, 1.4 MP
        (png(), "q.png", {"label": "purple"}, 400, "unknown label 'purple'"),
        (png(), "evil.exe", {}, 200, None),  # judged by content, not by name
    ],
    ids=["not-an-image", "empty", "too-many-pixels", "unknown-label", "odd-name"],
)
def test_refusals_are_clear(client, data, name, form, status, detail):
    response = post(client, data, name=name, **form)
    assert response.status_code == status
    if detail:
        assert detail in response.json()["detail"]


def test_too_large_upload_is_413(client):
    big = bytes(300_000)
    response = post(client, big)
    assert response.status_code == 413 and "larger than" in response.json()["detail"]


@pytest.mark.parametrize("k", ["0", "1001", "five"])
def test_bad_k_is_refused(client, k):
    assert post(client, png(), k=k).status_code == 422


@pytest.mark.parametrize("point", ["not-a-uuid", "..%2F..%2Fetc%2Fpasswd"])
def test_point_ids_are_never_paths(client, point):
    assert client.get(f"/points/{point}/image").status_code in (404, 422)


def test_unknown_point_is_404(client):
    response = client.get("/points/00000000-0000-0000-0000-000000000000/image")
    assert response.status_code == 404


def test_concurrent_requests_get_their_own_answers(client):
    queries = {name: png(colour, seed=20 + i) for i, (name, colour) in enumerate(COLOURS.items())}

    def top_label(name):
        return post(client, queries[name], k="1").json()["hits"][0]["label_name"]

    names = list(queries) * 6
    with ThreadPoolExecutor(6) as pool:
        assert list(pool.map(top_label, names)) == names
