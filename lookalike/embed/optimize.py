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
