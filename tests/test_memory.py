"""Memory stays bounded by what the model needs, whatever the image: measured on the process
(peak RSS of a child), not read off the code."""

import json
import os
import subprocess
import sys

import pytest
import torch
import transformers as tf
from PIL import Image

from tests.conftest import make_image
from tests.peak import peak_mb

EMBED_STRIPS = """
import json, sys
from lookalike.embed.embedder import Embedder
from lookalike.images import open_image

def peak_kb():  # VmHWM, not ru_maxrss: that one starts at the forking pytest's peak
    with open("/proc/self/status") as f:
        return int(next(line.split()[1] for line in f if line.startswith("VmHWM:")))

for model in sys.argv[2:]:
    emb = Embedder(model, device="cpu", precision="fp32")
    emb.embed([open_image(sys.argv[1] + "/square.png")])  # warm-up on an ordinary image
    before = peak_kb()
    for name in ("wide.png", "tall.png"):
        assert emb.embed([open_image(sys.argv[1] + "/" + name)]).shape[0] == 1
    grew = peak_kb() - before
    print(json.dumps({"model": model, "grew_mb": grew / 1024}), flush=True)
"""


@pytest.fixture(scope="module")
def aspect_models(tmp_path_factory) -> dict[str, str]:
    """Two processors that resize the shortest edge and keep the aspect ratio: BiT's (the
    standard chain lookalike runs itself) and ConvNeXt's (run as it is)."""
    torch.manual_seed(0)
    vit = tmp_path_factory.mktemp("vit-shortest-edge")
    tf.ViTModel(
        tf.ViTConfig(
            image_size=64,
            patch_size=16,
            hidden_size=32,
            num_hidden_layers=1,
            num_attention_heads=2,
            intermediate_size=64,
        )
    ).save_pretrained(vit)
    tf.BitImageProcessor(
        size={"shortest_edge": 72}, crop_size={"height": 64, "width": 64}
    ).save_pretrained(vit)
    convnext = tmp_path_factory.mktemp("convnext")
    config = tf.ConvNextConfig(hidden_sizes=[8, 16], depths=[1, 1], num_stages=2)
    tf.ConvNextModel(config).save_pretrained(convnext)
    tf.ConvNextImageProcessor(size={"shortest_edge": 64}).save_pretrained(convnext)
    return {"bit": str(vit), "convnext": str(convnext)}


def test_aspect_ratio_bombs_cost_no_memory(tmp_path, aspect_models):
    """A 30000x1 PNG (a few hundred bytes, far under any pixel limit) resized on its shortest
    edge becomes 2.2M x 72 pixels here, 7.7M x 256 with efficientnet-lite0 (~14 GB)."""
    make_image((120, 60, 200), seed=0, size=64).save(tmp_path / "square.png")
    Image.new("RGB", (30_000, 1), (200, 30, 30)).save(tmp_path / "wide.png")
    Image.new("RGB", (1, 30_000), (30, 200, 30)).save(tmp_path / "tall.png")
    assert os.path.getsize(tmp_path / "wide.png") < 1000
    out = subprocess.run(
        [sys.executable, "-c", EMBED_STRIPS, str(tmp_path), *aspect_models.values()],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    for line in out.stdout.splitlines():
        result = json.loads(line)
        assert result["grew_mb"] < 50, result


def peak_rss_mb(*args) -> float:
    """Run a lookalike command to the end and return its peak resident memory."""
    return peak_mb(*args)


def test_camera_photos_cost_no_more_memory_than_small_images(
    photo_folder, image_folder, tiny_vit, tmp_path
):
    """Twelve-megapixel photos are decoded at the model's size, one image per worker at a
    time: ingesting eight takes no more memory than ingesting twelve 48x48 images."""
    small, photos = (
        peak_rss_mb(
            "ingest",
            "--dataset",
            folder,
            "--model",
            tiny_vit,
            "--batch-size",
            8,
            "--qdrant-path",
            tmp_path / name,
        )
        for name, folder in (("small", image_folder), ("photos", photo_folder))
    )
    assert photos - small < 150, (small, photos)
