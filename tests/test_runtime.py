"""The OpenVINO runtime: each family converts (or falls back to torch, saying why), its
vectors are torch's, the conversion is cached and rebuilt when the model changes, and a
cached model runs without torch or transformers."""

import json
import os
import subprocess
import sys
import warnings

import numpy as np
import pytest
import torch
import transformers as tf

from lookalike.embed import ModelSettings
from lookalike.embed.embedder import Embedder
from lookalike.embed.runtime import cache, resolve_runtime
from lookalike.embed.runtime.cached import CachedEmbedder
from lookalike.embed.runtime.convert import ConversionNote
from lookalike.errors import ModelLoadError
from tests.conftest import make_image
from tests.test_families import FAMILIES

pytest.importorskip("openvino")


def images(n=3):
    return [make_image((40 * i, 90, 160), seed=i) for i in range(n)]


def cosines(a, b):
    return np.sum(a * b, axis=1)  # rows are unit length


@pytest.fixture(scope="module", params=sorted(FAMILIES))
def family(request, tmp_path_factory):
    config, pooling, dim, _ = FAMILIES[request.param]
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp(request.param)
    tf.AutoModel.from_config(config).save_pretrained(folder)
    tf.ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(folder)
    return request.param, str(folder)


def test_each_family_converts_and_agrees_with_torch(family):
    name, folder = family
    torch_emb = Embedder(folder, device="cpu", precision="fp32", runtime="torch")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ov_emb = Embedder(folder, device="cpu", precision="fp32", runtime="openvino")
    said = [str(w.message) for w in caught]
    assert ov_emb.runtime.name == "openvino", said  # every supported family converts
    assert any("converted" in s and "OpenVINO" in s for s in said)
    ims = images()
    assert cosines(ov_emb.embed(ims), torch_emb.embed(ims)).min() >= 0.999
    # Any batch size: the batch dimension is dynamic.
    np.testing.assert_allclose(ov_emb.embed(ims[:1]), ov_emb.embed(ims)[:1], atol=1e-5)


@pytest.mark.parametrize("fixture", ["tiny_clip", "tiny_siglip"])
def test_text_queries_share_the_image_space_under_openvino(fixture, request):
    """The image tower runs in OpenVINO; words still embed with the torch text tower, into
    the same space."""
    from lookalike.embed.text import TextEncoder

    folder = request.getfixturevalue(fixture)
    ov_emb = Embedder(folder, device="cpu", precision="fp32", runtime="openvino")
    torch_emb = Embedder(folder, device="cpu", precision="fp32", runtime="torch")
    assert ov_emb.runtime.name == "openvino" and ov_emb.text_tower
    assert cosines(ov_emb.embed(images()), torch_emb.embed(images())).min() >= 0.999
    words = ["a leaf with spots"]
    np.testing.assert_allclose(
        TextEncoder(ov_emb).embed(words), TextEncoder(torch_emb).embed(words), atol=1e-6
    )


def test_the_conversion_is_cached_and_rebuilt_when_the_model_changes(tiny_vit, tmp_path):
    folder = tmp_path / "model"
    folder.mkdir()
    for name in os.listdir(tiny_vit):
        (folder / name).write_bytes((tmp_path.parent / tiny_vit / name).read_bytes())

    def change_weights(by: float) -> None:
        model = tf.AutoModel.from_pretrained(folder)
        with torch.no_grad():
            for p in model.parameters():
                p.add_(by)
        model.save_pretrained(folder)

    # The cache is keyed by content: a copy of tiny_vit would find tiny_vit's conversion.
    change_weights(0.05)

    def notes():
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            emb = Embedder(str(folder), device="cpu", precision="fp32", runtime="openvino")
        return emb, [w for w in caught if issubclass(w.category, ConversionNote)]

    first, said = notes()
    assert len(said) == 1  # the conversion time, once
    second, said = notes()
    assert said == []  # loaded from the cache
    np.testing.assert_allclose(second.embed(images()), first.embed(images()), atol=1e-6)
    change_weights(0.1)
    third, said = notes()
    assert len(said) == 1  # new weights: converted again
    assert cosines(third.embed(images()), first.embed(images())).min() < 0.9999
    entries = [p for p in (cache.cache_root() / "models").iterdir() if not p.name.startswith(".")]
    assert all((p / "meta.json").exists() for p in entries)  # never a half-written entry


