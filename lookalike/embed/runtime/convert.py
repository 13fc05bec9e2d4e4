"""Converting the Embedder's torch model for OpenVINO, once per (model content, OpenVINO
version, weights, pooling), and loading the conversion from the cache after that.

The converted network is the model and its pooling (the module's output is the pooled
embedding) with a dynamic batch dimension; preprocessing and L2 normalisation stay the
Embedder's, shared with torch.
"""

from __future__ import annotations

import dataclasses
import json
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from lookalike.embed import pooling as pooling_
from lookalike.embed.optimize import whole_map_pools
from lookalike.embed.runtime import cache
from lookalike.embed.runtime.openvino_runtime import OpenVINORuntime, key_for, version

# A conversion is kept only if its embedding of the probe input is this close to torch's.
MIN_COSINE = 0.99


class ConversionFailed(RuntimeError):
    pass


class Pooled(torch.nn.Module):
    """The model with its pooling, so that the converted network outputs the embedding."""

    def __init__(self, model, pooling: str, model_type: str) -> None:
        super().__init__()
        self.model, self.pooling, self.model_type = model, pooling, model_type

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return pooling_.pool(self.pooling, self.model, pixel_values, self.model_type)


def cache_key(embedder, weights: str = "float") -> str | None:
    """The cache entry of this embedder's conversion, or None where its files are not known."""
    folder = cache.model_folder(embedder.model_id, embedder.load_kwargs.get("revision"))
    if folder is None:
        return None
    return key_for(cache.content_hash(folder), embedder.pooling, weights)


def describe(embedder, input_hw: tuple[int, int] | None, converted_s: float) -> dict:
    """What a search needs to run the cached model without torch or transformers."""
    chain = embedder.chain
    return {
        "model": embedder.model_id,
        "model_type": embedder.model_type,
        "pooling": embedder.pooling,
        "dim": embedder.dim,
        "text_tower": embedder.text_tower,
        "decode_side": embedder.decode_side,
        "chain": dataclasses.asdict(chain) if chain is not None else None,
        "input": list(input_hw) if input_hw else None,
        "openvino": version(),
        "converted_s": round(converted_s, 2),
    }


def openvino_runtime(embedder, precision: str) -> OpenVINORuntime:
    """The embedder's model run by OpenVINO, converted now unless the cache has it.
    Raises ConversionFailed (with the reason) where the model does not convert or its
    conversion does not give torch's embeddings."""
    key = cache_key(embedder)
    if key is not None and cache.read_meta(key) is not None:
        return OpenVINORuntime(cache.entry(key) / "model.xml", precision)
    start = time.perf_counter()
    probe = embedder.preprocess(_probe_images())
    fixed = embedder.chain is not None and (embedder.chain.crop or embedder.chain.resize_to)
    input_hw = tuple(probe.shape[2:]) if fixed else None
    model = _convert(embedder, probe, input_hw)
    seconds = time.perf_counter() - start
    meta = describe(embedder, input_hw, seconds)

    made: list[OpenVINORuntime] = []

    def fill(folder: Path) -> None:
        # Checked before it is published: a conversion that embeds wrongly is never cached.
        import openvino as ov

        ov.save_model(model, str(folder / "model.xml"), compress_to_fp16=False)
        (folder / "meta.json").write_text(json.dumps(meta, indent=1))
        made.append(OpenVINORuntime(folder / "model.xml", precision))
        _check(embedder, made[-1], probe)

    try:
        folder = cache.publish(key, fill) if key is not None else None
    except OSError:  # a read-only or full cache: converted for this process only
        folder = None
    if folder is None:
        import tempfile

        folder = Path(tempfile.mkdtemp(prefix="lookalike-ov-"))
        fill(folder)
    runtime = made[-1]
    warnings.warn(
        f"converted {embedder.model_id} for OpenVINO in {seconds:.1f} s, once: later runs "
        f"load it from {folder}",
        ConversionNote,
        stacklevel=3,
    )
    return runtime


class ConversionNote(UserWarning):
    """Said once per model: the conversion's time and where it is kept."""


def _probe_images():
    from PIL import Image

    rng = np.random.default_rng(0)
    return [Image.fromarray(rng.integers(0, 256, (80, 96, 3), dtype=np.uint8)) for _ in range(2)]


def _convert(embedder, probe: torch.Tensor, input_hw):
    import openvino as ov

    shape = ov.PartialShape([-1, probe.shape[1], *(input_hw or (-1, -1))])
    # A pool whose window is wider than its map (EfficientNet's 1280 over 7x7) is written as
    # the mean it is: OpenVINO refuses such a window. Same numbers, so done in place.
    whole_map_pools(embedder.model)
    wrapper = Pooled(embedder.model, embedder.pooling, embedder.model_type).eval()
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tracer warnings: expected, and not the user's
            return ov.convert_model(wrapper, example_input=probe, input=[shape])
    except Exception as e:
        raise ConversionFailed(_first_line(e)) from e


def _check(embedder, runtime: OpenVINORuntime, probe: torch.Tensor) -> None:
    """The converted model must embed the probe as torch does (fp32 against fp32 here)."""
    with torch.inference_mode():
        want = Pooled(embedder.model, embedder.pooling, embedder.model_type)(probe).float()
    got = torch.from_numpy(runtime.run(probe))
    cosine = torch.nn.functional.cosine_similarity(got, want.reshape(got.shape), dim=-1)
    if float(cosine.min()) < MIN_COSINE:
        raise ConversionFailed(f"its output differs from torch's (cosine {cosine.min():.3f})")


def _first_line(err: Exception) -> str:
    """The line of OpenVINO's report that says what failed (its first names only a source
    file), or the error's first line."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    if not lines:
        return type(err).__name__
    telling = [
        line
        for line in lines
        if not line.startswith(("Check '", "FrontEnd API failed", "Summary:", "While validating"))
        and "wasn't fully converted" not in line
    ]
    return (telling or lines)[0][:200]
