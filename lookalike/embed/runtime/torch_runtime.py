"""The network run by torch: the Embedder's own model object, with its autocast and memory
format (batch norms folded, channels-last for convolutions)."""

from __future__ import annotations

import numpy as np
import torch

from lookalike.embed import pooling as pooling_


class TorchRuntime:
    name = "torch"

    def __init__(self, embedder) -> None:
        # The embedder's model is read at each call: fine-tuning loads new weights into it.
        self.embedder = embedder
        self.precision = embedder.precision

    def run(self, pixels: torch.Tensor) -> np.ndarray:
        emb = self.embedder
        if emb.channels_last:
            pixels = pixels.contiguous(memory_format=torch.channels_last)
        with torch.inference_mode(), emb.autocast():
            vectors = pooling_.pool(emb.pooling, emb.model, pixels, emb.model_type)
        return vectors.float().cpu().numpy()
