"""The one embedder used by ingest, search and eval: same processor, pooling, precision and
normalisation. This is the only module that runs transformers/torch inference."""

from __future__ import annotations

import contextlib
import logging
import os
import warnings
from collections.abc import Iterable, Sequence

import numpy as np
import torch
from PIL import Image
from transformers import AutoConfig, AutoImageProcessor, AutoModel

from lookalike import hub
from lookalike.defaults import POOLINGS, PRECISIONS
from lookalike.embed import pooling as pooling_
from lookalike.embed.optimize import fold_batchnorms, whole_map_pools
from lookalike.embed.pixels import PixelChain, clamp_aspect, decode_side, resizes_shortest_edge
from lookalike.embed.runtime import Runtime, l2_normalize, resolve_runtime
from lookalike.embed.runtime.torch_runtime import TorchRuntime
from lookalike.embed.settings import INT8_REFUSED, canonical_model_id, cpu_lists_bf16
from lookalike.errors import ModelLoadError
from lookalike.images import reduce_to, to_rgb

_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


class _UnusedHead(logging.Filter):
    """transformers reports, as a warning table on every load, a classifier checkpoint's head
    that AutoModel leaves unused (UNEXPECTED keys): expected here, where the embedding is the
    backbone's. A report of weights missing or of the wrong shape still shows."""

    def filter(self, record: logging.LogRecord) -> bool:
        text = str(record.msg)
        return "LOAD REPORT" not in text or "MISSING" in text or "MISMATCH" in text


_QUIET_HEAD = _UnusedHead()


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise ModelLoadError(
            None, "the cuda device was asked for, but torch sees no CUDA GPU", kind="device"
        )
    try:
        return torch.device(device)
    except RuntimeError as e:
        raise ModelLoadError(
            None, f"unknown device {device!r}: use auto, cpu, cuda or mps", kind="device"
        ) from e


def cpu_has_native_bf16() -> bool:
    """AVX-512 BF16 or AMX, and torch's kernels use it: there bf16 is fast; elsewhere it is
    emulated and slower than fp32."""
    return cpu_lists_bf16() and bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def resolve_precision(precision: str, device: torch.device) -> str:
    if precision not in PRECISIONS:
        raise ModelLoadError(
            None, f"unknown precision {precision!r}: use {', '.join(PRECISIONS)}", kind="precision"
        )
    if precision == "int8":
        raise ModelLoadError(None, INT8_REFUSED, kind="precision")
    if precision != "auto":
        return precision
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    if device.type == "cpu" and cpu_has_native_bf16():
        return "bf16"
    return "fp32"


def _load_error(model: str, err: Exception) -> ModelLoadError:
    local = os.path.isdir(model)
    hint = (
        "the folder must hold a transformers model: config.json, weights, image processor"
        if local
        else "check the id on the Hugging Face hub"
    )
    first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return ModelLoadError(
        model,
        f"could not load model {model!r} ({first}): {hint}",
        kind="unreadable" if local else "not_found",
    )


