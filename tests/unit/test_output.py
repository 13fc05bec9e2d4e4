"""Tables for people."""

import pytest

from lookalike.cli.grid import pair_row, render_grid
from lookalike.cli.output import (
    duplicates_table,
    hits_table,
    info_table,
    ingest_summary,
    plan_listing,
)
from lookalike.index import IndexSettings
from lookalike.records import (
    Change,
    CollectionInfo,
    Hit,
    IngestReport,
    Query,
    Result,
    Skipped,
    StoredPoint,
)
from lookalike.search.duplicates import DuplicatePair, DuplicateReport


def test_hits_table_lists_rank_score_label_and_path():
    hit = Hit.found(StoredPoint("i", 0, "cat", "train", 3, "cats/3.jpg"), rank=1, score=0.98765)
    table = hits_table(Result(Query("q.jpg", None), [hit]))
    assert table.splitlines()[0] == "query: q.jpg"
    assert "0.9877" in table and "train:3" in table and "cats/3.jpg" in table
    assert "fields" not in table
    assert "(no hits)" in hits_table(Result(Query("q.jpg", None), []))


def test_hits_table_names_the_query_label_and_says_it_left_the_query_out():
    query = Query("test:3", None, label=1, label_name="dog")
    table = hits_table(Result(query, [], excluded_self=True))
    assert table.splitlines()[0] == "query: test:3 (label dog)"
    assert "--include-self keeps it" in table


@pytest.mark.parametrize(
    "points, indexed, says",
    [
        (1034, 0, "0 of 1034: a collection this small is searched exactly"),
        (50_000, 20_000, "20000 of 50000: the rest are searched exactly until"),
        (50_000, 50_000, "50000 of 50000"),
    ],
)
def test_info_explains_a_partly_built_graph(points, indexed, says):
    info = CollectionInfo(
        "c", points, 1280, "Cosine", None, "edge", IndexSettings(), indexed, full_scan_points=2000
    )
    assert says in info_table(info)


def test_duplicates_summary_counts_in_words():
    a = StoredPoint("a", 0, "cat", "train", 1, "a.jpg")
    b = StoredPoint("b", 0, "cat", "test", 2, "b.jpg")
    pair = DuplicatePair(0.99, a, b)
    text = duplicates_table(DuplicateReport(10, 0.97, [pair], [[a, b]]))
    assert "1 pair at cosine >= 0.97 among 10 images, in 1 group; 1 of them cross splits" in text


def test_hits_table_shows_the_datasets_own_fields():
    point = StoredPoint("i", None, None, "train", None, "shoes/1.jpg", metadata={"sku": "A-1"})
    table = hits_table(Result(Query("q.jpg", None), [Hit.found(point, rank=1, score=0.5)]))
    assert table.splitlines()[1].split()[-1] == "fields"
    assert 'sku="A-1"' in table and "None" not in table
    # A plain folder's files (no split sub-folder in their path): no split worth a column.
    assert " train " not in table and "split:row" not in table


def test_hits_table_shows_each_hits_id_for_id_and_like():
    point_id = "0b6e3c1e-8f4e-5a51-9d7b-2c1f5a9e4d10"
    hit = Hit.found(StoredPoint(point_id, 0, "cat", "train", None, "train/cats/3.jpg"), 1, 0.9)
    table = hits_table(Result(Query("q.jpg", None), [hit]))
    assert table.splitlines()[1].split() == ["rank", "score", "label", "split:row", "path", "id"]
    assert table.splitlines()[3].split()[-1] == point_id and " train " in table


def test_hit_scores_are_rounded_in_json():
    hit = Hit.found(
        StoredPoint("i", 0, "cat", "train", 3, "a.jpg"), rank=1, score=1.0000001192092896
    )
    assert hit.to_dict()["score"] == 1.0


def test_ingest_summary_counts_the_sync_and_names_each_skip_with_its_fix():
    skipped = (Skipped("train", None, "big.png", "too many pixels (9x9)", "too_many_pixels"),)
    report = IngestReport("c", 10, skipped, 2.0, added=8, updated=2, removed=1, unchanged=3)
    text = ingest_summary(report)
    assert text.splitlines()[0] == (
        "collection c: 8 added, 2 updated, 0 renamed, 1 removed, 3 unchanged, 1 skipped; "
        "embedded 10 images in 2.0 s (5.0 images/s)"
    )
    assert "skipped big.png: too many pixels (9x9); raise --max-pixels" in text
    idle = ingest_summary(IngestReport("c", 0, (), 0.4, unchanged=12))
    assert idle.endswith("12 unchanged, 0 skipped; nothing to embed, 0.4 s")


def test_a_dry_run_lists_each_change_then_the_counts():
    changes = (Change("renamed", "b.jpg", before="a.jpg"), Change("removed", "c.jpg"))
    report = IngestReport("c", 0, (), 0.1, renamed=1, removed=1, dry_run=True, changes=changes)
    assert plan_listing(report).splitlines() == [
        "renamed a.jpg -> b.jpg",
        "removed c.jpg",
        "dry run, nothing written: 0 added, 0 updated, 1 renamed, 1 removed, 0 unchanged, "
        "0 skipped",
    ]


def test_info_table_shows_the_index():
    info = CollectionInfo("c", 10, 32, "Cosine", None, "edge", IndexSettings(), indexed_points=0)
    table = info_table(info)
    assert "m=16 ef_construct=100" in table and "edge" in table


def test_the_duplicates_grid_names_both_images_of_a_pair():
    a = StoredPoint("a", 0, "cat", "train", 1, "cats/a.jpg")
    b = StoredPoint("b", 0, "cat", "test", 2, "cats/b.jpg")
    left, right = pair_row(DuplicatePair(0.991, a, b), None, None)
    assert list(left.lines) == ["train:1 cat", "a.jpg"]
    assert list(right.lines) == ["test:2 cat", "score 0.991", "b.jpg"]
    assert render_grid([[left, right]]).size == (2 * 192 + 3 * 8, 192 + 58 + 2 * 8)
