"""Inference-only rewrites of a model that leave its embeddings unchanged."""

from __future__ import annotations

import copy

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval


def _conv_bn_pairs(model: nn.Module, run) -> list[tuple[nn.Conv2d, nn.BatchNorm2d]]:
    """(conv, bn) pairs where the batch norm's input is exactly the conv's output, seen by
    running the model once with hooks: works for any architecture without tracing it."""
    produced: dict[int, tuple[nn.Module, torch.Tensor]] = {}
    pairs: list[tuple[nn.Conv2d, nn.BatchNorm2d]] = []

    def conv_hook(module, inputs, output):
        produced[id(output)] = (module, output)  # keep the tensor alive so its id stays unique

    def bn_hook(module, inputs):
        hit = produced.get(id(inputs[0]))
        if hit is not None:
            pairs.append((hit[0], module))

    hooks = []
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            hooks.append(m.register_forward_hook(conv_hook))
        elif isinstance(m, nn.BatchNorm2d):
            hooks.append(m.register_forward_pre_hook(bn_hook))
    try:
        with torch.inference_mode():
            run(model)
    finally:
        for h in hooks:
            h.remove()
    return pairs


def fold_batchnorms(model: nn.Module, run, atol: float = 1e-4) -> tuple[nn.Module, int]:
    """Fold each BatchNorm that directly follows a convolution into that convolution.

    `run(model)` returns the model's embedding for a fixed input. The folded copy is kept
    only if it gives the same embedding (a conv output also used elsewhere, say a residual
    branch, would change); otherwise the original model comes back. Returns (model, folds).
    """
    with torch.inference_mode():
        before = run(model).float()
    folded = copy.deepcopy(model)
    pairs = _conv_bn_pairs(folded, run)
    if not pairs:
        return model, 0
    names = {m: n for n, m in folded.named_modules()}
    for conv, bn in pairs:
        for module, new in ((conv, fuse_conv_bn_eval(conv, bn)), (bn, nn.Identity())):
            parent, _, attr = names[module].rpartition(".")
            setattr(folded.get_submodule(parent), attr, new)
    with torch.inference_mode():
        after = run(folded).float()
    if not torch.allclose(before, after, atol=atol, rtol=1e-3):
        return model, 0
    return folded, len(pairs)


class WholeMapMean(nn.Module):
    """An AvgPool2d whose window covers the whole feature map (Hugging Face's EfficientNet
    pools with a 1280-pixel window and ceil_mode over a 7x7 map), computed as the mean it is.

    Eager PyTorch clips such a window cheaply; torch.compile's CPU code visits all of it,
    1280x1280 positions per output, which made a compiled efficientnet-lite0 17x slower than
    eager. Any input the window does not cover goes to the original pool."""

    def __init__(self, pool: nn.AvgPool2d) -> None:
        super().__init__()
        self.pool = pool

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        kh, kw = nn.modules.utils._pair(self.pool.kernel_size)
        if x.shape[-2] <= kh and x.shape[-1] <= kw:
            return x.mean(dim=(-2, -1), keepdim=True)
        return self.pool(x)


def whole_map_pools(model: nn.Module) -> int:
    """Replace, in place, each AvgPool2d that averages whole maps by `WholeMapMean`: only
    ceil_mode pools with no padding and no divisor override, whose window over a smaller map
    is exactly the map's mean. Returns how many were replaced."""
    found = [
        (name, m)
        for name, m in model.named_modules()
        if isinstance(m, nn.AvgPool2d)
        and m.ceil_mode
        and m.divisor_override is None
        and nn.modules.utils._pair(m.padding) == (0, 0)
    ]
    for name, pool in found:
        parent, _, attr = name.rpartition(".")
        setattr(model.get_submodule(parent), attr, WholeMapMean(pool))
    return len(found)