def test_a_family_that_does_not_convert_falls_back_to_torch_with_one_line(tiny_vit, monkeypatch):
    import openvino as ov

    def refuse(*args, **kwargs):
        raise RuntimeError("unsupported operation aten::frobnicate\nmore detail")

    monkeypatch.setattr(ov, "convert_model", refuse)
    monkeypatch.setattr(cache, "read_meta", lambda key: None)  # not from the cache
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        emb = Embedder(tiny_vit, device="cpu", precision="fp32", runtime="openvino")
    said = [str(w.message) for w in caught if "did not convert" in str(w.message)]
    assert emb.runtime.name == "torch"
    assert len(said) == 1 and "aten::frobnicate" in said[0] and "\n" not in said[0]
    assert "running it with torch" in said[0]
    assert emb.embed(images()).shape == (3, 32)


def test_runtime_choice():
    assert resolve_runtime("torch", "cpu") == "torch"
    assert resolve_runtime("auto", "cuda") == "torch"
    assert resolve_runtime("auto", "cpu") == "openvino"  # installed here
    assert resolve_runtime("auto", "cpu", compile=True) == "torch"
    with pytest.raises(ModelLoadError, match="runs on the CPU"):
        resolve_runtime("openvino", "cuda")
    with pytest.raises(ModelLoadError, match="unknown runtime"):
        resolve_runtime("onnx", "cpu")


def test_numpy_normalisation_gives_the_torch_numbers(tiny_vit):
    emb = Embedder(tiny_vit, device="cpu", precision="fp32", runtime="torch")
    pixels = emb.prepare(images(4))
    want = emb.chain.normalize(pixels).numpy()
    got = emb.chain.normalize_array(pixels.numpy())
    np.testing.assert_allclose(got, want, atol=1e-6)
    assert got.flags["C_CONTIGUOUS"] and got.dtype == np.float32


def test_a_cached_model_runs_without_torch_or_transformers(tiny_vit, tmp_path):
    emb = Embedder(tiny_vit, device="cpu", precision="fp32", runtime="openvino")
    want = emb.embed(images())
    photo = str(tmp_path / "photo.png")
    images()[0].save(photo)  # lossless: the same pixels in the child process
    cached = ModelSettings(device="cpu", precision="fp32").load(tiny_vit, emb.pooling)
    assert isinstance(cached, CachedEmbedder)
    assert (cached.dim, cached.pooling, cached.decode_side) == (
        emb.dim,
        emb.pooling,
        emb.decode_side,
    )
    np.testing.assert_allclose(cached.embed(images()), want, atol=1e-5)
    code = (
        "import sys, json\n"
        "from lookalike.embed import ModelSettings\n"
        "from PIL import Image\n"
        f"e = ModelSettings(device='cpu', precision='fp32').load({tiny_vit!r}, {emb.pooling!r})\n"
        f"v = e.embed([Image.open({photo!r})])\n"
        "heavy = [m for m in ('torch', 'transformers', 'datasets', 'pandas') if m in sys.modules]\n"
        "print(json.dumps({'type': type(e).__name__, 'heavy': heavy, 'v': v[0].tolist()}))\n"
    )
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=root, check=True
    )
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report["type"] == "CachedEmbedder" and report["heavy"] == []
    np.testing.assert_allclose(report["v"], want[0], atol=1e-5)


def test_a_collection_built_with_openvino_answers_torch_queries(tiny_vit, image_folder, tmp_path):
    """The collection records its runtime for information; queries run with the other runtime
    find the same images."""
    from click.testing import CliRunner

    from lookalike.cli.main import cli

    store = ["--qdrant-path", str(tmp_path / "store")]
    args = ["ingest", "--dataset", str(image_folder), "--model", tiny_vit, "--runtime", "openvino"]
    result = CliRunner().invoke(cli, [*args, *store])
    assert result.exit_code == 0, result.output
    info = json.loads(CliRunner().invoke(cli, ["info", "--json", *store]).stdout)
    assert (info["runtime"], info["precision"]) in {("openvino", "fp32"), ("openvino", "bf16")}
    query = str(next(image_folder.glob("red/*.jpg")))
    found = {}
    for runtime in ("openvino", "torch"):
        result = CliRunner().invoke(
            cli, ["search", query, "--json", "--k", "3", "--runtime", runtime, *store]
        )
        assert result.exit_code == 0, result.output
        hits = json.loads(result.stdout.splitlines()[0])["hits"]
        found[runtime] = [h["id"] for h in hits]
    assert found["openvino"] == found["torch"]


def test_int8_is_refused_in_words_before_any_model_loads(tiny_vit):
    with pytest.raises(ModelLoadError, match="int8 is not offered: quantized") as e:
        ModelSettings(model=tiny_vit, precision="int8").check()
    assert e.value.kind == "precision"
