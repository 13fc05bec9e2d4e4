"""Records passed between the stages: their JSON forms and the compatibility check."""

from dataclasses import replace

import pytest

from lookalike.errors import ModelMismatch
from lookalike.index import IndexSettings
from lookalike.records import (
    Change,
    CollectionInfo,
    CollectionMeta,
    Hit,
    ImageRecord,
    IngestReport,
    StoredPoint,
    check_compatible,
)

PAYLOAD = {"label": 1, "label_name": "b", "split": "train", "row": 7, "path": "b/7.jpg"}
SHA = "ab" * 32
META = CollectionMeta("m", "cls", 32, "data", "image", "label", ("a", "b"))


def info(meta=META, dim=32):
    return CollectionInfo("c", 10, dim, "Cosine", meta, "edge", IndexSettings())


def test_a_stored_point_reads_its_payload_and_a_hit_adds_rank_and_score():
    point = StoredPoint.from_payload("id-1", PAYLOAD)
    assert (point.id, point.label_name, point.row, point.path) == ("id-1", "b", 7, "b/7.jpg")
    hit = Hit.found(point, rank=2, score=0.5)
    assert isinstance(hit, StoredPoint) and (hit.rank, hit.score) == (2, 0.5)
    assert list(hit.to_dict())[:3] == ["rank", "id", "score"]  # as `search --json` prints it
    assert hit.to_dict() == {
        "rank": 2,
        "id": "id-1",
        "score": 0.5,
        **PAYLOAD,
        "sha256": None,
        "metadata": {},
    }
    assert StoredPoint.from_payload("x", None).label is None


def test_payload_fields_of_the_dataset_are_metadata_and_bookkeeping_stays_inside():
    stored = {**PAYLOAD, "sha256": SHA, "stat": "1:2:3:4", "sku": "A-1", "price": 9.5}
    point = StoredPoint.from_payload("id-1", stored)
    assert point.sha256 == SHA and point.metadata == {"sku": "A-1", "price": 9.5}
    assert "stat" not in Hit.found(point, 1, 1.0).to_dict()


def test_an_image_record_payload_puts_our_fields_over_the_datasets():
    record = ImageRecord(
        "i", "train", None, 0, "a", "a/1.jpg", None, sha256=SHA, metadata={"title": "x"}
    )
    assert record.payload() == {
        "title": "x",
        "label": 0,
        "label_name": "a",
        "split": "train",
        "row": None,
        "path": "a/1.jpg",
        "sha256": SHA,
    }
    assert "stat" in replace(record, stat="1:2:3:4").payload()


def test_an_ingest_report_counts_every_kind_of_change():
    report = IngestReport("c", 2, (), 1.0, added=1, updated=1, removed=3, unchanged=9)
    d = report.to_dict()
    assert (d["added"], d["updated"], d["renamed"], d["removed"], d["unchanged"]) == (1, 1, 0, 3, 9)
    assert "changes" not in d and report.changed
    dry = IngestReport("c", 0, (), 0.1, dry_run=True, changes=(Change("added", "a.jpg"),))
    assert dry.to_dict()["changes"] == [
        {"kind": "added", "where": "a.jpg", "before": None, "reason": None}
    ]


def test_collection_meta_round_trips():
    assert CollectionMeta.from_dict(META.to_dict()) == META
    assert info().to_dict()["label_names"] == ["a", "b"]


@pytest.mark.parametrize(
    "have, want, dim, ingest, what",
    [
        (None, META, 32, False, "foreign"),
        (META, META, 48, False, "dim"),
        (META, CollectionMeta("other", "cls", 32, "data", "image", "label"), 32, False, "model"),
        (META, CollectionMeta("m", "cls", 32, "elsewhere", "image", "label"), 32, True, "dataset"),
    ],
)
def test_incompatible_collections_are_refused_with_fields(have, want, dim, ingest, what):
    with pytest.raises(ModelMismatch) as err:
        check_compatible(info(have, dim), want, ingest=ingest)
    assert (err.value.collection, err.value.what) == ("c", what)
    assert "--" not in str(err.value)


def test_a_search_may_use_another_dataset_than_ingest():
    other = CollectionMeta("m", "cls", 32, "elsewhere", "image", "label")
    check_compatible(info(), other, ingest=False)


@pytest.mark.parametrize("meta", [META, None])
def test_a_collection_report_reads_back_from_its_json(meta):
    """What a running serve sends for `info` is the report `info` prints without it."""
    report = replace(info(meta), indexed_points=4, full_scan_points=9, fields={"sku": "keyword"})
    assert CollectionInfo.from_dict(report.to_dict()) == report
