"""Your own fields on each point: an image folder's metadata.jsonl / metadata.csv, a dataset's
other columns; shown by search, --json and the HTTP API; refused when not plain JSON."""

from __future__ import annotations

import datetime
import json
import shutil
from pathlib import Path

import datasets
import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient

from lookalike.cli.main import cli
from lookalike.errors import DatasetLoadError
from lookalike.source import load_source
from lookalike.store import StoreConfig, connect

FIELDS = {
    "red/red_0.jpg": {"sku": "R-000", "price": 9.5, "tags": ["warm", "bright"], "size": {"w": 48}},
    "green/green_1.jpg": {"sku": "G-001", "price": 12, "tags": [], "note": None},
}


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


@pytest.fixture
def catalogue(image_folder, tmp_path) -> Path:
    folder = Path(shutil.copytree(image_folder, tmp_path / "catalogue"))
    lines = [json.dumps({"file_name": name, **fields}) for name, fields in FIELDS.items()]
    (folder / "metadata.jsonl").write_text("\n".join(lines) + "\n")
    return folder


def stored(store_path: Path, collection: str = "c") -> dict[str, dict]:
    with connect(StoreConfig(path=str(store_path))) as store:
        return {p.path: p.metadata for p in store.scroll(collection, 100)[0]}


def ingest(folder, tiny_vit, store, *extra):
    args = ["ingest", "--dataset", folder, "--model", tiny_vit, "--device", "cpu", "--json"]
    return run(*args, "--qdrant-path", store, "--collection", "c", *extra)


def test_folder_metadata_round_trips_to_search_json_and_the_api(catalogue, tiny_vit, tmp_path):
    result = ingest(catalogue, tiny_vit, tmp_path / "store")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["payload_columns"] == ["sku", "price", "tags", "size", "note"]
    metadata = stored(tmp_path / "store")
    assert metadata["red/red_0.jpg"] == FIELDS["red/red_0.jpg"]
    assert metadata["green/green_1.jpg"] == FIELDS["green/green_1.jpg"]
    assert metadata["blue/blue_2.jpg"] == {}  # not in the metadata file: no fields

    query = catalogue / "red" / "red_0.jpg"
    search = ["search", query, "--k", "1", "--qdrant-path", tmp_path / "store", "--collection", "c"]
    hit = json.loads(run(*search, "--json", "--include-self").stdout)["hits"][0]
    assert (hit["path"], hit["metadata"]) == ("red/red_0.jpg", FIELDS["red/red_0.jpg"])
    table = run(*search, "--include-self").stdout
    assert 'sku="R-000" price=9.5 tags=["warm", "bright"]' in table

    from lookalike.cli.searching import open_searcher
    from lookalike.cli.web import create_app
    from lookalike.embed import ModelSettings

    config = StoreConfig(path=str(tmp_path / "store"))
    with open_searcher(config, "c", ModelSettings(device="cpu")) as searcher:
        client = TestClient(create_app(searcher), base_url="http://localhost")
        files = {"image": ("q.jpg", query.read_bytes(), "image/jpeg")}
        hits = client.post("/search", files=files, data={"k": "1"}).json()["hits"]
    assert hits[0]["metadata"] == FIELDS["red/red_0.jpg"]


def test_payload_columns_choose_and_a_metadata_edit_is_an_update(catalogue, tiny_vit, tmp_path):
    assert ingest(catalogue, tiny_vit, tmp_path / "s", "--payload-columns", "sku").exit_code == 0
    assert stored(tmp_path / "s")["red/red_0.jpg"] == {"sku": "R-000"}
    (catalogue / "metadata.jsonl").write_text('{"file_name": "red/red_0.jpg", "sku": "R-9"}\n')
    report = json.loads(
        ingest(catalogue, tiny_vit, tmp_path / "s", "--payload-columns", "sku").stdout
    )
    assert (report["updated"], report["embedded"]) == (2, 0)  # red_0 changed, green_1 lost sku
    assert stored(tmp_path / "s")["red/red_0.jpg"] == {"sku": "R-9"}
    none = json.loads(ingest(catalogue, tiny_vit, tmp_path / "s", "--payload-columns", "").stdout)
    assert none["payload_columns"] == [] and stored(tmp_path / "s")["red/red_0.jpg"] == {}


