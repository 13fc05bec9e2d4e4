"""Application queries as a user runs them: a catalogue folder with its own fields, searched
with filters, a cut-off, groups, examples and whole folders of new photos; and the requests a
Qdrant server receives for them (a stub records them)."""

from __future__ import annotations

import csv
import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from lookalike.cli.main import cli
from lookalike.query import Examples, QueryOptions
from lookalike.store import StoreConfig, connect
from tests.conftest import make_image
from tests.stub_qdrant import StubQdrant
from tests.test_server_contract import COLLECTION, POINT, fresh_server


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def search(*args):
    """A search whose query may be a stored image: kept as its own first hit, as the brute
    force over every point has it."""
    return run("search", *args, "--include-self")


@pytest.fixture(scope="module")
def shop(tmp_path_factory, image_folder, tiny_vit):
    """The 12 colour images as a catalogue: two images per sku, a price and a year each."""
    root = tmp_path_factory.mktemp("shop")
    folder = Path(shutil.copytree(image_folder, root / "catalogue"))
    names = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*.jpg"))
    lines = [
        json.dumps({"file_name": n, "sku": f"S{i // 2}", "price": 10.0 + i, "year": 2020 + i % 3})
        for i, n in enumerate(names)
    ]
    (folder / "metadata.jsonl").write_text("\n".join(lines) + "\n")
    store = ["--qdrant-path", root / "store", "--collection", "shop"]
    args = ["ingest", "--dataset", folder, "--model", tiny_vit, "--device", "cpu", *store]
    assert run(*args).exit_code == 0
    return folder, store


def hits_of(result) -> list[dict]:
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)["hits"]


def test_where_min_score_and_group_by(shop):
    folder, store = shop
    query = folder / "red" / "red_0.jpg"
    hits = hits_of(search(query, "--where", "price>=15", "--k", 12, "--json", *store))
    assert hits and all(h["metadata"]["price"] >= 15 for h in hits) and len(hits) == 7
    both = ["--where", "year=2020,2021", "--where", "sku!=S0"]
    hits = hits_of(search(query, *both, "--k", 12, "--json", *store))
    assert {h["metadata"]["year"] for h in hits} <= {2020, 2021}
    assert "S0" not in {h["metadata"]["sku"] for h in hits} and len(hits) == 6
    everything = hits_of(search(query, "--k", 12, "--json", *store))
    cut = (everything[4]["score"] + everything[5]["score"]) / 2
    hits = hits_of(search(query, "--min-score", cut, "--k", 12, "--json", *store))
    assert [h["id"] for h in hits] == [h["id"] for h in everything[:5]]
    hits = hits_of(search(query, "--group-by", "sku", "--k", 12, "--json", *store))
    skus = [h["metadata"]["sku"] for h in hits]
    assert len(skus) == len(set(skus)) == 6
    first = {}
    for h in everything:
        first.setdefault(h["metadata"]["sku"], h["id"])
    assert [h["id"] for h in hits] == list(first.values())


def test_filter_json_and_the_info_listing(shop):
    folder, store = shop
    flt = json.dumps({"should": [{"key": "sku", "match": {"any": ["S1", "S4"]}}]})
    hits = hits_of(search(folder / "red" / "red_0.jpg", "--filter", flt, "--json", *store))
    assert sorted(h["metadata"]["sku"] for h in hits) == ["S1", "S1", "S4", "S4"]
    info = run("info", *store)
    assert "price (float)" in info.stdout and "sku (keyword)" in info.stdout
    assert json.loads(run("info", "--json", *store).stdout)["payload_indexes"]["year"] == "integer"


@pytest.mark.parametrize(
    "args, message",
    [
        (["--where", "brand=acme"], "Error: no point has a field 'brand'; fields: label"),
        (["--where", "year=recent"], "Error: year holds whole numbers, not 'recent'"),
        (["--where", "sku>=3"], "Error: sku holds text: >= needs numbers"),
        (["--filter", "{must: []}"], "Error: the filter is not JSON"),
        (["--group-by", "price"], "Error: group by a field of text or whole numbers"),
        (["--unlike", "train:0"], "Error: --unlike goes with --like or --id"),
        (["--json", "--csv"], "Error: pass --json or --csv, not both"),
    ],
)
def test_query_mistakes_are_one_clear_line(shop, args, message):
    folder, store = shop
    result = search(folder / "red" / "red_0.jpg", *args, *store)
    assert result.exit_code != 0 and message in result.output, result.output
    assert "Traceback" not in result.output


