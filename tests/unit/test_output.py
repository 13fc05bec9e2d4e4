"""Tables for people."""

from lookalike.cli.output import hits_table, info_table, ingest_summary, plan_listing
from lookalike.index import IndexSettings
from lookalike.records import Change, CollectionInfo, Hit, IngestReport, Skipped, StoredPoint


def test_hits_table_lists_rank_score_label_and_path():
    hit = Hit.found(StoredPoint("i", 0, "cat", "train", 3, "cats/3.jpg"), rank=1, score=0.98765)
    table = hits_table("q.jpg", [hit])
    assert table.splitlines()[0] == "query: q.jpg"
    assert "0.9877" in table and "train:3" in table and "cats/3.jpg" in table
    assert "fields" not in table
    assert "(no hits)" in hits_table("q.jpg", [])


def test_hits_table_shows_the_datasets_own_fields():
    point = StoredPoint("i", None, None, "train", None, "shoes/1.jpg", metadata={"sku": "A-1"})
    table = hits_table("q.jpg", [Hit.found(point, rank=1, score=0.5)])
    assert table.splitlines()[1].split()[-1] == "fields"
    assert 'sku="A-1"' in table and " train " in table and "None" not in table


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
