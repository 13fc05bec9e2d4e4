"""Reduced precision must not change what lookalike retrieves (real Beans, real model).

The checks are what a user sees (precision on their labels, a copy of a photo found as its
nearest neighbour), not exact agreement of neighbours: bf16 legitimately reorders near-ties,
and how many depends on the CPU's kernels (AVX-512 BF16 or emulation). Both CI CPU kinds run
the same assertions; only the set sizes differ, since emulated bf16 is ~10x slower."""

import io

import numpy as np
import pytest
from PIL import Image

from lookalike.embed.embedder import Embedder, cpu_has_native_bf16, resolve_precision
from lookalike.source import load_source

NATIVE = cpu_has_native_bf16()
COPIES = 24


def top_k(queries, gallery, k=5) -> np.ndarray:
    return np.argsort(-(queries @ gallery.T), axis=1)[:, :k]


def precision_at_5(queries, q_labels, gallery, g_labels) -> float:
    top = top_k(queries, gallery)
    return float((np.asarray(g_labels)[top] == np.asarray(q_labels)[:, None]).mean())


def edited_copy(image: Image.Image) -> Image.Image:
    """What a near-duplicate looks like in a library: the photo re-saved at JPEG quality 75."""
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, "JPEG", quality=75)
    return Image.open(io.BytesIO(buffer.getvalue()))


@pytest.fixture(scope="module")
def vectors(effnet_dir, beans_dir):
    """Train (gallery), test (query) and edited copies of the first test images, in fp32 and
    bf16, with their labels.

    Without native bf16 the CPU emulates it ~10x slower than fp32 (auto never picks it there;
    tests/test_gpu.py checks bf16 on 300/128 images on a GPU): a smaller set keeps the suite
    fast there."""
    sizes = (500, 128) if NATIVE else (48, 24)
    sets = {}
    for split, n in zip(("train", "test"), sizes):
        records = load_source(beans_dir, split, limit=n, seed=0).load(range(n))[0]
        sets[split] = ([r.image for r in records], [r.label for r in records])
    sets["copies"] = ([edited_copy(im) for im in sets["test"][0][:COPIES]], [])
    out = {}
    for precision in ("fp32", "bf16"):
        emb = Embedder(effnet_dir, device="cpu", precision=precision)
        out[precision] = {split: emb.embed(images) for split, (images, _) in sets.items()}
    return out, {split: labels for split, (_, labels) in sets.items()}


def test_bf16_vectors_agree_with_fp32_per_image(vectors):
    by_precision, _ = vectors
    for split in ("train", "test", "copies"):
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


def test_bf16_finds_each_photo_s_edited_copy_first(vectors):
    """Near-duplicate retrieval is unchanged: with the copies in the gallery, an original's
    nearest neighbour is its own copy as often in bf16 as in fp32 (one near-tie may flip)."""
    by_precision, _ = vectors
    found = {}
    for precision, v in by_precision.items():
        gallery = np.concatenate([v["copies"], v["train"]])
        first = top_k(v["test"][:COPIES], gallery, k=1)[:, 0]
        found[precision] = int((first == np.arange(COPIES)).sum())
    assert found["fp32"] >= COPIES - 2, found
    assert found["bf16"] >= found["fp32"] - 1, found


def test_bf16_neighbours_mostly_agree(vectors):
    """A loose guard against a broken bf16 path (which would share almost no neighbours);
    near-ties reorder legitimately, so this is no exact-agreement check."""
    by_precision, _ = vectors
    fp32, bf16 = (top_k(v["test"], v["train"]) for v in by_precision.values())
    overlap = np.mean([len(set(a) & set(b)) / 5 for a, b in zip(fp32, bf16)])
    assert overlap >= 0.7 and np.mean(fp32[:, 0] == bf16[:, 0]) >= 0.75


def test_auto_precision_is_fp32_where_reduced_precision_would_not_pay():
    import torch

    assert resolve_precision("auto", torch.device("mps")) == "fp32"
    assert resolve_precision("fp32", torch.device("cpu")) == "fp32"
    assert resolve_precision("bf16", torch.device("cpu")) == "bf16"
