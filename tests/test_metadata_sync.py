"""An image folder's metadata is never lost without a word: rows and images that do not match
are said with counts and first names, a renamed image keeps the fields of a row still naming
its old path, odd rows are normalised or named, and a metadata file that cannot be read is
said with its file and line."""

from __future__ import annotations

import csv
import json
import shutil
import unicodedata
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from lookalike.cli.main import cli
from lookalike.errors import DatasetLoadError
from lookalike.source import load_source
from lookalike.store import StoreConfig, connect
from tests.conftest import make_image


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


@pytest.fixture
def folder(tmp_path) -> Path:
    """d/a/0.jpg, d/a/1.jpg, d/b/2.jpg, d/b/3.jpg."""
    root = tmp_path / "d"
    for i, sub in enumerate("aabb"):
        (root / sub).mkdir(parents=True, exist_ok=True)
        make_image((40 * i, 90, 200 - 40 * i), seed=i).save(root / sub / f"{i}.jpg")
    return root


def jsonl(folder: Path, rows: list[dict], name: str = "metadata.jsonl") -> None:
    (folder / name).write_text("".join(json.dumps(r) + "\n" for r in rows))


def notes(folder: Path) -> str:
    return "\n".join(load_source(str(folder)).notes)


def test_rows_naming_no_image_and_images_without_rows_are_counted_and_named(folder):
    jsonl(folder, [{"file_name": "a/0.jpg", "n": 1}, {"file_name": "gone/9.jpg", "n": 2}])
    said = notes(folder)
    assert "name no image in the folder" in said and "1 (gone/9.jpg)" in said
    assert "without a metadata row" in said and "3 (a/1.jpg, b/2.jpg, b/3.jpg)" in said


def test_no_metadata_file_no_notes(folder):
    assert load_source(str(folder)).notes == ()


def test_mixed_types_in_a_field_are_warned(folder):
    rows = [{"file_name": f"{s}/{i}.jpg", "year": 2020 + i} for i, s in enumerate("aabb")]
    rows[2]["year"] = "unknown"
    jsonl(folder, rows)
    said = notes(folder)
    assert "field year holds values of different types" in said and "b/2.jpg" in said


def test_paths_are_normalised_and_odd_ones_named(folder):
    nfd = unicodedata.normalize("NFD", "café.jpg")
    make_image((1, 2, 3), seed=9).save(folder / "a" / unicodedata.normalize("NFC", "café.jpg"))
    rows = [
        {"file_name": f"a/{nfd}", "n": 1},  # typed on macOS
        {"file_name": "b/../b/2.jpg", "n": 2},
        {"file_name": str(folder / "b" / "3.jpg"), "n": 3},  # absolute, inside
        {"file_name": "A/0.JPG", "n": 4},  # case
        {"file_name": "../elsewhere.jpg", "n": 5},
        {"file_name": "/etc/passwd", "n": 6},
    ]
    jsonl(folder, rows)
    source = load_source(str(folder))
    fields = source.folder_metadata
    assert fields[unicodedata.normalize("NFC", "a/café.jpg")] == {"n": 1}
    assert fields["b/2.jpg"] == {"n": 2} and fields["b/3.jpg"] == {"n": 3}
    assert fields["a/0.jpg"] == {"n": 4}
    said = "\n".join(source.notes)
    assert "only when ignoring case: 1 (A/0.JPG)" in said
    assert "outside the folder, ignored: 2 (../elsewhere.jpg, /etc/passwd)" in said


def test_duplicates_both_files_and_own_field_names_are_said(folder):
    jsonl(folder, [{"file_name": "a/0.jpg", "n": 1}, {"file_name": "a/0.jpg", "n": 2}])
    (folder / "metadata.csv").write_text("file_name,label,path,note\na/1.jpg,x,y,z\n")
    source = load_source(str(folder))
    said = "\n".join(source.notes)
    assert "more than one metadata row (the last row wins): 1 (a/0.jpg)" in said
    assert "both metadata.jsonl and metadata.csv" in said and "metadata.csv's row wins" in said
    assert "metadata fields label, path are names lookalike keeps" in said
    assert "note" in source.payload_columns and "label" not in source.payload_columns


