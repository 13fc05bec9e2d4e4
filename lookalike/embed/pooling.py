"""Which vector is a model family's image embedding.

The tutorial's `last_hidden_state[:, 0]` is right for ViT-like models only: for a CNN it is one
channel of a feature map, for Swin one patch token.
"""

from __future__ import annotations

import torch

# The CLS token. ViTModel also has a pooler, but classification checkpoints (such as
# nateraw/vit-base-beans) leave it randomly initialised.
CLS_FAMILIES = {
    *("vit", "deit", "dinov2", "dinov2_with_registers", "beit", "data2vec-vision"),
    *("vit_msn", "vit_mae", "dinov3_vit"),
}
# pooler_output: the global pool of a CNN (EfficientNet, ResNet, RegNet, ConvNeXT...), Swin's
# mean of patch tokens, a CLIP/SigLIP vision tower's pooled output.
POOLER_FAMILIES = {
    *("efficientnet", "resnet", "regnet", "convnext", "convnextv2", "dinov3_convnext"),
    *("mobilenet_v1", "mobilenet_v2", "swin", "swinv2", "bit", "levit", "poolformer", "van"),
    *("clip_vision_model", "siglip_vision_model", "siglip2_vision_model"),
}
# Dual encoders: the image tower's projected features, in the space text queries also use.
IMAGE_FEATURE_FAMILIES = {"clip", "siglip", "siglip2", "chinese_clip", "altclip"}


class PoolingError(ValueError):
    pass


def choose(model_type: str, model: torch.nn.Module, probe_output) -> str:
    """The pooling for a family; unknown families are judged by their outputs' shapes."""
    if model_type in IMAGE_FEATURE_FAMILIES and hasattr(model, "get_image_features"):
        return "image_features"
    if model_type in CLS_FAMILIES:
        return "cls"
    if model_type in POOLER_FAMILIES:
        return "pooler"
    hidden = getattr(probe_output, "last_hidden_state", None)
    if hidden is not None and hidden.ndim == 3:
        return "cls"
    return "pooler" if getattr(probe_output, "pooler_output", None) is not None else "mean"


def pool(pooling: str, model: torch.nn.Module, pixels: torch.Tensor, model_type: str):
    """Run the model on `pixels` and return the (batch, dim) embedding `pooling` names."""
    if pooling == "image_features":
        feats = model.get_image_features(pixel_values=pixels)
        return feats if isinstance(feats, torch.Tensor) else feats.pooler_output
    out = model(pixel_values=pixels)
    hidden = out.last_hidden_state
    if pooling == "cls":
        if hidden.ndim != 3:
            raise PoolingError(
                f"pooling 'cls' needs a token sequence, but {model_type!r} outputs a feature "
                "map: use pooling pooler or mean"
            )
        return hidden[:, 0]
    if pooling == "pooler":
        pooled = getattr(out, "pooler_output", None)
        if pooled is None:
            raise PoolingError(f"{model_type!r} has no pooler_output: use pooling mean")
        return pooled.flatten(1)  # ResNet-style poolers are (B, C, 1, 1)
    return hidden.mean(dim=1) if hidden.ndim == 3 else hidden.mean(dim=(2, 3))
