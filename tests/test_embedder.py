import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from lookalike.embed.embedder import Embedder
from lookalike.errors import ModelLoadError
from tests.conftest import make_image


def images(n=3):
    return [make_image((30 * i, 100, 200 - 30 * i), seed=i) for i in range(n)]


def test_vit_uses_cls_token_and_unit_vectors(tiny_vit):
    emb = Embedder(tiny_vit, device="cpu", precision="fp32")
    assert (emb.pooling, emb.dim) == ("cls", 32)
    vectors = emb.embed(images())
    assert vectors.shape == (3, 32) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-5)

    # The tutorial's embedding: CLS token of last_hidden_state, here normalised.
    pixels = emb.processor(images=images(), return_tensors="pt")["pixel_values"]
    with torch.no_grad():
        cls = emb.model(pixel_values=pixels).last_hidden_state[:, 0]
    expected = torch.nn.functional.normalize(cls, dim=-1).numpy()
    np.testing.assert_allclose(vectors, expected, atol=1e-5)


def test_cnn_uses_pooler_output(effnet_dir):
    emb = Embedder(effnet_dir, device="cpu", precision="fp32")
    assert (emb.pooling, emb.dim) == ("pooler", 1280)
    pixels = emb.processor(images=images(2), return_tensors="pt")["pixel_values"]
    with torch.no_grad():
        out = emb.model(pixel_values=pixels)
    assert out.last_hidden_state.ndim == 4  # a feature map: [:, 0] would be one channel
    expected = torch.nn.functional.normalize(out.pooler_output, dim=-1).numpy()
    np.testing.assert_allclose(emb.embed(images(2)), expected, atol=1e-5)


def test_pooling_override_mean(tiny_vit):
    emb = Embedder(tiny_vit, device="cpu", pooling="mean", precision="fp32")
    pixels = emb.processor(images=images(1), return_tensors="pt")["pixel_values"]
    with torch.no_grad():
        mean = emb.model(pixel_values=pixels).last_hidden_state.mean(dim=1)
    expected = torch.nn.functional.normalize(mean, dim=-1).numpy()
    np.testing.assert_allclose(emb.embed(images(1)), expected, atol=1e-5)


def test_embedding_is_deterministic_and_mode_independent(tiny_vit):
    emb = Embedder(tiny_vit, device="cpu", precision="fp32")
    rgb = make_image((10, 200, 30), seed=5)
    grey_alpha = rgb.convert("RGBA")
    np.testing.assert_allclose(emb.embed([rgb]), emb.embed([rgb]), atol=1e-6)
    assert emb.embed([Image.new("L", (20, 20))]).shape == (1, 32)
    assert emb.embed([grey_alpha.convert("RGB")]).shape == (1, 32)


@pytest.mark.parametrize(
    "model, expected, kind",
    [
        ("nobody/no-such-model", "not in the Hugging Face cache", "offline"),
        ("../nope/model", "model folder '../nope/model' does not exist", "missing"),
        (".", "the folder must hold a transformers model", "unreadable"),
    ],
)
def test_unloadable_model_says_what_and_how(model, expected, kind):
    with pytest.raises(ModelLoadError) as err:
        Embedder(model, device="cpu")
    assert repr(model) in str(err.value) and expected in str(err.value)
    assert (err.value.model, err.value.kind) == (model, kind) and "--" not in str(err.value)


def test_without_network_a_model_in_the_cache_loads_at_once(no_network, tiny_vit):
    import shutil

    from huggingface_hub import constants

    # The layout huggingface_hub leaves after downloading "nobody/cached-vit".
    repo = Path(constants.HF_HUB_CACHE) / "models--nobody--cached-vit"
    shutil.copytree(tiny_vit, repo / "snapshots" / "0123abc")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0123abc")
    started = time.perf_counter()
    emb = Embedder("nobody/cached-vit", device="cpu")
    assert emb.dim == 32 and time.perf_counter() - started < 30


def test_without_network_a_hub_model_fails_at_once(no_network):
    started = time.perf_counter()
    with pytest.raises(ModelLoadError, match="cannot be reached to fetch it") as err:
        Embedder("nateraw/vit-base-beans", device="cpu")
    assert err.value.kind == "unreachable" and time.perf_counter() - started < 5


def test_unknown_pooling_is_refused(tiny_vit):
    with pytest.raises(ModelLoadError, match="unknown pooling"):
        Embedder(tiny_vit, pooling="max")


def test_model_code_never_runs_unless_asked(tiny_vit, tmp_path):
    """Python code shipped in a model folder runs only with trust_remote_code."""
    import json
    import shutil

    folder = tmp_path / "remote-code"
    shutil.copytree(tiny_vit, folder)
    marker = tmp_path / "ran"
    (folder / "evil.py").write_text(f"open({str(marker)!r}, 'w').write('pwned')\n")
    config = json.loads((folder / "config.json").read_text())
    config["auto_map"] = {"AutoConfig": "evil.EvilConfig", "AutoModel": "evil.EvilModel"}
    (folder / "config.json").write_text(json.dumps(config))
    emb = Embedder(str(folder), device="cpu")  # the built-in ViT code; auto_map ignored
    assert emb.dim == 32 and not marker.exists()
    with pytest.raises(ModelLoadError):  # asked for: the shipped code runs (and fails here)
        Embedder(str(folder), device="cpu", trust_remote_code=True)
    assert marker.read_text() == "pwned"