def test_a_field_name_with_a_newline_is_escaped_when_said(folder):
    jsonl(folder, [{"file_name": "a/0.jpg", "x\nwarning: forged": 1}, {"file_name": "a/1.jpg"}])
    rows = [{"file_name": "a/0.jpg", "x\nforged": 1}, {"file_name": "a/1.jpg", "x\nforged": "s"}]
    jsonl(folder, rows)
    said = notes(folder)
    assert "x\\nforged" in said and "x\nforged" not in said


def test_a_csv_with_a_byte_order_mark_works(folder):
    text = "file_name,price\na/0.jpg,5\n"
    (folder / "metadata.csv").write_bytes(b"\xef\xbb\xbf" + text.encode())
    assert load_source(str(folder)).folder_metadata["a/0.jpg"] == {"price": 5}


BAD = {
    "not utf-8": ("metadata.jsonl", b'{"file_name": "a/0.jpg"}\n{"file_name": "caf\xe9"}\n', 2),
    "deep json": ("metadata.jsonl", b"[" * 100_000 + b"]" * 100_000 + b"\n", 1),
    "huge int": ("metadata.jsonl", b'{"file_name": "a/0.jpg", "n": ' + b"9" * 5000 + b"}\n", 1),
    "extra csv fields": ("metadata.csv", b"file_name,n\na/0.jpg,1\na/1.jpg,2,3\n", 3),
    "long csv field": ("metadata.csv", b"file_name,n\na/0.jpg," + b"x" * 200_000 + b"\n", 2),
    "csv not utf-8": ("metadata.csv", b"file_name,n\na/0.jpg,caf\xe9\n", 2),
}


@pytest.mark.parametrize("case", BAD)
def test_a_metadata_file_that_cannot_be_read_is_said_with_its_file_and_line(folder, case):
    name, data, line = BAD[case]
    (folder / name).write_bytes(data)
    with pytest.raises(DatasetLoadError) as e:
        load_source(str(folder))
    assert f"{name} line {line}" in str(e.value)
    assert "could not load dataset" not in str(e.value)


def test_a_huge_number_in_a_csv_is_text(folder):
    (folder / "metadata.csv").write_text("file_name,n\na/0.jpg," + "9" * 5000 + "\n")
    assert load_source(str(folder)).folder_metadata["a/0.jpg"]["n"] == "9" * 5000


def test_a_renamed_folder_keeps_its_fields_while_the_rows_name_the_old_paths(
    folder, tiny_vit, tmp_path
):
    rows = [{"file_name": f"{s}/{i}.jpg", "sku": f"S{i}"} for i, s in enumerate("aabb")]
    jsonl(folder, rows)
    store = ["--qdrant-path", tmp_path / "store", "--collection", "c", "--model", tiny_vit]
    assert run("ingest", "--dataset", folder, *store).exit_code == 0
    shutil.move(folder / "b", folder / "misc")
    result = run("ingest", "--dataset", folder, "--json", *store)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["renamed"] == 2
    assert "2 renamed images keep the fields" in result.stderr
    assert "b/2.jpg -> misc/2.jpg" in result.stderr
    with connect(StoreConfig(path=str(tmp_path / "store"))) as s:
        by_path = {p.path: p.metadata for p in s.scroll("c", 100)[0]}
    assert by_path["misc/2.jpg"] == {"sku": "S2"} and by_path["misc/3.jpg"] == {"sku": "S3"}
    again = run("ingest", "--dataset", folder, "--json", *store)  # and on the next sync
    assert json.loads(again.stdout)["unchanged"] == 4, again.output


def indexed(store_path: Path) -> dict[str, str]:
    with connect(StoreConfig(path=str(store_path))) as s:
        return s.indexed_fields("c")


def test_many_fields_get_capped_payload_indexes_and_odd_names_none(folder, tiny_vit, tmp_path):
    """~100 fields: the first 16 indexed, said; names with spaces or punctuation (a
    spreadsheet's headers) are stored and said, never an engine error after storing."""
    odd = ["Product Name", "tab\there", "price (EUR)", "a:b", "w/h", 'say "hi"']
    fields = {**{f"f{i}": i for i in range(100)}, **dict.fromkeys(odd, "x")}
    jsonl(folder, [{"file_name": f"{s}/{i}.jpg", **fields} for i, s in enumerate("aabb")])
    store = ["--qdrant-path", tmp_path / "store", "--collection", "c", "--model", tiny_vit]
    result = run("ingest", "--dataset", folder, "--json", *store)
    assert result.exit_code == 0, result.output
    assert "the first 16 get a payload index, the other 84 none" in result.stderr
    assert "Product Name" in result.stderr and "tab\\there" in result.stderr
    have = indexed(tmp_path / "store")
    assert "f0" in have and "f15" in have and "f16" not in have
    assert not set(odd) & set(have)
    with connect(StoreConfig(path=str(tmp_path / "store"))) as s:
        point = s.scroll("c", 1)[0][0]
    assert point.metadata["Product Name"] == "x" and point.metadata["f99"] == 99


