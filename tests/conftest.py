"""Fixtures: tiny random models and image sets made here, the real Beans data and
efficientnet-lite0 from ../shared, and a real embedded Qdrant in tmp folders."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

# ../shared beside the checkout; LOOKALIKE_TEST_SHARED points elsewhere (the GPU machine gets a
# copy carried inside the repository, see bench/gpu_check.sh).
SHARED = Path(
    os.environ.get("LOOKALIKE_TEST_SHARED") or Path(__file__).resolve().parents[2] / "shared"
)
BEANS = SHARED / "data" / "beans"
EFFNET = SHARED / "models" / "efficientnet-lite0"
COLOURS = {"red": (200, 40, 40), "green": (40, 180, 60), "blue": (40, 60, 200)}


# Set on import, before any test module imports huggingface_hub, transformers or datasets:
# they read these once, when first imported, so a fixture would set them too late (the hub
# would then be retried for ~45 s per id, and the user's own caches written to).
_CACHE = tempfile.mkdtemp(prefix="lookalike-test-hf-")
os.environ.update(
    {
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "HF_HOME": _CACHE,
        "HF_DATASETS_CACHE": os.path.join(_CACHE, "datasets"),
        "TOKENIZERS_PARALLELISM": "false",
    }
)
# A developer's LOOKALIKE_* settings (the README's offline block exports some) must not reach
# any test: cleared here, before session and module fixtures run commands, not only per test.
# LOOKALIKE_TEST_* are the suite's own settings, read by test modules.
for _key in [k for k in os.environ if k.startswith("LOOKALIKE_")]:
    if not _key.startswith("LOOKALIKE_TEST_"):
        del os.environ[_key]
# As the commands do (lookalike.cli.environment.sleep_idle_threads): torch's OpenMP threads
# sleep between ops instead of spinning, which on 2 cores took the CPU from the decoding
# threads and from the tests' child processes.
if "OMP_WAIT_POLICY" not in os.environ and "GOMP_SPINCOUNT" not in os.environ:
    os.environ.update({"OMP_WAIT_POLICY": "PASSIVE", "GOMP_SPINCOUNT": "1000"})


def pytest_unconfigure(config):
    shutil.rmtree(_CACHE, ignore_errors=True)


@pytest.fixture(autouse=True)
def _clean_lookalike_env(monkeypatch, tmp_path):
    """Tests run in a tmp cwd, untouched by a developer's LOOKALIKE_* settings."""
    for key in [k for k in os.environ if k.startswith("LOOKALIKE_")]:
        monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def no_network(monkeypatch):
    """A machine without network that did not set HF_HUB_OFFLINE: the hub's address refuses
    connections (as a missing route or DNS would, but at once)."""
    from huggingface_hub import constants

    from lookalike import hub

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")
    for proxy in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY"):
        monkeypatch.delenv(proxy, raising=False)
    hub.reachable.cache_clear()
    yield
    hub.reachable.cache_clear()


def need_shared(path: Path) -> Path:
    """../shared is part of the project's test data: in CI its absence is a failure."""
    if not path.exists():
        if os.environ.get("CI") == "true":
            pytest.fail(f"{path} is missing; CI must run with ../shared beside the checkout")
        pytest.skip(f"{path} not present")
    return path


@pytest.fixture(scope="session")
def beans_dir() -> str:
    return str(need_shared(BEANS))


@pytest.fixture(scope="session")
def effnet_dir() -> str:
    return str(need_shared(EFFNET))


@pytest.fixture(scope="session")
def beans_store(tmp_path_factory, beans_dir, effnet_dir) -> list[str]:
    """The store options of a collection `beans`: 300 Beans train images embedded by the real
    efficientnet-lite0, ingested once through the command line for every test that searches
    real photos (the modules using it close their handles: an embedded store admits one)."""
    import json

    from click.testing import CliRunner

    from lookalike.cli.main import cli

    store = ["--qdrant-path", str(tmp_path_factory.mktemp("beans") / "store")]
    args = ["ingest", "--dataset", beans_dir, "--model", effnet_dir, "--limit", "300", "--json"]
    result = CliRunner().invoke(cli, [*args, *store])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert (report["collection"], report["embedded"], report["skipped"]) == ("beans", 300, 0)
    return store


