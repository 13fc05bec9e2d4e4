"""The cheap preprocessing gives what the model's own image processor gives, or is not used."""

import numpy as np
import pytest
import torch
import transformers as tf
from PIL import Image

from lookalike.embed.pixels import MAX_ASPECT, PixelChain, clamp_aspect, decode_side

STANDARD = {
    "vit": tf.ViTImageProcessorPil(),  # 224x224, no crop, bilinear
    "bit": tf.BitImageProcessorPil(  # efficientnet-lite0's and DINOv2's: shortest edge + crop
        size={"shortest_edge": 256}, crop_size={"height": 224, "width": 224}
    ),
    "clip": tf.CLIPImageProcessorPil(),  # its own mean and std
    "deit": tf.DeiTImageProcessorPil(),  # 256x256 then a 224 crop
    "crop-overhangs": tf.BitImageProcessorPil(  # a crop wider than the resized image: padded
        size={"shortest_edge": 200}, crop_size={"height": 224, "width": 300}
    ),
    "vit-tiny": tf.ViTImageProcessorPil(size={"height": 32, "width": 32}),
}
# Landscape, portrait, square, tiny, and long strips (still within MAX_ASPECT).
SIZES = [(517, 300), (300, 517), (256, 256), (7, 5), (224, 224), (1000, 70), (60, 900)]


def random_image(width: int, height: int, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


@pytest.mark.parametrize("name", sorted(STANDARD))
def test_chain_gives_the_processors_own_output(name):
    processor = STANDARD[name]
    chain = PixelChain.of(processor)
    assert chain is not None
    for i, size in enumerate(SIZES):
        image = random_image(*size, seed=i)
        expected = processor(images=[image], return_tensors="pt")["pixel_values"]
        pixels = torch.from_numpy(np.stack([chain.geometry(image)]))
        assert pixels.dtype == torch.uint8  # what crosses to the model's device
        got = chain.normalize(pixels)
        assert got.shape == expected.shape, size
        torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)
        assert got.is_contiguous(memory_format=torch.channels_last)


@pytest.mark.parametrize(
    "processor",
    [
        tf.ConvNextImageProcessorPil(),  # crop_pct resize
        tf.EfficientNetImageProcessorPil(),  # offset rescale
        tf.BeitImageProcessorPil(),  # its own _preprocess
        tf.ViTImageProcessorPil(do_resize=False),  # output size would follow each image
        tf.BitImageProcessorPil(do_center_crop=False),  # likewise
    ],
    ids=["convnext", "efficientnet", "beit", "no-resize", "no-crop"],
)
def test_other_processors_are_run_as_they_are(processor):
    assert PixelChain.of(processor) is None


def test_decode_side_leaves_the_final_resize_downsampling():
    assert decode_side(STANDARD["bit"]) == 320  # shortest edge 256, margin 1.25
    assert decode_side(STANDARD["vit"]) == 280
    convnext = tf.ConvNextImageProcessorPil(size={"shortest_edge": 224})
    assert decode_side(convnext) == 320  # 224 / crop_pct 0.875 = 256, margin 1.25
    assert decode_side(tf.ViTImageProcessorPil(do_resize=False)) is None
    assert decode_side(tf.DetrImageProcessorPil()) is None  # longest edge: size follows image


def test_an_extreme_strip_is_cut_to_its_centre_with_the_same_crop():
    """The rule that bounds memory: beyond MAX_ASPECT:1 only the central part is resized, and
    the center crop that follows sees the same pixels."""
    chain = PixelChain.of(STANDARD["bit"])
    strip = random_image(40 * MAX_ASPECT, 20)  # 2x the limit
    assert clamp_aspect(strip).size == (20 * MAX_ASPECT, 20)
    assert clamp_aspect(strip.transpose(Image.Transpose.TRANSPOSE)).size == (20, 20 * MAX_ASPECT)
    full = STANDARD["bit"](images=[strip], return_tensors="pt")["pixel_values"]
    got = chain.normalize(torch.from_numpy(np.stack([chain.geometry(strip)])))
    # A sub-pixel shift at most: the strip's centre column lands within one resized pixel.
    assert torch.nn.functional.cosine_similarity(got.flatten(), full.flatten(), dim=0) > 0.95
