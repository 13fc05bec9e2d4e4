"""Write a ViT-base model folder (google/vit-base-patch16-224's architecture, the tutorial's
nateraw/vit-base-beans is one) with random weights: for throughput only, where no ViT-base
weights can be fetched.

    python bench/make_vit_base.py OUT_DIR
"""

import sys

import torch
from transformers import ViTConfig, ViTImageProcessor, ViTModel


def main(out: str) -> None:
    torch.manual_seed(0)
    config = ViTConfig(
        image_size=224,
        patch_size=16,
        hidden_size=768,
        num_hidden_layers=12,
        num_attention_heads=12,
        intermediate_size=3072,
    )
    ViTModel(config).save_pretrained(out)
    ViTImageProcessor(size={"height": 224, "width": 224}).save_pretrained(out)
    print(f"wrote a random ViT-base to {out}")


if __name__ == "__main__":
    main(sys.argv[1])
