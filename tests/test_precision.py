"""Reduced precision must not change what lookalike retrieves (real Beans, real model)."""

import numpy as np
import pytest

from lookalike.embed.embedder import Embedder, cpu_has_native_bf16, resolve_precision
from lookalike.source import load_source

NATIVE = cpu_has_native_bf16()


def top_5(queries, gallery) -> np.ndarray:
    return np.argsort(-(queries @ gallery.T), axis=1)[:, :5]


def precision_at_5(queries, q_labels, gallery, g_labels) -> float:
    top = top_5(queries, gallery)
    return float((np.asarray(g_labels)[top] == np.asarray(q_labels)[:, None]).mean())


@pytest.fixture(scope="module")
def vectors(effnet_dir, beans_dir):
    """Train (gallery) and test (query) vectors in fp32 and bf16, with their labels.

    Without native bf16 the CPU emulates it ~10x slower than fp32 (auto never picks it there;
    tests/test_gpu.py checks bf16 on 300/128 images on a GPU): a smaller set keeps the suite
    fast, and the checks below ask what a small set can say."""
    sizes = (500, 128) if NATIVE else (48, 24)
    sets = {}
    for split, n in zip(("train", "test"), sizes):
        records = load_source(beans_dir, split, limit=n, seed=0).load(range(n))[0]
        sets[split] = ([r.image for r in records], [r.label for r in records])
    out = {}
    for precision in ("fp32", "bf16"):
        emb = Embedder(effnet_dir, device="cpu", precision=precision)
        out[precision] = {split: emb.embed(images) for split, (images, _) in sets.items()}
    return out, {split: labels for split, (_, labels) in sets.items()}


def test_bf16_vectors_agree_with_fp32_per_image(vectors):
    by_precision, _ = vectors
    for split in ("train", "test"):
        cosines = np.sum(by_precision["fp32"][split] * by_precision["bf16"][split], axis=1)
        assert cosines.min() > 0.99  # unit vectors


def test_bf16_keeps_precision_at_5(vectors):
    by_precision, labels = vectors
    scores = {
        p: precision_at_5(v["test"], labels["test"], v["train"], labels["train"])
        for p, v in by_precision.items()
    }
    assert scores["fp32"] > (0.6 if NATIVE else 0.5)
    # One neighbour of 24 queries is 0.008: near-ties in a small gallery flip more easily.
    assert abs(scores["bf16"] - scores["fp32"]) <= (0.01 if NATIVE else 0.05)


def test_bf16_finds_the_same_neighbours(vectors):
    by_precision, _ = vectors
    fp32, bf16 = (top_5(v["test"], v["train"]) for v in by_precision.values())
    overlap = np.mean([len(set(a) & set(b)) / 5 for a, b in zip(fp32, bf16)])
    assert overlap >= 0.85 and np.mean(fp32[:, 0] == bf16[:, 0]) >= 0.9


def test_auto_precision_is_fp32_where_reduced_precision_would_not_pay():
    import torch

    assert resolve_precision("auto", torch.device("mps")) == "fp32"
    assert resolve_precision("fp32", torch.device("cpu")) == "fp32"
    assert resolve_precision("bf16", torch.device("cpu")) == "bf16"
