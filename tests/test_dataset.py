import hashlib
import time

import datasets
import pytest

from lookalike.errors import DatasetLoadError
from lookalike.source.dataset import load_source, path_point_id, point_id


def test_image_folder_detects_columns_and_labels(image_folder):
    source = load_source(str(image_folder))
    assert (source.image_column, source.label_column) == ("image", "label")
    assert source.label_names == ("blue", "green", "red")
    records = [r for batch, skipped in source.batches(5) for r in batch]
    assert len(records) == 12
    first = records[0]
    assert first.image.mode == "RGB"
    # Paths are relative to the folder, whatever directory lookalike runs from.
    assert first.path == "blue/blue_0.jpg" and first.label_name == "blue"
    assert first.id == path_point_id(str(image_folder), "train", "blue/blue_0.jpg")
    assert first.row is None  # a file's place in the folder shifts: not stored
    assert first.sha256 == hashlib.sha256((image_folder / first.path).read_bytes()).hexdigest()


def test_save_to_disk_folder_loads(image_folder, tmp_path):
    ds = datasets.load_dataset(str(image_folder))
    ds.save_to_disk(tmp_path / "saved")
    source = load_source(str(tmp_path / "saved"))
    assert len(source) == 12 and source.label_names == ("blue", "green", "red")


def test_a_column_no_filter_can_name_is_said(image_folder, tmp_path):
    """A dataset's column with a double quote in its name is stored, and said: no filter or
    --group-by can name it (Qdrant's key syntax has no escapes)."""
    ds = datasets.load_dataset(str(image_folder))["train"]
    ds = ds.add_column('say "hi"', ["x"] * len(ds))
    ds.save_to_disk(tmp_path / "saved")
    source = load_source(str(tmp_path / "saved"))
    assert 'say "hi"' in source.payload_columns
    [note] = [n for n in source.notes if "double quote" in n]
    assert f"field 'say \"hi\"' (a column of {tmp_path / 'saved'})" in note
    assert "rename it there" in note


def test_limit_matches_tutorial_shuffle_select(beans_dir):
    source = load_source(beans_dir, "train", limit=20, seed=7)
    tutorial = datasets.load_dataset(beans_dir)["train"].shuffle(seed=7).select(range(20))
    paths = [r.path for batch, _ in source.batches(8) for r in batch]
    assert paths == tutorial["image_file_path"]
    # Rows are the original rows, so ids do not depend on the sample.
    full = datasets.load_dataset(beans_dir)["train"]
    assert [full[int(r)]["image_file_path"] for r in source.rows] == paths


def test_beans_payload_fields(beans_dir):
    source = load_source(beans_dir, "test")
    record = source.record(17)
    assert record.payload() == {
        "label": record.label,
        "label_name": ["angular_leaf_spot", "bean_rust", "healthy"][record.label],
        "split": "test",
        "row": 17,
        "path": record.path,
        "sha256": record.sha256,
    }
    assert record.path.startswith("test/")
    # Every row has its own path: the path identifies the point, not the row.
    assert record.id == path_point_id(source.name, "test", record.path)


def test_point_ids_are_deterministic_and_distinct():
    assert point_id("beans", "train", 3) == point_id("beans", "train", 3)
    assert len({point_id("beans", s, r) for s in ("train", "test") for r in range(50)}) == 100
    by_path = {path_point_id("beans", s, f"{r}.jpg") for s in ("train", "test") for r in range(50)}
    assert len(by_path) == 100 and not by_path & {point_id("beans", "train", r) for r in range(50)}


def test_rows_without_their_own_paths_keep_row_ids(tmp_path):
    from tests.conftest import COLOURS, make_image

    folder = tmp_path / "parquet"
    folder.mkdir()
    images = []
    for i in range(3):
        make_image(COLOURS["red"], seed=i).save(tmp_path / "x.png")
        images.append({"bytes": (tmp_path / "x.png").read_bytes(), "path": "same.png"})
    data = datasets.Dataset.from_dict(
        {"image": images, "sku": ["a", "b", "c"]},
        features=datasets.Features({"image": datasets.Image(), "sku": datasets.Value("string")}),
    )
    data.to_parquet(str(folder / "train.parquet"))
    source = load_source(str(folder))
    assert not source.path_ids  # three rows share one path
    record = source.describe(1)
    assert record.id == point_id(source.name, "train", 1) and record.metadata == {"sku": "b"}


def test_bad_images_are_skipped_with_reason(image_folder, tmp_path):
    import shutil

    folder = tmp_path / "imgs"
    shutil.copytree(image_folder, folder)
    (folder / "red" / "notes.jpg").write_text("not an image at all")
    whole = (folder / "red" / "red_0.jpg").read_bytes()
    (folder / "red" / "truncated.jpg").write_bytes(whole[: len(whole) // 3])
    source = load_source(str(folder))
    results = list(source.batches(32))
    records = [r for batch, _ in results for r in batch]
    reasons = {s.path.rsplit("/", 1)[1]: s.reason for _, bad in results for s in bad}
    assert len(records) == 12
    assert set(reasons) == {"notes.jpg", "truncated.jpg"}
    assert "not a readable image" in reasons["notes.jpg"]
    assert "cannot decode image" in reasons["truncated.jpg"]


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"split": "nope"}, "has no split 'nope'; its splits are: train"),
        ({"image_column": "picture"}, "no image column picture"),
        ({"label_column": "kind"}, "no label column 'kind'"),
    ],
)
def test_dataset_errors_name_the_fix(image_folder, kwargs, message):
    with pytest.raises(DatasetLoadError, match=message):
        load_source(str(image_folder), **kwargs)


def test_a_hub_dataset_missing_from_the_offline_cache_says_so_in_fields():
    with pytest.raises(DatasetLoadError, match="not in the Hugging Face cache") as err:
        load_source("nobody/no-such-dataset")
    assert (err.value.dataset, err.value.kind) == ("nobody/no-such-dataset", "offline")
    assert "--" not in str(err.value)  # flags are the command line's words, not the library's


def test_a_folder_that_does_not_exist_is_not_taken_for_a_hub_id():
    with pytest.raises(DatasetLoadError, match="dataset folder '../nope/beans' does not exist"):
        load_source("../nope/beans")


def test_without_network_a_hub_dataset_fails_at_once(no_network):
    started = time.perf_counter()
    with pytest.raises(DatasetLoadError, match="cannot be reached to fetch it") as err:
        load_source("beans")
    assert err.value.kind == "unreachable" and time.perf_counter() - started < 5
