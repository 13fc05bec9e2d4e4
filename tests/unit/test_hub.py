"""Local folder or hub id, and which collection a dataset fills: decided without the network."""

import pytest

from lookalike.cli.stores import collection_for
from lookalike.hub import is_hub_id


@pytest.mark.parametrize(
    "name, hub",
    [
        ("beans", True),
        ("nateraw/vit-base-beans", True),
        ("../nope/beans", False),
        ("./beans", False),
        ("/data/beans", False),
        ("~/photos", False),
        ("a/b/c", False),
        ("photos/", False),
    ],
)
def test_a_path_is_never_taken_for_a_hub_id(name, hub):
    assert is_hub_id(name) is hub


@pytest.mark.parametrize(
    "dataset, collection",
    [("beans", "beans"), ("ethz/food101", "food101"), ("../data/My Photos", "My-Photos")],
)
def test_ingest_names_the_collection_after_the_dataset(dataset, collection, tmp_path):
    if dataset.startswith(".."):
        (tmp_path / "sub").mkdir()
        (tmp_path / "data" / "My Photos").mkdir(parents=True)
        dataset = str(tmp_path / "sub" / dataset)
    assert collection_for(dataset) == collection
