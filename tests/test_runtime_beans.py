"""The runtimes agree on real photos: Beans through the real efficientnet-lite0, torch fp32
against OpenVINO at the CPU's best precision (bf16 where native, else fp32)."""

import io

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from lookalike.embed.embedder import Embedder

pytest.importorskip("openvino")


def test_openvino_embeds_beans_as_torch_fp32_does(beans_dir, effnet_dir):
    table = pq.read_table(f"{beans_dir}/data/test-00000-of-00001.parquet").slice(0, 48)
    photos = [Image.open(io.BytesIO(r["image"]["bytes"])) for r in table.to_pylist()]
    torch_fp32 = Embedder(effnet_dir, device="cpu", precision="fp32", runtime="torch")
    ov = Embedder(effnet_dir, device="cpu", precision="auto", runtime="openvino")
    assert ov.runtime.name == "openvino"
    cosine = np.sum(ov.embed(photos) * torch_fp32.embed(photos), axis=1)
    assert cosine.min() >= 0.99, f"per-image cosine {cosine.min():.4f} (mean {cosine.mean():.4f})"