class Embedder:
    """Embeds images into L2-normalised vectors with a transformers vision model.

    >>> emb = Embedder("nateraw/vit-base-beans")          # or a local model folder
    >>> vectors = emb.embed([image1, image2])             # (2, emb.dim) float32, unit length

    `prepare` (CPU, thread-safe) and `embed_pixels` (the model) are separate so a pipeline
    can prepare the next batches while the model runs this one. Images may be decoded at
    `decode_side` (`open_image(..., min_side=emb.decode_side)`): the model sees the same.
    """

    def __init__(
        self,
        model: str,
        *,
        revision: str | None = None,
        device: str = "auto",
        pooling: str = "auto",
        precision: str = "auto",
        compile: bool = False,
        trust_remote_code: bool = False,
        fold: bool = True,
        runtime: str = "auto",
    ) -> None:
        if pooling not in POOLINGS:
            raise ModelLoadError(
                model,
                f"unknown pooling {pooling!r}: choose one of {', '.join(POOLINGS)}",
                kind="pooling",
            )
        hub.check_model(model, revision)  # a missing folder or no network: said at once
        self.model_id = canonical_model_id(model)
        self.device = resolve_device(device)
        self.precision = resolve_precision(precision, self.device)
        runtime = resolve_runtime(runtime, self.device.type, compile=compile)
        # Never run code shipped with a model unless the user asked for it.
        kwargs = {"revision": revision, "trust_remote_code": trust_remote_code}
        if hub.cache_only(model):
            kwargs["local_files_only"] = True
        self.load_kwargs = kwargs  # the text tower's tokenizer loads with the same (embed/text.py)
        logging.getLogger("transformers.modeling_utils").addFilter(_QUIET_HEAD)  # once
        try:
            config = AutoConfig.from_pretrained(model, **kwargs)
            self.processor = AutoImageProcessor.from_pretrained(model, **kwargs)
            self.model = AutoModel.from_pretrained(model, **kwargs)
        except Exception as e:  # hub, file, config and remote-code failures alike
            raise _load_error(model, e) from e
        self.model.eval().to(self.device)
        self.model_type = config.model_type
        # The processor's standard chain run cheaply (None: the processor itself is run), and
        # the side images can be decoded at for it (None: full size).
        self.chain = PixelChain.of(self.processor)
        self.decode_side = decode_side(self.processor)
        probe = self._probe()
        # Convolutions run markedly faster channels-last, above all in bf16 on CPU.
        self.channels_last = getattr(probe, "last_hidden_state", None) is not None and (
            probe.last_hidden_state.ndim == 4
        )
        self.pooling = (
            pooling if pooling != "auto" else pooling_.choose(config.model_type, self.model, probe)
        )
        # A dual encoder's (CLIP, SigLIP) text tower embeds words into the images' space.
        self.text_tower = self.pooling == "image_features" and hasattr(
            self.model, "get_text_features"
        )
        self.folded = 0
        if self.channels_last and fold:
            # CNNs: batch norms folded into their convolutions (one op fewer per layer, same
            # result in exact arithmetic), and channels-last memory, which oneDNN/cuDNN prefer.
            pixels = self.preprocess([Image.new("RGB", (64, 64))]).to(self.device)
            self.model, self.folded = fold_batchnorms(
                self.model, lambda m: pooling_.pool(self.pooling, m, pixels, self.model_type)
            )
        if self.channels_last:
            self.model.to(memory_format=torch.channels_last)
        if compile:
            whole_map_pools(self.model)  # compiled, a whole-map pool is 17x slower (see there)
            self.model = torch.compile(self.model)
        self.runtime: Runtime = TorchRuntime(self)
        self.dim = int(self.embed([Image.new("RGB", (64, 64))]).shape[1])
        if runtime == "openvino" and fold:
            self.runtime = self._openvino()

    def _openvino(self) -> Runtime:
        """The model converted for OpenVINO (or loaded from the cache); torch, with one line
        saying why, where the family does not convert."""
        from lookalike.embed.runtime.convert import ConversionFailed, openvino_runtime

        try:
            return openvino_runtime(self, self.precision)
        except ConversionFailed as e:
            warnings.warn(
                f"{self.model_type} model {self.model_id} did not convert for OpenVINO ({e}): "
                "running it with torch",
                stacklevel=3,
            )
            return self.runtime

    @property
    def default_batch_size(self) -> int:
        # Small batches stay in a CPU's caches; a GPU needs large ones to fill its cores.
        return 16 if self.device.type == "cpu" else 64

    def _probe(self):
        """One forward pass on a blank image, to see the shapes this family outputs."""
        with torch.inference_mode():
            pixels = self.preprocess([Image.new("RGB", (64, 64))]).to(self.device)
            if self.model_type in pooling_.IMAGE_FEATURE_FAMILIES:
                return self.model.get_image_features(pixel_values=pixels)  # needs no text
            return self.model(pixel_values=pixels)

    def autocast(self):
        if self.precision == "fp32" or self.device.type not in ("cpu", "cuda"):
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=_DTYPES[self.precision])

    def prepare(self, images: Iterable[Image.Image]) -> torch.Tensor | None:
        """The CPU half of preprocessing, thread-safe: for a standard processor, resized and
        cropped 8-bit pixels (batch, H, W, 3), normalised on the model's device by
        `embed_pixels`; for any other, the processor's float32 (batch, C, H, W) output. Images
        are taken one at a time (pass a generator to hold one decoded image at a time); no
        images give None."""
        if self.chain is not None:
            arrays = [self.chain.geometry(self._rgb(im)) for im in images]
            if not arrays:
                return None
            pixels = torch.from_numpy(np.stack(arrays))
            return pixels.pin_memory() if self.device.type == "cuda" else pixels
        clamp = resizes_shortest_edge(self.processor)  # its resize grows with the ratio
        tensors = [
            self.processor(images=[clamp_aspect(im) if clamp else im], return_tensors="pt")
            for im in map(self._rgb, images)
        ]
        return torch.cat([t["pixel_values"] for t in tensors]) if tensors else None

    def _rgb(self, image: Image.Image) -> Image.Image:
        # Not every image processor converts to RGB; greyscale or RGBA input must not fail.
        image = image if image.mode == "RGB" else to_rgb(image)
        return reduce_to(image, self.decode_side)  # as if decoded at that size

    def preprocess(self, images: Sequence[Image.Image]) -> torch.Tensor:
        """The model's input for RGB images: a float32 (batch, C, H, W) CPU tensor."""
        return self._model_input(self.prepare(images))

    def _model_input(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.chain.normalize(pixels) if pixels.dtype == torch.uint8 else pixels

    def embed_pixels(self, pixels: torch.Tensor) -> np.ndarray:
        """Model, pooling and L2 normalisation: float32 (batch, dim), each row unit length."""
        pixels = self._model_input(pixels.to(self.device, non_blocking=True))
        try:
            vectors = self.runtime.run(pixels)
        except pooling_.PoolingError as e:
            raise ModelLoadError(self.model_id, str(e), kind="pooling") from e
        return l2_normalize(vectors)

    def embed(self, images: Sequence[Image.Image]) -> np.ndarray:
        """Embed images; returns float32 (len(images), dim), each row of unit length."""
        if not images:
            return np.zeros((0, getattr(self, "dim", 0)), dtype=np.float32)
        return self.embed_pixels(self.preprocess(images))