def test_a_csv_metadata_file_keeps_ids_as_text_and_numbers_as_numbers(image_folder, tmp_path):
    folder = Path(shutil.copytree(image_folder, tmp_path / "csv"))
    (folder / "metadata.csv").write_text(
        "file_name,sku,price,colour\nred/red_0.jpg,00123,9.50,red\n./blue/blue_1.jpg,00456,,blue\n"
    )
    source = load_source(str(folder))
    by_path = {source.paths[i]: source.describe(i).metadata for i in range(len(source))}
    assert by_path["red/red_0.jpg"] == {"sku": "00123", "price": 9.5, "colour": "red"}
    assert by_path["blue/blue_1.jpg"] == {"sku": "00456", "price": None, "colour": "blue"}


@pytest.mark.parametrize(
    "line, column, what",
    [
        ('{"file_name": "red/red_0.jpg", "price": NaN}', "price", "not a finite number"),
        ('{"file_name": "red/red_0.jpg", "size": {"w": Infinity}}', "size", "not a finite"),
    ],
)
def test_values_that_are_not_plain_json_are_refused_before_anything_is_stored(
    catalogue, tiny_vit, tmp_path, line, column, what
):
    (catalogue / "metadata.jsonl").write_text(line + "\n")
    result = ingest(catalogue, tiny_vit, tmp_path / "store")
    assert result.exit_code == 1
    message = result.stderr
    assert f"column {column!r} of red/red_0.jpg" in message and what in message
    assert "nothing was stored" in message and "--payload-columns" in message
    with connect(StoreConfig(path=str(tmp_path / "store"))) as store:
        assert "c" not in store.names()


def parquet_catalogue(folder: Path, image_folder: Path) -> Path:
    folder.mkdir()
    paths = sorted(image_folder.rglob("*.jpg"))[:4]
    data = datasets.Dataset.from_dict(
        {
            "image": [{"bytes": p.read_bytes(), "path": p.name} for p in paths],
            "file_path": [p.relative_to(image_folder).as_posix() for p in paths],
            "sku": [f"S-{i}" for i in range(4)],
            "price": [1.5 * i for i in range(4)],
            "added": [datetime.date(2024, 1, i + 1) for i in range(4)],
            "thumbnail": [b"\x89PNG..." for _ in paths],
        },
        features=datasets.Features(
            {
                "image": datasets.Image(),
                "file_path": datasets.Value("string"),
                "sku": datasets.Value("string"),
                "price": datasets.Value("float64"),
                "added": datasets.Value("date32"),
                "thumbnail": datasets.Value("binary"),
            }
        ),
    )
    data.to_parquet(str(folder / "train.parquet"))
    return folder


def test_a_datasets_other_columns_become_fields_and_bytes_are_left_out(image_folder, tmp_path):
    folder = parquet_catalogue(tmp_path / "parquet", image_folder)
    source = load_source(str(folder))
    assert source.path_ids and source.payload_columns == ("sku", "price", "added")
    record = source.describe(2)
    assert record.metadata == {"sku": "S-2", "price": 3.0, "added": "2024-01-03"}
    assert record.path == source.paths[2] and "/" in record.path  # the file_path column
    with pytest.raises(DatasetLoadError, match="column 'thumbnail' of .* holds bytes") as err:
        load_source(str(folder), payload_columns=["sku", "thumbnail"]).describe(0)
    assert err.value.kind == "payload"
    with pytest.raises(DatasetLoadError, match="no payload column 'colour'"):
        load_source(str(folder), payload_columns=["colour"])
    with pytest.raises(DatasetLoadError, match="would overwrite lookalike's own 'label'"):
        load_source(str(folder), payload_columns=["label"])


def test_metadata_reaches_the_payload_through_the_python_api(image_folder, tiny_vit, tmp_path):
    from lookalike.embed import Embedder
    from lookalike.ingest import ingest as sync

    folder = parquet_catalogue(tmp_path / "parquet", image_folder)
    with connect(StoreConfig(path=str(tmp_path / "store"))) as store:
        sync(load_source(str(folder)), Embedder(tiny_vit, device="cpu"), store, "c")
        points = {p.metadata["sku"]: p for p in store.scroll("c", 10)[0]}
    assert points["S-1"].metadata == {"sku": "S-1", "price": 1.5, "added": "2024-01-02"}
