"""Tables for people."""

from lookalike.cli.output import hits_table, info_table, ingest_summary
from lookalike.index import IndexSettings
from lookalike.records import CollectionInfo, Hit, IngestReport, Skipped, StoredPoint


def test_hits_table_lists_rank_score_label_and_path():
    hit = Hit.found(StoredPoint("i", 0, "cat", "train", 3, "cats/3.jpg"), rank=1, score=0.98765)
    table = hits_table("q.jpg", [hit])
    assert table.splitlines()[0] == "query: q.jpg"
    assert "0.9877" in table and "train:3" in table and "cats/3.jpg" in table
    assert "(no hits)" in hits_table("q.jpg", [])


def test_ingest_summary_names_each_skip_with_its_path_and_fix():
    skipped = (Skipped("train", 4, "big.png", "too many pixels (9x9)", "too_many_pixels"),)
    text = ingest_summary(IngestReport("c", 10, skipped, 2.0, already_stored=3))
    assert text.splitlines()[0].startswith("collection c: embedded 10 images, skipped 1")
    assert "3 already stored" in text
    assert "skipped train:4 (big.png): too many pixels (9x9); raise --max-pixels" in text


def test_info_table_shows_the_index():
    info = CollectionInfo("c", 10, 32, "Cosine", None, "edge", IndexSettings(), indexed_points=0)
    table = info_table(info)
    assert "m=16 ef_construct=100" in table and "edge" in table
