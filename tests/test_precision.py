"""Reduced precision must not change what lookalike retrieves (real Beans, real model)."""

import numpy as np
import pytest

from ingest import ingest, load_source
from lookalike.embedder import Embedder, resolve_precision
from lookalike.store import StoreConfig, connect
from search import Searcher, evaluate


@pytest.fixture(scope="module")
def embedders(effnet_dir):
    return {p: Embedder(effnet_dir, device="cpu", precision=p) for p in ("fp32", "bf16")}


def test_bf16_vectors_agree_with_fp32_per_image(embedders, beans_dir):
    images = [r.image for r in load_source(beans_dir, "validation").load(range(48))[0]]
    fp32, bf16 = (embedders[p].embed(images) for p in ("fp32", "bf16"))
    cosines = np.sum(fp32 * bf16, axis=1)  # unit vectors
    assert cosines.min() > 0.99


def test_bf16_keeps_precision_at_5(embedders, beans_dir, tmp_path):
    source = load_source(beans_dir, "train", limit=500, seed=0)
    scores = {}
    with connect(StoreConfig(path=str(tmp_path / "store"))) as store:
        for precision, emb in embedders.items():
            ingest(source, emb, store, precision)
            scores[precision] = evaluate(Searcher(precision, store=store, embedder=emb), "test")
    assert scores["fp32"].precision_at_k > 0.7
    assert abs(scores["bf16"].precision_at_k - scores["fp32"].precision_at_k) <= 0.01


def test_auto_precision_is_fp32_where_reduced_precision_would_not_pay():
    import torch

    assert resolve_precision("auto", torch.device("mps")) == "fp32"
    assert resolve_precision("fp32", torch.device("cpu")) == "fp32"
    assert resolve_precision("bf16", torch.device("cpu")) == "bf16"
