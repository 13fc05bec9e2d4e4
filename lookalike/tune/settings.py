"""What tuning is asked to do and what it did, importable without torch."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field

from lookalike.errors import OutputExists


@dataclass(frozen=True)
class TuneSettings:
    epochs: int = 4
    lr: float = 1e-3
    batch_size: int = 32
    seed: int = 0
    freeze: float = 0.4  # share of the parameter tensors, from the input side, left as they are
    k: int = 5


@dataclass
class TuneReport:
    base_model: str
    output: str
    dataset: str
    train_split: str
    val_split: str
    settings: TuneSettings
    val_precision_at_k: list[float] = field(default_factory=list)  # before tuning, then per epoch
    best_epoch: int = 0
    val_near_duplicate_top1: list[float] = field(default_factory=list)  # as val_precision_at_k
    mix: float = 1.0  # share of the tuning kept: weights = original + mix * (tuned - original)
    blend_scores: list[list[float]] = field(default_factory=list)  # [mix, precision, near-dup]
    test_split: str | None = None
    test_precision_at_k: tuple[float, float] | None = None  # (before, after) tuning
    seconds: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)


def check_output(output: str, overwrite: bool = False) -> None:
    """OutputExists if the folder `output` already holds files, unless `overwrite`: a tuned
    model must not silently replace another (or anything else kept there)."""
    if overwrite or not os.path.isdir(output):
        return
    files = sorted(os.listdir(output))
    if files:
        raise OutputExists(output, files)
