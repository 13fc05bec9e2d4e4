"""Defaults and choices shared by the command line and the library, each written once here,
importable without torch or qdrant-client so that `lookalike --help` starts fast."""

# The benchmark the project grew from: the tutorial's dataset and model.
DEFAULT_DATASET = "beans"
DEFAULT_COLLECTION = "beans"
DEFAULT_MODEL = "nateraw/vit-base-beans"
DEFAULT_PATH = "./lookalike-data"
POOLINGS = ("auto", "cls", "pooler", "mean", "image_features")
PRECISIONS = ("auto", "fp32", "bf16", "fp16", "int8")
DEVICES = ("auto", "cpu", "cuda", "mps")
# What runs the network: auto is OpenVINO on a CPU where it is installed, else torch.
RUNTIMES = ("auto", "torch", "openvino")
# PIL's own threshold for a decompression bomb warning (89.5 MP): a real photo is far below.
DEFAULT_MAX_PIXELS = 89_478_485
QUANTIZATIONS = ("none", "int8", "binary")
# Embedded engines: edge is Qdrant's own engine in-process (HNSW, quantization); local is
# qdrant-client's pure-Python local mode (exact, slow beyond ~20k points).
ENGINES = ("auto", "edge", "local")
# A model with a text tower, named where a collection cannot take text queries.
TEXT_MODEL = "openai/clip-vit-base-patch32"
# A new collection of any other images gets a general model: CLIP ViT-B/32's image tower,
# which also lets you search by words (`search --text`), as immich and rclip do by default,
# at a quarter of a ViT-B/16's compute (docs/models.md says why this one).
PHOTO_MODEL = "openai/clip-vit-base-patch32"
# The tutorial's dataset, by hub id or folder name: it keeps the tutorial's model.
BEANS_NAMES = ("beans", "ai-lab-makerere/beans")


def default_model(dataset: str | None) -> str:
    """The model a new collection of `dataset` is built with: the Beans leaf-disease model for
    the Beans dataset (the tutorial), the general PHOTO_MODEL for any other images."""
    name = (dataset or DEFAULT_DATASET).rstrip("/\\").replace("\\", "/")
    if name.lower() in BEANS_NAMES or name.rsplit("/", 1)[-1].lower() == "beans":
        return DEFAULT_MODEL
    return PHOTO_MODEL


# What --help says a new collection gets.
NEW_MODEL_HELP = f"{DEFAULT_MODEL} for Beans, {PHOTO_MODEL} for any other images,"