def test_search_by_id_and_more_like_these(shop):
    folder, store = shop
    everything = hits_of(search(folder / "red" / "red_0.jpg", "--k", 12, "--json", *store))
    own = everything[0]
    assert own["path"] == "red/red_0.jpg" and own["score"] > 0.999
    by_id = hits_of(run("search", "--id", own["id"], "--k", 11, "--json", *store))
    assert [h["id"] for h in by_id] == [h["id"] for h in everything[1:]]  # all but itself
    np.testing.assert_allclose(
        [h["score"] for h in by_id], [h["score"] for h in everything[1:]], atol=1e-4
    )
    like = ["--like", own["id"], "--like", folder / "green" / "green_0.jpg"]
    hits = hits_of(run("search", *like, "--unlike", "train:0", "--k", 4, "--json", *store))
    assert own["id"] not in {h["id"] for h in hits} and len(hits) == 4
    assert "green/green_0.jpg" not in {h["path"] for h in hits}  # an example, though a file


def test_a_folder_of_queries_as_csv_rows(shop, tmp_path):
    folder, store = shop
    new = tmp_path / "new"
    new.mkdir()
    shutil.copy(folder / "blue" / "blue_1.jpg", new / "again.jpg")
    make_image((250, 250, 10), seed=99).save(new / "yellow.jpg")
    (new / "sub").mkdir()
    shutil.copy(folder / "red" / "red_2.jpg", new / "sub" / "red.jpg")
    (new / "broken.jpg").write_bytes(b"not a jpeg")
    result = run("search", new, "--k", 1, "--min-score", 0.999, "--csv", *store)
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    by_query = {Path(r["query"]).name: r for r in rows}
    assert set(by_query) == {"again.jpg", "yellow.jpg", "red.jpg"}
    assert by_query["again.jpg"]["path"] == "blue/blue_1.jpg"  # already in the catalogue
    assert by_query["red.jpg"]["path"] == "red/red_2.jpg"
    assert by_query["yellow.jpg"]["rank"] == ""  # new: nothing that close
    assert json.loads(by_query["again.jpg"]["fields"])["sku"]
    assert "skipped" in result.stderr and "broken.jpg: not a readable image" in result.stderr
    assert "1 of 4 query images could not be read" in result.stderr


@pytest.fixture
def stub():
    def behave(method, path, n):
        if path.endswith("/points/query/groups"):
            return {"groups": [{"id": "S1", "hits": [POINT]}]}
        if path.endswith("/points/query"):
            return {"points": [POINT]}
        if method == "POST" and path.endswith("/points"):  # retrieve: the examples exist
            return [{"id": POINT["id"], "payload": {}}]
        if method == "GET" and path == "/collections/c":
            return COLLECTION
        return fresh_server(method, path, n)

    server = StubQdrant(behave)
    yield server
    server.close()