def test_field_names_with_a_newline_or_nul_are_escaped_in_tables():
    from lookalike.cli.output import fields, ingest_summary
    from lookalike.records import IngestReport

    assert "\n" not in fields({"a\nforged": 1}) and "\x00" not in fields({"b\x00": 2})
    report = IngestReport("c", 0, (), 0.0, payload_columns=("x\nwarning: forged", "n\x00"))
    summary = ingest_summary(report)
    assert "x\\nwarning: forged" in summary and "\x00" not in summary


ODD = ["Product Name", "price (EUR)", "a:b/c", "w/h", "tab\there", "x'y"]


@pytest.mark.parametrize("name", ODD)
def test_a_field_with_spaces_or_punctuation_filters_with_where_and_filter(
    folder, tiny_vit, tmp_path, name
):
    rows = [{"file_name": f"{s}/{i}.jpg", name: i % 2} for i, s in enumerate("aabb")]
    jsonl(folder, rows)
    store = ["--qdrant-path", tmp_path / "store", "--collection", "c", "--model", tiny_vit]
    assert run("ingest", "--dataset", folder, *store).exit_code == 0
    query = ["search", folder / "a" / "0.jpg", "--k", "4", "--json", "--include-self", *store]
    for how in (
        ["--where", f"{name}=1"],
        ["--where", f"{name}>=1"],
        ["--filter", json.dumps({"must": [{"key": name, "match": {"value": 1}}]})],
    ):
        result = run(*query, *how)
        assert result.exit_code == 0, (how, result.output)
        paths = sorted(h["path"] for h in json.loads(result.stdout)["hits"])
        assert paths == ["a/1.jpg", "b/3.jpg"], how  # the odd rows, as brute force has it


def test_floats_the_engine_reads_back_a_bit_off_are_not_changes(folder, tiny_vit, tmp_path):
    """Edge parses JSON numbers its own way: 123.99186654901735 comes back ...736 (1 in 8
    random doubles changes so). A sync of unchanged metadata rewrote such points every time,
    reporting them updated."""
    coords = [123.99186654901735, 102.16749205251813, 30.017534203811238, 13.404954]
    rows = [
        {
            "file_name": f"{s}/{i}.jpg",
            "location": {"lat": coords[i], "lon": -coords[i]},
            "price": coords[i] * 3,
        }
        for i, s in enumerate("aabb")
    ]
    jsonl(folder, rows)
    store = ["--qdrant-path", tmp_path / "store", "--collection", "c", "--model", tiny_vit]
    assert run("ingest", "--dataset", folder, *store).exit_code == 0
    with connect(StoreConfig(path=str(tmp_path / "store"))) as s:
        back = {p.path: p.metadata["location"]["lat"] for p in s.scroll("c", 100)[0]}
    assert back["a/0.jpg"] != coords[0]  # what this guards against: still the engine's way
    again = run("ingest", "--dataset", folder, "--json", *store)
    assert json.loads(again.stdout)["unchanged"] == 4, again.output
    rows[1]["price"] += 0.01  # a real change still is one
    jsonl(folder, rows)
    changed = run("ingest", "--dataset", folder, "--json", *store)
    report = json.loads(changed.stdout)
    assert (report["unchanged"], report["updated"]) == (3, 1), changed.output