def make_tiny_vit(folder: Path, hidden: int = 32, seed: int = 0) -> str:
    import torch
    from transformers import ViTConfig, ViTImageProcessor, ViTModel

    torch.manual_seed(seed)
    config = ViTConfig(
        image_size=32,
        patch_size=8,
        hidden_size=hidden,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=2 * hidden,
    )
    ViTModel(config).save_pretrained(folder)
    ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(folder)
    return str(folder)


@pytest.fixture(scope="session")
def tiny_vit(tmp_path_factory) -> str:
    return make_tiny_vit(tmp_path_factory.mktemp("tiny-vit"))


@pytest.fixture(scope="session")
def tiny_vit_other(tmp_path_factory) -> str:
    """Same architecture and vector size as tiny_vit, different weights and folder."""
    return make_tiny_vit(tmp_path_factory.mktemp("tiny-vit-other"), seed=1)


@pytest.fixture(scope="session")
def tiny_vit_wide(tmp_path_factory) -> str:
    return make_tiny_vit(tmp_path_factory.mktemp("tiny-vit-wide"), hidden=48)


TEXT_CONFIG = dict(num_hidden_layers=1, num_attention_heads=2, intermediate_size=32, vocab_size=64)
TOWER = dict(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=1)
TOWER.update(num_attention_heads=2, intermediate_size=64)
WORDS = "a bee on yellow flower photo of leaf healthy bean rusty with spots red green blue"


def make_tiny_clip(folder: Path) -> str:
    """A random CLIP (24-d) with its image processor and a BPE tokenizer of single letters."""
    import torch
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPTokenizer

    letters = sorted(set(WORDS.replace(" ", "")))
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    vocab.update({c: i for i, c in enumerate(letters, 2)})
    vocab.update({f"{c}</w>": i for i, c in enumerate(letters, 2 + len(letters))})
    CLIPTokenizer(vocab=vocab, merges=[], model_max_length=77).save_pretrained(folder)
    text = dict(TEXT_CONFIG, hidden_size=16, bos_token_id=0, eos_token_id=1, pad_token_id=1)
    torch.manual_seed(0)
    CLIPModel(CLIPConfig(vision_config=TOWER, text_config=text, projection_dim=24)).save_pretrained(
        folder
    )
    CLIPImageProcessor(
        size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}
    ).save_pretrained(folder)
    return str(folder)


def make_tiny_siglip(folder: Path) -> str:
    """A random SigLIP (32-d) with its image processor and a SentencePiece tokenizer trained
    here on a few words, as SigLIP's own is."""
    import io

    import sentencepiece as spm
    import torch
    from transformers import SiglipConfig, SiglipImageProcessor, SiglipModel, SiglipTokenizer

    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(WORDS.split() * 4),
        model_writer=model,
        vocab_size=40,
        hard_vocab_limit=False,
        pad_id=0,
        eos_id=1,
        unk_id=2,
        bos_id=-1,
        minloglevel=2,
    )
    (folder / "spiece.model").write_bytes(model.getvalue())
    SiglipTokenizer(str(folder / "spiece.model")).save_pretrained(folder)
    torch.manual_seed(0)
    text = dict(TEXT_CONFIG, hidden_size=32, pad_token_id=1, eos_token_id=1)
    SiglipModel(SiglipConfig(vision_config=TOWER, text_config=text)).save_pretrained(folder)
    SiglipImageProcessor(size={"height": 32, "width": 32}).save_pretrained(folder)
    return str(folder)


@pytest.fixture(scope="session")
def tiny_clip(tmp_path_factory) -> str:
    return make_tiny_clip(tmp_path_factory.mktemp("tiny-clip"))


