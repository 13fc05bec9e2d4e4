"""Each model family gets its intended image embedding, from a tiny random config made here."""

import numpy as np
import pytest
import torch
import transformers as tf

from lookalike.embed.embedder import Embedder
from lookalike.embed.optimize import WholeMapMean, whole_map_pools
from tests.conftest import make_image

VIT = dict(
    image_size=32,
    patch_size=8,
    hidden_size=32,
    num_hidden_layers=1,
    num_attention_heads=2,
    intermediate_size=64,
)
CNN = dict(hidden_sizes=[8, 16], depths=[1, 1], num_stages=2)


def cls_token(model, px):
    return model(pixel_values=px).last_hidden_state[:, 0]


def pooler(model, px):
    return model(pixel_values=px).pooler_output.flatten(1)


def image_features(model, px):
    return model.get_image_features(pixel_values=px).pooler_output


FAMILIES = {
    "vit": (tf.ViTConfig(**VIT), "cls", 32, cls_token),
    "deit": (tf.DeiTConfig(**VIT), "cls", 32, cls_token),
    "dinov2": (tf.Dinov2Config(**VIT), "cls", 32, cls_token),
    "swin": (
        tf.SwinConfig(
            image_size=32, patch_size=4, embed_dim=8, depths=[1, 1], num_heads=[1, 2], window_size=4
        ),
        "pooler",
        16,
        pooler,
    ),
    "convnext": (tf.ConvNextConfig(**CNN), "pooler", 16, pooler),
    "regnet": (
        tf.RegNetConfig(embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1], groups_width=8),
        "pooler",
        16,
        pooler,
    ),
    "resnet": (
        tf.ResNetConfig(embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1]),
        "pooler",
        16,
        pooler,
    ),
    "efficientnet": (
        tf.EfficientNetConfig(
            image_size=32,
            width_coefficient=0.25,
            depth_coefficient=0.2,
            hidden_dim=320,
            initializer_range=0.5,
        ),
        "pooler",
        320,
        pooler,
    ),
    "clip": (
        tf.CLIPConfig(
            vision_config=VIT,
            projection_dim=24,
            text_config=dict(
                hidden_size=16,
                num_hidden_layers=1,
                num_attention_heads=2,
                intermediate_size=32,
                vocab_size=100,
            ),
        ),
        "image_features",
        24,
        image_features,
    ),
    "siglip": (
        tf.SiglipConfig(
            vision_config=VIT,
            text_config=dict(
                hidden_size=32,
                num_hidden_layers=1,
                num_attention_heads=2,
                intermediate_size=32,
                vocab_size=100,
            ),
        ),
        "image_features",
        32,
        image_features,
    ),
}


@pytest.fixture(scope="module", params=sorted(FAMILIES))
def family(request, tmp_path_factory):
    config, pooling, dim, reference = FAMILIES[request.param]
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp(request.param)
    tf.AutoModel.from_config(config).save_pretrained(folder)
    tf.ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(folder)
    return request.param, str(folder), pooling, dim, reference


def test_family_embedding_is_the_intended_vector(family):
    name, folder, pooling, dim, reference = family
    emb = Embedder(folder, device="cpu", precision="fp32")
    assert (emb.model_type, emb.pooling, emb.dim) == (name, pooling, dim)
    images = [make_image((40 * i, 90, 160), seed=i) for i in range(3)]
    vectors = emb.embed(images)
    # The reference runs an untouched copy of the model, with no folding or channels-last.
    fresh = tf.AutoModel.from_pretrained(folder).eval()
    with torch.no_grad():
        expected = reference(fresh, emb.preprocess(images))
    expected = torch.nn.functional.normalize(expected, dim=-1).numpy()
    np.testing.assert_allclose(vectors, expected, atol=1e-4)
    assert not np.allclose(vectors[0], vectors[1])  # images are told apart


def test_cnns_run_channels_last_with_folded_batch_norms(family):
    name, folder, *_ = family
    emb = Embedder(folder, device="cpu", precision="fp32")
    assert emb.channels_last == (name in {"convnext", "regnet", "resnet", "efficientnet"})
    if name in {"regnet", "resnet", "efficientnet"}:
        assert emb.folded > 0
        assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in emb.model.modules())


@pytest.mark.parametrize("pooling", ["cls", "mean"])
def test_pooling_override(tiny_vit, pooling):
    emb = Embedder(tiny_vit, device="cpu", precision="fp32", pooling=pooling)
    assert emb.pooling == pooling and emb.dim == 32


def test_compile_gives_the_same_vectors(tiny_vit):
    images = [make_image((200, 30, 30), seed=1), make_image((30, 30, 200), seed=2)]
    eager = Embedder(tiny_vit, device="cpu", precision="fp32").embed(images)
    compiled = Embedder(tiny_vit, device="cpu", precision="fp32", compile=True).embed(images)
    np.testing.assert_allclose(compiled, eager, atol=1e-5)


@pytest.mark.parametrize("name", ["efficientnet", "resnet"])
def test_whole_map_pools_give_the_same_embedding(name):
    """EfficientNet's pool over a window wider than its map, as a mean (what --compile runs)."""
    torch.manual_seed(0)
    model = tf.AutoModel.from_config(FAMILIES[name][0]).eval()
    px = torch.rand(2, 3, 32, 32)
    with torch.inference_mode():
        before = model(pixel_values=px).pooler_output
        replaced = whole_map_pools(model)
        after = model(pixel_values=px).pooler_output
    assert replaced == (name == "efficientnet")  # ResNet's adaptive pool is left alone
    torch.testing.assert_close(after, before)
    small_window = torch.nn.AvgPool2d(2, ceil_mode=True)  # smaller than the map: unchanged
    x = torch.rand(1, 3, 5, 5)
    torch.testing.assert_close(WholeMapMean(small_window)(x), small_window(x))
