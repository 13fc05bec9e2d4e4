"""`lookalike tune` writes a normal model folder that ingest takes, chosen on validation."""

import json

import pytest
from click.testing import CliRunner

from lookalike.augment import augment
from lookalike.cli.main import cli
from lookalike.embed.embedder import Embedder
from tests.conftest import COLOURS, make_image


@pytest.fixture(scope="module")
def split_folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("splits")
    for s, (split, n) in enumerate({"train": 6, "validation": 2, "test": 2}.items()):
        for c, (name, colour) in enumerate(COLOURS.items()):
            (root / split / name).mkdir(parents=True)
            for i in range(n):
                make_image(colour, seed=100 * s + 10 * c + i).save(root / split / name / f"{i}.png")
    return root


def test_augment_keeps_the_size_and_changes_the_pixels():
    import random

    image = make_image((100, 150, 200), seed=1, size=64)
    out = augment(image, random.Random(0))
    assert out.size == image.size and out.mode == "RGB" and out.tobytes() != image.tobytes()


def test_tune_writes_a_model_folder_that_ingest_takes(split_folder, tiny_vit, tmp_path):
    out = tmp_path / "tuned"
    args = [
        "tune",
        "--model",
        tiny_vit,
        "--dataset",
        split_folder,
        "--output",
        out,
        "--epochs",
        2,
        "--batch-size",
        6,
        "--k",
        3,
        "--precision",
        "fp32",
        "--json",
    ]
    result = CliRunner().invoke(cli, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert len(report["val_precision_at_k"]) == 3  # before tuning, then each epoch
    assert 0 <= report["best_epoch"] <= 2
    assert len(report["val_near_duplicate_top1"]) == 3
    assert report["mix"] in (1.0, 0.75, 0.5) and report["blend_scores"][0][0] == 1.0
    assert report["test_split"] == "test" and len(report["test_precision_at_k"]) == 2
    assert "epoch 1: validation precision@3" in result.stderr
    card = (out / "README.md").read_text()
    assert "base model" in card and "kept epoch" in card and "never used for choosing" in card
    tuned = Embedder(str(out), device="cpu")
    assert tuned.dim == 32 and tuned.pooling == "cls"
    ingest = ["ingest", "--dataset", split_folder, "--model", out, "--qdrant-path", tmp_path / "s"]
    result = CliRunner().invoke(cli, [str(a) for a in ingest])
    assert result.exit_code == 0 and "embedded 18 images" in result.stdout


def test_tune_needs_labels(tmp_path, tiny_vit):
    for split in ("train", "validation"):
        (tmp_path / "d" / split).mkdir(parents=True)
        make_image((1, 2, 3), seed=1).save(tmp_path / "d" / split / "a.png")
    args = [
        "tune",
        "--model",
        tiny_vit,
        "--dataset",
        tmp_path / "d",
        "--output",
        tmp_path / "o",
        "--test-split",
        "",
    ]
    result = CliRunner().invoke(cli, [str(a) for a in args])
    assert result.exit_code == 1 and "tuning needs labels" in result.stderr


def test_interpolate_blends_float_weights_only():
    import torch

    from lookalike.tune.trainer import _interpolate

    original = {"w": torch.zeros(2), "n": torch.tensor(3)}
    tuned = {"w": torch.ones(2), "n": torch.tensor(7)}
    mixed = _interpolate(original, tuned, 0.75)
    assert torch.allclose(mixed["w"], torch.full((2,), 0.75)) and int(mixed["n"]) == 7