@pytest.fixture(scope="session")
def tiny_siglip(tmp_path_factory) -> str:
    return make_tiny_siglip(tmp_path_factory.mktemp("tiny-siglip"))


def make_image(colour: tuple[int, int, int], seed: int, size: int = 48) -> Image.Image:
    rng = np.random.default_rng(seed)
    pixels = np.clip(np.array(colour) + rng.normal(0, 25, (size, size, 3)), 0, 255)
    return Image.fromarray(pixels.astype(np.uint8))


@pytest.fixture(scope="session")
def image_folder(tmp_path_factory) -> Path:
    """Images in class sub-folders: 3 colours x 4 images, as a user's own folder would be."""
    root = tmp_path_factory.mktemp("images")
    for c, (name, colour) in enumerate(COLOURS.items()):
        (root / name).mkdir()
        for i in range(4):
            make_image(colour, seed=10 * c + i).save(root / name / f"{name}_{i}.jpg")
    return root


BEANS_LABELS = ("angular_leaf_spot", "bean_rust", "healthy")


@pytest.fixture(scope="session")
def beans_photos(tmp_path_factory, beans_dir) -> Path:
    """Real Beans leaves as a user's own folder: `photos/<class>/<file>.jpg` (5 per class),
    and `spare/` with 6 more leaves to add later. Copy it before changing it."""
    import pyarrow.parquet as pq

    root = tmp_path_factory.mktemp("beans-photos")
    table = pq.read_table(Path(beans_dir) / "data" / "train-00000-of-00001.parquet")
    taken = dict.fromkeys(range(len(BEANS_LABELS)), 0)
    for row in table.to_pylist():
        label, n = row["labels"], taken[row["labels"]]
        if n >= 7:
            continue
        taken[label] += 1
        name = Path(row["image_file_path"]).name
        folder = root / ("photos" if n < 5 else "spare") / BEANS_LABELS[label]
        folder.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(row["image"]["bytes"])
        if all(v >= 7 for v in taken.values()):
            break
    return root


def make_photo(image: Image.Image, size: tuple[int, int] = (4032, 3024), seed: int = 0):
    """A camera-sized photo made from a small real image: upscaled, with sensor-like noise so
    that it compresses, and decodes, like a real 12 MP JPEG (~2 MB)."""
    from PIL import ImageChops

    big = image.convert("RGB").resize(size, Image.BICUBIC)
    rng = np.random.default_rng(seed)
    tile = Image.fromarray(rng.integers(124, 133, (512, 512, 3), dtype=np.uint8))  # 128 +- 4
    noise = Image.new("RGB", size)
    for x in range(0, size[0], 512):
        for y in range(0, size[1], 512):
            noise.paste(tile, (x, y))
    return ImageChops.add(big, noise, offset=-128)


@pytest.fixture(scope="session")
def photo_folder(tmp_path_factory, beans_dir) -> Path:
    """Camera photos made from Beans test images: six 4032x3024 JPEGs (one stored sideways
    with an EXIF orientation, as phones do), a 3 MP PNG and a CMYK JPEG."""
    import datasets

    root = tmp_path_factory.mktemp("photos")
    beans = datasets.load_dataset(beans_dir, split="test").select(range(0, 64, 8))
    images = [row["image"] for row in beans]
    for i, image in enumerate(images[:6]):
        photo = make_photo(image, seed=i)
        if i == 1:  # the sensor's landscape pixels, shown portrait
            exif = Image.Exif()
            exif[0x0112] = 6
            photo.save(root / f"photo{i}.jpg", quality=90, exif=exif)
        else:
            photo.save(root / f"photo{i}.jpg", quality=90)
    make_photo(images[6], (2016, 1512), seed=6).save(root / "scan.png", compress_level=1)
    make_photo(images[7], (2016, 1512), seed=7).convert("CMYK").save(root / "print.jpg")
    return root
