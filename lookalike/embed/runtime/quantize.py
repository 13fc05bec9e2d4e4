"""int8: NNCF's post-training quantization of the converted network, calibrated on images
the caller gives (a collection's own). Measured by bench/runtime_bench.py --int8 and
tests/test_runtime_beans.py; see docs/benchmarks.md for whether its quality holds."""

from __future__ import annotations

import numpy as np

from lookalike.embed.runtime.openvino_runtime import OpenVINORuntime, core


def quantize(xml: str, calibration: np.ndarray, transformer: bool):
    """The fp32 model at `xml`, quantized to int8 with `calibration` (batch, C, H, W)
    float32, one image per calibration step."""
    import nncf

    model = core().read_model(xml)
    data = nncf.Dataset([calibration[i : i + 1] for i in range(len(calibration))])
    kwargs = {"model_type": nncf.ModelType.TRANSFORMER} if transformer else {}
    return nncf.quantize(
        model, data, subset_size=len(calibration), preset=nncf.QuantizationPreset.MIXED, **kwargs
    )


def int8_runtime(embedder, calibration, rest_precision: str = "fp32") -> OpenVINORuntime:
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
    model = quantize(str(xml), pixels, transformer)
    out = Path(tempfile.mkdtemp(prefix="lookalike-int8-")) / "model.xml"
    ov.save_model(model, str(out), compress_to_fp16=False)
    return OpenVINORuntime(out, rest_precision)
