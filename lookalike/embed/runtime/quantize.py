"""int8: NNCF's post-training quantization of the converted network, calibrated on images
the caller gives (a collection's own). Measured only, by bench/runtime_bench.py --int8 and
bench/runtime_quality.py --int8; docs/benchmarks.md says why `--precision int8` is refused."""

from __future__ import annotations

import numpy as np

from lookalike.embed.runtime.openvino_runtime import OpenVINORuntime, core

# The ways of quantizing measured: NNCF's two presets, and MIXED with the depthwise
# convolutions (OpenVINO's GroupConvolution) left in float, as they quantize worst per tensor.
VARIANTS = ("mixed", "performance", "float-depthwise")


def _options(variant: str) -> dict:
    import nncf

    presets = {"performance": nncf.QuantizationPreset.PERFORMANCE}
    options: dict = {"preset": presets.get(variant, nncf.QuantizationPreset.MIXED)}
    if variant == "float-depthwise":
        options["ignored_scope"] = nncf.IgnoredScope(types=["GroupConvolution"], validate=False)
    return options


def quantize(xml: str, calibration: np.ndarray, transformer: bool, variant: str = "mixed"):
    """The fp32 model at `xml`, quantized to int8 with `calibration` (batch, C, H, W)
    float32, one image per calibration step."""
    import logging

    import nncf

    logging.getLogger("nncf").setLevel(logging.WARNING)
    model = core().read_model(xml)
    data = nncf.Dataset([calibration[i : i + 1] for i in range(len(calibration))])
    kwargs = {"model_type": nncf.ModelType.TRANSFORMER} if transformer else {}
    return nncf.quantize(model, data, subset_size=len(calibration), **_options(variant), **kwargs)


def int8_runtime(
    embedder, calibration, rest_precision: str = "fp32", variant: str = "mixed"
) -> OpenVINORuntime:
    """The embedder's OpenVINO model quantized; what is not int8 runs in `rest_precision`."""
    import tempfile
    from pathlib import Path

    import openvino as ov

    from lookalike.embed.runtime import cache
    from lookalike.embed.runtime.convert import cache_key, openvino_runtime

    openvino_runtime(embedder, "fp32")  # converted (or cached) first
    xml = cache.entry(cache_key(embedder)) / "model.xml"
    pixels = np.ascontiguousarray(np.asarray(calibration, dtype=np.float32))
    transformer = embedder.model_type not in (
        "efficientnet",
        "resnet",
        "regnet",
        "convnext",
        "mobilenet_v2",
    )
    model = quantize(str(xml), pixels, transformer, variant)
    out = Path(tempfile.mkdtemp(prefix="lookalike-int8-")) / "model.xml"
    ov.save_model(model, str(out), compress_to_fp16=False)
    return OpenVINORuntime(out, rest_precision)
