"""Records passed between the stages: their JSON forms and the compatibility check."""

import pytest

from lookalike.errors import ModelMismatch
from lookalike.index import IndexSettings
from lookalike.records import CollectionInfo, CollectionMeta, Hit, StoredPoint, check_compatible

PAYLOAD = {"label": 1, "label_name": "b", "split": "train", "row": 7, "path": "b/7.jpg"}
META = CollectionMeta("m", "cls", 32, "data", "image", "label", ("a", "b"))


def info(meta=META, dim=32):
    return CollectionInfo("c", 10, dim, "Cosine", meta, "edge", IndexSettings())


def test_a_stored_point_reads_its_payload_and_a_hit_adds_rank_and_score():
    point = StoredPoint.from_payload("id-1", PAYLOAD)
    assert (point.id, point.label_name, point.row, point.path) == ("id-1", "b", 7, "b/7.jpg")
    hit = Hit.found(point, rank=2, score=0.5)
    assert isinstance(hit, StoredPoint) and (hit.rank, hit.score) == (2, 0.5)
    assert list(hit.to_dict())[:3] == ["rank", "id", "score"]  # as `search --json` prints it
    assert hit.to_dict() == {"rank": 2, "id": "id-1", "score": 0.5, **PAYLOAD}
    assert StoredPoint.from_payload("x", None).label is None


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
