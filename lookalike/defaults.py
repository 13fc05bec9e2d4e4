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
