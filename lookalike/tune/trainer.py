"""Fine-tune a model's image embedding on labelled images, choosing the epoch on another split.

The embedding (the model's pooling, as the Embedder chooses it) feeds a linear classifier
trained with cross-entropy; images of one label are pulled together, which is what a
similarity search over those labels needs. The classifier is dropped on saving: the folder
holds a plain model and image processor that `Embedder`/`ingest --model` load like any other.
"""

from __future__ import annotations

import copy
import json
import random
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from lookalike.augment import EDITS, augment
from lookalike.embed import Embedder, ModelSettings
from lookalike.embed import pooling as pooling_
from lookalike.errors import DatasetLoadError
from lookalike.source import Source
from lookalike.tune.settings import TuneReport, TuneSettings, check_output


def _precision_at_k(queries: torch.Tensor, q_labels, gallery: torch.Tensor, g_labels, k) -> float:
    top = (queries @ gallery.T).topk(k, dim=1).indices
    return float(
        (torch.as_tensor(g_labels)[top] == torch.as_tensor(q_labels)[:, None]).float().mean()
    )


MIXES = (1.0, 0.75, 0.5)


class _Trainer:
    """The embedder's model in training mode, a linear head, and the optimiser."""

    def __init__(self, emb: Embedder, num_labels: int, settings: TuneSettings, steps: int):
        self.emb, self.settings = emb, settings
        self.model = emb.model
        params = list(self.model.parameters())
        self.frozen = params[: int(len(params) * settings.freeze)]
        for p in self.frozen:
            p.requires_grad_(False)
        self.head = torch.nn.Linear(emb.dim, num_labels).to(emb.device)
        trainable = [p for p in params if p.requires_grad]
        lr = settings.lr
        self.optimiser = torch.optim.AdamW(
            [{"params": trainable, "lr": lr}, {"params": self.head.parameters(), "lr": 10 * lr}],
            weight_decay=1e-4,
        )
        self.schedule = torch.optim.lr_scheduler.OneCycleLR(
            self.optimiser, max_lr=[lr, 10 * lr], total_steps=max(1, steps), pct_start=0.15
        )

    def train_mode(self) -> None:
        self.model.train()
        frozen = {id(p) for p in self.frozen}
        for module in self.model.modules():  # frozen batch norms keep their statistics
            own = list(module.parameters(recurse=False))
            if isinstance(module, torch.nn.modules.batchnorm._BatchNorm) and all(
                id(p) in frozen for p in own
            ):
                module.eval()

    def step(self, pixels: torch.Tensor, labels: torch.Tensor) -> float:
        emb = self.emb
        pixels = pixels.to(emb.device)
        if emb.channels_last:
            pixels = pixels.contiguous(memory_format=torch.channels_last)
        with emb.autocast():
            vectors = pooling_.pool(emb.pooling, self.model, pixels, emb.model_type)
            logits = self.head(torch.nn.functional.dropout(vectors.float(), 0.2))
        loss = torch.nn.functional.cross_entropy(logits, labels.to(emb.device), label_smoothing=0.1)
        self.optimiser.zero_grad(set_to_none=True)
        loss.backward()
        self.optimiser.step()
        self.schedule.step()
        return float(loss)


def _embed_all(emb: Embedder, source: Source, batch_size: int) -> tuple[torch.Tensor, list]:
    emb.model.eval()
    vectors, labels = [], []
    for records, _ in source.batches(batch_size):
        vectors.append(torch.from_numpy(emb.embed([r.image for r in records])))
        labels += [r.label for r in records]
    return torch.cat(vectors), labels