def test_a_metadata_only_sync_reads_vectors_a_chunk_at_a_time(tmp_path, tiny_vit):
    """Every row's fields changed, no image: each point is rewritten with its own vector,
    read a chunk at a time as it is written, not all 600 first (at 1280-d, 50k points held
    256 MB of vectors before the first write)."""
    from lookalike.embed import ModelSettings
    from lookalike.ingest import ingest
    from lookalike.ingest.worker import STEP

    root = tmp_path / "many"
    root.mkdir()
    for i in range(600):
        make_image((i % 256, 7, 99), size=8, seed=i).save(root / f"{i:03d}.png")
    calls: list = []
    for rating in (0, 1):
        jsonl(root, [{"file_name": f"{i:03d}.png", "rating": rating} for i in range(600)])
        with connect(StoreConfig(path=str(tmp_path / "store"))) as store:
            before = store.read_points("c", 1000)[1] if rating else None
            calls.clear()
            vectors, upsert = store.vectors, store.upsert
            store.vectors = lambda n, ids, f=vectors: calls.append(len(ids)) or f(n, ids)
            store.upsert = lambda *a, f=upsert: calls.append("write") or f(*a)
            report = ingest(load_source(str(root)), ModelSettings(tiny_vit), store, "c")
            points, after, _ = store.read_points("c", 1000)
    assert (report.updated, report.embedded) == (600, 0)
    assert sum(calls[: calls.index("write")]) <= STEP, calls
    assert {p.payload["rating"] for p in points} == {1} and np.array_equal(before, after)


@pytest.mark.parametrize("engine", ["edge", "local"])
def test_group_by_a_spreadsheet_header_on_either_embedded_engine(
    folder, tiny_vit, tmp_path, engine
):
    """metadata.csv headers with a space, (), :, / or a tab: `search --group-by` on each gives
    one hit per value, on edge and on local mode alike."""
    names = [n for n in ODD if "'" not in n] + ["No."]
    with open(folder / "metadata.csv", "w", newline="") as f:
        table = csv.writer(f)
        table.writerow(["file_name", *names])
        table.writerows([f"{s}/{i}.jpg", *[f"g{i % 2}"] * len(names)] for i, s in enumerate("aabb"))
    store = ["--qdrant-path", tmp_path / "store", "--collection", "c"]
    store += ["--embedded-engine", engine]
    result = run("ingest", "--dataset", folder, "--model", tiny_vit, *store)
    assert result.exit_code == 0, result.output
    query = ["search", folder / "a" / "0.jpg", "--k", "4", "--json", "--include-self", *store]
    for name in names:
        result = run(*query, "--group-by", name)
        assert result.exit_code == 0, (name, result.output)
        hits = json.loads(result.stdout)["hits"]
        assert sorted(h["metadata"][name] for h in hits) == ["g0", "g1"], name


def test_a_field_name_no_filter_can_carry_is_named_with_its_file_and_line(
    folder, tiny_vit, tmp_path
):
    """Qdrant's key syntax has no escapes: a double quote (or a backslash) in a field's name
    cannot be named by a filter or --group-by on any engine. Ingest stores the values and
    says so with the file and line; a query naming the field is refused with the same words."""
    with open(folder / "metadata.csv", "w", newline="") as f:
        table = [["file_name", 'say "hi"', "n"], ["b/2.jpg", "x", 2], ["b/3.jpg", "y", 3]]
        csv.writer(f).writerows(table)
    jsonl(folder, [{"file_name": "a/0.jpg", "n": 0}, {"file_name": "a/1.jpg", "a\\b": 1}])
    store = ["--qdrant-path", tmp_path / "store", "--collection", "c"]
    result = run("ingest", "--dataset", folder, "--model", tiny_vit, *store)
    assert result.exit_code == 0, result.output
    csv_line = f"field 'say \"hi\"' ({folder / 'metadata.csv'} line 1) has a double quote"
    jsonl_line = f"field 'a\\\\b' ({folder / 'metadata.jsonl'} line 2) has a backslash"
    assert csv_line in result.stderr and jsonl_line in result.stderr, result.stderr
    assert "rename it there" in result.stderr and "spaces or punctuation" not in result.stderr
    query = ["search", folder / "a" / "0.jpg", *store]
    # A query's refusal names the file within the folder (a server's answer shows no path).
    for how in (["--where", 'say "hi"=x'], ["--group-by", 'say "hi"']):
        refused = run(*query, *how)
        said = "Error: field 'say \"hi\"' (metadata.csv line 1) has a double quote in its name"
        assert refused.exit_code == 1 and said in refused.stderr, refused.output
        assert "rename it there" in refused.stderr and "Traceback" not in refused.output
    refused = run(*query, "--where", "a\\b=1")
    said = "field 'a\\\\b' (metadata.jsonl line 2) has a backslash"
    assert refused.exit_code == 1 and said in refused.stderr, refused.output
    assert run(*query, "--where", "n>=1").exit_code == 0  # the others filter as ever