def test_server_requests_carry_filter_threshold_groups_and_recommend(stub):
    config = StoreConfig(url=stub.url, retries=0, check_compatibility=False)
    q = np.ones((1, 4), np.float32)
    flt = {"must": [{"key": "sku", "match": {"value": "S1"}}]}
    with connect(config) as store:
        store.query("c", q, 5, label=1, options=QueryOptions(filter=flt, min_score=0.5))
        grouped = store.query("c", q, 3, options=QueryOptions(group_by="sku"))
        examples = Examples((POINT["id"], np.ones(4)), (np.eye(4)[0],), "average_vector")
        store.recommend("c", examples, 7, options=QueryOptions(min_score=0.1))
        nearest = Examples((POINT["id"],))  # the server scores it sigmoid-scaled
        [hit] = store.recommend("c", nearest, 2, options=QueryOptions(min_score=0.5))
    (search,) = stub.bodies("POST", "/collections/c/points/query/batch")
    first = search["searches"][0]
    assert first["score_threshold"] == 0.5
    assert first["filter"] == {"must": [flt, {"must": [{"key": "label", "match": {"value": 1}}]}]}
    (groups,) = stub.bodies("POST", "/collections/c/points/query/groups")
    assert (groups["group_by"], groups["group_size"], groups["limit"]) == ("sku", 1, 3)
    assert grouped[0][0].id == POINT["id"]
    reco, best = stub.bodies("POST", "/collections/c/points/query")
    assert best["score_threshold"] == pytest.approx(0.5 * (0.5 / 1.5 + 1))  # cosine 0.5
    y = 2 * POINT["score"] - 1
    assert hit.score == pytest.approx(y / (1 - abs(y)))  # back to a cosine similarity
    assert reco["query"]["recommend"]["strategy"] == "average_vector"
    assert reco["query"]["recommend"]["positive"][0] == POINT["id"]
    assert reco["query"]["recommend"]["positive"][1] == pytest.approx([0.5] * 4)
    assert reco["limit"] == 7 and reco["score_threshold"] == 0.1
    assert reco["query"]["recommend"]["negative"] == [[1.0, 0.0, 0.0, 0.0]]
    assert reco["filter"]["must_not"][0]["has_id"] == [POINT["id"]]  # never the example itself


@pytest.fixture(scope="module")
def api(shop):
    from fastapi.testclient import TestClient

    from lookalike.cli.searching import open_searcher
    from lookalike.cli.web import create_app
    from lookalike.embed import ModelSettings

    folder, store = shop
    config = StoreConfig(path=str(store[1]))
    with open_searcher(config, "shop", ModelSettings(device="cpu")) as searcher:
        yield TestClient(create_app(searcher), base_url="http://localhost"), folder


def test_http_search_with_filter_threshold_and_groups(api):
    client, folder = api
    files = {"image": ("q.jpg", (folder / "red" / "red_0.jpg").read_bytes(), "image/jpeg")}
    form = {"k": "12", "where": ["year=2021,2022", "price<=19"], "group_by": "sku"}
    response = client.post("/search", files=files, data=form)
    assert response.status_code == 200, response.text
    hits = response.json()["hits"]
    assert hits and all(h["metadata"]["year"] in (2021, 2022) for h in hits)
    assert all(h["metadata"]["price"] <= 19 for h in hits)
    assert len({h["metadata"]["sku"] for h in hits}) == len(hits)
    flt = json.dumps({"must": [{"key": "sku", "match": {"value": "S2"}}]})
    response = client.post("/search", files=files, data={"filter": flt, "min_score": "-1"})
    assert [h["metadata"]["sku"] for h in response.json()["hits"]] == ["S2", "S2"]
    response = client.post("/search", files=files, data={"where": "brand=x"})
    assert response.status_code == 400 and "no point has a field 'brand'" in response.text
    assert client.get("/health").json()["fields"]["price"] == "float"


def test_http_recommend_by_ids(api):
    client, folder = api
    files = {"image": ("q.jpg", (folder / "red" / "red_0.jpg").read_bytes(), "image/jpeg")}
    everything = client.post("/search", files=files, data={"k": "12"}).json()["hits"]
    own, other = everything[0]["id"], everything[-1]["id"]
    body = {"positive": [own], "negative": [other], "k": 12, "strategy": "best_score"}
    hits = client.post("/recommend", json=body).json()["hits"]
    assert {own, other}.isdisjoint(h["id"] for h in hits) and len(hits) == 10
    assert hits[0]["id"] == everything[1]["id"]
    body = {"positive": [own], "where": ["year=2020"], "k": 3}
    hits = client.post("/recommend", json=body).json()["hits"]
    assert hits and all(h["metadata"]["year"] == 2020 for h in hits)
    missing = {"positive": ["00000000-0000-0000-0000-000000000001"]}
    response = client.post("/recommend", json=missing)
    assert response.status_code == 400 and "no point with id" in response.text
    # Examples are stored ids only: a path is refused before anything reads it.
    assert client.post("/recommend", json={"positive": ["/etc/passwd"]}).status_code == 422
