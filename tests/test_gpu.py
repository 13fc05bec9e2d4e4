"""The CUDA path: device choice, reduced precision, the ingest worker on a GPU. Skipped without
CUDA; bench/gpu_check.sh runs these on the GPU machine with the real Beans data and model."""

import numpy as np
import pytest
import torch

from lookalike.embed.embedder import Embedder, resolve_precision
from lookalike.ingest import ingest
from lookalike.search import Searcher
from lookalike.source import load_source
from lookalike.store import StoreConfig, connect

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU"),
]


def precision_at_5(queries, q_labels, gallery, g_labels) -> float:
    top = np.argsort(-(queries @ gallery.T), axis=1)[:, :5]
    return float((np.asarray(g_labels)[top] == np.asarray(q_labels)[:, None]).mean())


def test_auto_picks_the_gpu_and_reduced_precision(tiny_vit):
    emb = Embedder(tiny_vit, device="auto")
    assert emb.device.type == "cuda"
    expected = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    assert emb.precision == resolve_precision("auto", torch.device("cuda")) == expected
    assert emb.default_batch_size == 64


@pytest.fixture(scope="module")
def beans_vectors(effnet_dir, beans_dir):
    """Train (gallery, 300) and test (query, 128) vectors from cuda/auto and cpu/fp32."""
    sets = {}
    for split, n in (("train", 300), ("test", 128)):
        records = load_source(beans_dir, split, limit=n, seed=0).load(range(n))[0]
        sets[split] = ([r.image for r in records], [r.label for r in records])
    out = {}
    for device, precision in (("cuda", "auto"), ("cpu", "fp32")):
        emb = Embedder(effnet_dir, device=device, precision=precision)
        out[device] = {split: emb.embed(images) for split, (images, _) in sets.items()}
    return out, {split: labels for split, (_, labels) in sets.items()}


def test_cuda_vectors_agree_with_cpu_fp32_per_image(beans_vectors):
    vectors, _ = beans_vectors
    for split in ("train", "test"):
        assert np.sum(vectors["cuda"][split] * vectors["cpu"][split], axis=1).min() >= 0.99


def test_cuda_keeps_precision_at_5(beans_vectors):
    vectors, labels = beans_vectors
    scores = {
        device: precision_at_5(v["test"], labels["test"], v["train"], labels["train"])
        for device, v in vectors.items()
    }
    assert scores["cpu"] > 0.6 and abs(scores["cuda"] - scores["cpu"]) <= 0.01


def test_ingest_and_search_on_the_gpu(effnet_dir, beans_dir, tmp_path):
    emb = Embedder(effnet_dir, device="cuda")
    source = load_source(beans_dir, "train", limit=200, seed=1)
    with connect(StoreConfig(path=str(tmp_path / "store"))) as store:
        report = ingest(source, emb, store, "gpu")
        assert (report.embedded, store.info("gpu").points) == (200, 200)
        first = source.record(int(source.rows[0]))
        hits = Searcher("gpu", store=store, embedder=emb).search(first.image, k=3)
    assert hits[0].id == first.id and hits[0].score >= 0.99