def tune(
    model: ModelSettings,
    train: Source,
    val: Source,
    output: str,
    settings: TuneSettings | None = None,
    test: Source | None = None,
    *,
    on_step: Callable[[int], None] | None = None,
    on_epoch: Callable[[int, float], None] | None = None,
    overwrite: bool = False,
) -> TuneReport:
    """Fine-tune the model `model` names on `train`, keep the epoch with the best precision@k
    of `val`'s images against `train`'s, blend it back towards the original weights only as far
    as near-duplicate retrieval on `val` needs, and save it to `output`. `val` is only used to
    choose; `test`, if given, is scored once at the end, with the saved folder loaded as users
    will load it. A folder `output` that already holds files is refused unless `overwrite`."""
    check_output(output, overwrite)
    if train.label_column is None or val.label_column is None:
        raise DatasetLoadError(
            train.name, "tuning needs labels: the splits have no label column", kind="no_labels"
        )
    settings = settings or TuneSettings()
    random.seed(settings.seed)
    torch.manual_seed(settings.seed)
    started = time.perf_counter()
    # Unfolded and not compiled: batch norms folded into convolutions could no longer learn.
    emb = model.load(fold=False)
    report = TuneReport(emb.model_id, str(output), train.name, train.split, val.split, settings)
    judge = _Judge(emb, train, val, settings)
    original = copy.deepcopy(emb.model.state_dict())
    report.val_near_duplicate_top1.append(judge.record(report))
    best = (report.val_precision_at_k[0], original)
    trainer = _Trainer(
        emb,
        len(train.label_names),
        settings,
        settings.epochs * -(-len(train) // settings.batch_size),
    )
    for epoch in range(1, settings.epochs + 1):
        _train_epoch(trainer, train, epoch, random.Random(settings.seed + epoch), on_step)
        report.val_near_duplicate_top1.append(judge.record(report))
        if on_epoch:
            on_epoch(epoch, report.val_precision_at_k[-1])
        if report.val_precision_at_k[-1] > best[0]:
            best = (report.val_precision_at_k[-1], copy.deepcopy(emb.model.state_dict()))
            report.best_epoch = epoch
    report.mix = _blend(emb, judge, original, best[1], report)
    report.seconds = time.perf_counter() - started
    _save(emb, report, Path(output))
    if test is not None:
        report.test_split = test.split
        report.test_precision_at_k = tuple(
            _score(model.load(m), train, test, settings) for m in (emb.model_id, str(output))
        )
        _save_card(report, Path(output))
    return report


def _train_epoch(trainer: _Trainer, train: Source, epoch: int, rng: random.Random, on_step) -> None:
    trainer.train_mode()
    size = trainer.settings.batch_size
    order = np.random.default_rng(trainer.settings.seed + epoch).permutation(len(train))
    for start in range(0, len(order), size):
        records, _ = train.load(order[start : start + size])
        labels = torch.tensor([r.label for r in records])
        trainer.step(trainer.emb.preprocess([augment(r.image, rng) for r in records]), labels)
        if on_step:
            on_step(len(records))


class _Judge:
    """Scores the model on the validation split: precision@k of its images against the
    training split, and near-duplicate top-1 of edited copies of some of them against both."""

    def __init__(self, emb: Embedder, train: Source, val: Source, settings: TuneSettings):
        self.emb, self.train, self.val, self.settings = emb, train, val, settings
        originals, _ = val.load(range(min(40, len(val))))
        self.edits = [edit(r.image) for r in originals for edit in EDITS.values()]
        self.sources = torch.tensor([i for i in range(len(originals)) for _ in EDITS])

    def scores(self) -> tuple[float, float]:
        g, g_labels = _embed_all(self.emb, self.train, self.settings.batch_size)
        q, q_labels = _embed_all(self.emb, self.val, self.settings.batch_size)
        precision = _precision_at_k(q, q_labels, g, g_labels, self.settings.k)
        copies = torch.from_numpy(self.emb.embed(self.edits))
        top1 = (copies @ torch.cat([g, q]).T).argmax(dim=1)
        return precision, float((top1 == len(g) + self.sources).float().mean())

    def record(self, report: TuneReport) -> float:
        precision, near_duplicates = self.scores()
        report.val_precision_at_k.append(precision)
        return near_duplicates


def _blend(emb: Embedder, judge: _Judge, original: dict, tuned: dict, report: TuneReport) -> float:
    """The largest share of the tuning (weights original + mix * (tuned - original)) whose
    near-duplicate score on validation is no lower than the original model's. A classification
    objective pulls same-label images together; blending back keeps images their own."""
    floor = report.val_near_duplicate_top1[0]
    tried = []
    for mix in MIXES:
        emb.model.load_state_dict(_interpolate(original, tuned, mix))
        if mix == 1.0:  # the chosen epoch itself: already scored
            epoch = report.best_epoch
            precision = report.val_precision_at_k[epoch]
            near_duplicates = report.val_near_duplicate_top1[epoch]
        else:
            precision, near_duplicates = judge.scores()
        tried.append((near_duplicates >= floor, mix, near_duplicates))
        report.blend_scores.append([mix, precision, near_duplicates])
        if near_duplicates >= floor:
            return mix
    mix = max(tried, key=lambda t: t[2])[1]
    emb.model.load_state_dict(_interpolate(original, tuned, mix))
    return mix


def _interpolate(original: dict, tuned: dict, mix: float) -> dict:
    return {
        name: original[name] + mix * (value - original[name])
        if value.is_floating_point()
        else value
        for name, value in tuned.items()
    }


def _score(emb: Embedder, gallery: Source, queries: Source, settings: TuneSettings) -> float:
    g, g_labels = _embed_all(emb, gallery, settings.batch_size)
    q, q_labels = _embed_all(emb, queries, settings.batch_size)
    return _precision_at_k(q, q_labels, g, g_labels, settings.k)


def _save(emb: Embedder, report: TuneReport, output: Path) -> None:
    output.mkdir(parents=True, exist_ok=True)
    emb.model.to(memory_format=torch.contiguous_format).save_pretrained(output)
    emb.processor.save_pretrained(output)
    _save_card(report, output)


def _save_card(report: TuneReport, output: Path) -> None:
    """The model card: what it was tuned from, on what, and how well it did."""
    (output / "lookalike_tune.json").write_text(json.dumps(report.to_dict(), indent=2))
    k = report.settings.k
    epochs = ", ".join(f"{p:.4f}" for p in report.val_precision_at_k)
    lines = [
        "# Tuned by `lookalike tune`",
        "",
        f"- base model: `{report.base_model}`",
        f"- data: `{report.dataset}`; trained on `{report.train_split}`, epoch chosen on "
        f"`{report.val_split}`",
        f"- settings: {asdict(report.settings)}",
        f"- {report.val_split} precision@{k} before tuning and after each epoch: {epochs}; "
        f"kept epoch {report.best_epoch}",
        f"- {report.val_split} near-duplicate top-1 before tuning and after each epoch: "
        + ", ".join(f"{p:.4f}" for p in report.val_near_duplicate_top1),
        f"- blended back towards the base model to keep near-duplicate retrieval: "
        f"weights = base + {report.mix} x (tuned - base); tried [mix, precision, near-dup]: "
        f"{[[round(v, 4) for v in row] for row in report.blend_scores]}",
        f"- tuning time: {report.seconds:.0f} s",
    ]
    if report.test_precision_at_k:
        before, after = report.test_precision_at_k
        lines.append(
            f"- {report.test_split} precision@{k} against `{report.train_split}`, never used "
            f"for choosing: {before:.4f} before, {after:.4f} after"
        )
    (output / "README.md").write_text("\n".join(lines) + "\n")
