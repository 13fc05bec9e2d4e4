"""Camera photos are decoded at the size the model needs, and the vectors do not move: against
a full decode and the model's own image processor, per image and in retrieval quality."""

import functools
import io

import datasets
import numpy as np
import pytest
from PIL import Image

from lookalike.augment import EDITS
from lookalike.embed.embedder import Embedder
from lookalike.errors import BadImage
from lookalike.images import open_image


@pytest.fixture(scope="module")
def emb(effnet_dir):
    return Embedder(effnet_dir, device="cpu", precision="fp32")


def reference(emb: Embedder, images: list[Image.Image]) -> np.ndarray:
    """The slow, obvious way: full-size images through the model's own processor."""
    pixels = emb.processor(images=images, return_tensors="pt")["pixel_values"]
    return emb.embed_pixels(pixels)


def fast(emb: Embedder, sources: list) -> np.ndarray:
    """What ingest and search do: decode at the model's size, then the cheap chain."""
    return emb.embed([open_image(s, min_side=emb.decode_side) for s in sources])


def test_photos_decode_small_and_embed_as_a_full_decode_does(emb, photo_folder):
    assert emb.chain is not None and emb.decode_side == 320  # efficientnet-lite0: BiT's chain
    paths = sorted(photo_folder.iterdir())
    full = [open_image(p) for p in paths]
    small = [open_image(p, min_side=emb.decode_side) for p in paths]
    # JPEGs decoded at 1/8 or 1/4 of their size (>= 320), the PNG box-filtered to >= 640;
    # the EXIF-rotated photo stands upright either way.
    expected = {"photo1.jpg": (378, 504), "print.jpg": (504, 378), "scan.png": (1008, 756)}
    assert {p.name: im.size for p, im in zip(paths, small)} == {
        p.name: expected.get(p.name, (504, 378)) for p in paths
    }
    assert full[1].size == (3024, 4032)
    for path, big, little in zip(paths, full, small):  # the same picture, not just the shape
        diff = np.abs(np.asarray(big.resize(little.size), float) - np.asarray(little, float))
        assert diff.mean() < 4, path.name
    cosines = np.sum(reference(emb, full) * fast(emb, paths), axis=1)
    assert cosines.min() >= 0.99, dict(zip([p.name for p in paths], cosines.round(4)))


def test_pixel_limit_holds_on_the_fast_path(photo_folder):
    with pytest.raises(BadImage, match="too many pixels"):
        open_image(photo_folder / "photo0.jpg", max_pixels=10_000_000, min_side=320)


@pytest.fixture(scope="module")
def beans_photos(emb, beans_dir):
    """Beans test images (queries) and as many train images (gallery) as 1024x768 JPEGs,
    embedded both ways: {"full": {split: vectors}, "fast": ...}, labels, decoded queries."""
    photos, labels = {}, {}
    for split in ("train", "test"):
        rows = datasets.load_dataset(beans_dir, split=split).shuffle(seed=0).select(range(128))
        photos[split] = [jpeg(row["image"].convert("RGB").resize((1024, 768))) for row in rows]
        labels[split] = np.array(rows["labels"])
    decoded = {split: [open_image(b) for b in data] for split, data in photos.items()}
    full, quick = functools.partial(reference, emb), functools.partial(fast, emb)
    vectors = {
        "full": {split: chunked(full, images) for split, images in decoded.items()},
        "fast": {split: chunked(quick, data) for split, data in photos.items()},
    }
    return vectors, labels, decoded["test"]


def jpeg(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, "JPEG", quality=90)
    return buf.getvalue()


def chunked(embed, items: list, size: int = 32) -> np.ndarray:
    return np.concatenate([embed(items[i : i + size]) for i in range(0, len(items), size)])


def precision_at_5(vectors: dict, labels: dict) -> float:
    top = np.argsort(-(vectors["test"] @ vectors["train"].T), axis=1)[:, :5]
    return float((labels["train"][top] == labels["test"][:, None]).mean())


def test_fast_path_keeps_precision_at_5_on_beans_photos(emb, beans_photos):
    vectors, labels, _ = beans_photos
    assert fast(emb, [jpeg(Image.new("RGB", (1024, 768)))]).shape == (1, 1280)
    assert open_image(jpeg(Image.new("RGB", (1024, 768))), min_side=320).size == (512, 384)
    cosines = np.sum(vectors["full"]["test"] * vectors["fast"]["test"], axis=1)
    assert cosines.min() >= 0.99
    full, fast_ = (precision_at_5(vectors[path], labels) for path in ("full", "fast"))
    assert full > 0.6  # the photos still say what the leaves are
    assert abs(fast_ - full) < 0.01, (full, fast_)


def test_fast_path_keeps_the_near_duplicate_score(emb, beans_photos):
    """Edited copies (crop, rescale, JPEG, brightness) of 24 query photos must find their
    original among all the photos, as often one way as the other."""
    vectors, _, queries = beans_photos
    copies = [edit(im) for im in queries[:24] for edit in EDITS.values()]
    truth = np.repeat(np.arange(24), len(EDITS))
    scores = {}
    for path, embed in (("full", functools.partial(reference, emb)), ("fast", emb.embed)):
        gallery = np.concatenate([vectors[path]["test"], vectors[path]["train"]])
        found = np.argmax(chunked(embed, copies) @ gallery.T, axis=1)
        scores[path] = float(np.mean(found == truth))
    assert scores["full"] > 0.8
    # Within two of the 96 copies: at the margin a copy's nearest photo may flip either way.
    assert abs(scores["fast"] - scores["full"]) <= 2 / len(copies) + 1e-9, scores
