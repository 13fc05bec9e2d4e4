"""The Ray Data stages of a sync, as functions and classes Ray ships to its workers.

Rows between stages carry `record` (a pickled ImageRecord without its image, made by the
Source exactly as the local ingest makes it, or a pickled Skipped), `ok`, and the model's
input (`pixels`, the 8-bit output of the Embedder's own `prepare`), then its `vector`. So
ids, payloads and preprocessing are the local ingest's, whichever machine runs a stage.
"""

from __future__ import annotations

import os
import pickle
import time
from dataclasses import replace
from typing import Any

import numpy as np

from lookalike.embed import ModelSettings
from lookalike.records import ImageRecord, Skipped
from lookalike.source import Source

# What each worker process keeps between tasks: the source and the CPU half of the model.
_CACHE: dict[Any, Any] = {}


class Preparer:
    """The Embedder's CPU half (decode size, processor, pixel chain) without its model: its
    very `prepare`, so a CPU task makes what the local pipeline makes."""

    def __init__(self, model: str, load_kwargs: dict) -> None:
        import torch
        from transformers import AutoImageProcessor

        from lookalike.embed.embedder import Embedder
        from lookalike.embed.pixels import PixelChain, decode_side

        self.processor = AutoImageProcessor.from_pretrained(model, **load_kwargs)
        self.chain = PixelChain.of(self.processor)
        self.decode_side = decode_side(self.processor)
        self.device = torch.device("cpu")  # no pinned memory: the batch goes to Ray's store
        self._embedder = Embedder

    def prepare(self, images):
        return self._embedder.prepare(self, images)

    def _rgb(self, image):
        return self._embedder._rgb(self, image)


def _cached(key, make):
    if key not in _CACHE:
        _CACHE[key] = make()
    return _CACHE[key]


def _got(ref):
    import ray

    return _cached(("ref", ref.hex()), lambda: ray.get(ref))


def decode(batch: dict[str, np.ndarray], *, refs: list, model: str, load_kwargs: dict) -> dict:
    """Read, decode at the model's size and preprocess the images of these rows (`id`: their
    places in the list of positions to embed), a CPU task; an unreadable image becomes a
    Skipped row, never a failed block."""
    began = time.perf_counter()
    source: Source = _got(refs[0])
    positions = _got(refs[1])[batch["id"]]
    preparer = _cached(("preparer", model, repr(load_kwargs)), lambda: Preparer(model, load_kwargs))
    records: list[bytes] = []
    ok: list[bool] = []

    def images():
        for item in source.items(positions.tolist(), preparer.decode_side):
            if isinstance(item, Skipped):
                records.append(pickle.dumps(item))
                ok.append(False)
            else:
                records.append(pickle.dumps(replace(item, image=None)))
                ok.append(True)
                yield item.image

    pixels = preparer.prepare(images())
    good = np.asarray(ok, dtype=bool)
    out = _padded(pixels.numpy() if pixels is not None else None, good)
    return {
        "record": np.asarray(records, dtype=object),
        "ok": good,
        "pixels": out,
        "t_decode": np.full(len(good), (time.perf_counter() - began) / max(len(good), 1)),
    }


def _padded(pixels: np.ndarray | None, ok: np.ndarray) -> np.ndarray:
    """The pixels of the good rows, with zeros where a row was skipped (a column needs one
    shape); a block with no good row carries one-pixel zeros."""
    if pixels is None:
        return np.zeros((len(ok), 1), dtype=np.uint8)
    if ok.all():
        return pixels
    out = np.zeros((len(ok), *pixels.shape[1:]), dtype=pixels.dtype)
    out[ok] = pixels
    return out


class Embed:
    """The embedding stage: one actor per GPU (or per CPU node) holding lookalike's Embedder,
    loaded once, exactly as the local ingest loads it."""

    def __init__(self, settings: ModelSettings, model: str, pooling: str, threads: int | None):
        if threads:  # a CPU actor: the node's cores, as the local ingest's model thread has
            import torch

            torch.set_num_threads(threads)
        self.embedder = settings.load(model, pooling)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        import torch

        began = time.perf_counter()
        ok = batch["ok"].astype(bool)
        vectors = np.zeros((len(ok), self.embedder.dim), dtype=np.float32)
        if ok.any():
            pixels = torch.from_numpy(np.ascontiguousarray(batch["pixels"][ok]))
            vectors[ok] = self.embedder.embed_pixels(pixels)
        seconds = (time.perf_counter() - began) / max(len(ok), 1)
        return {
            "record": batch["record"],
            "ok": ok,
            "vector": vectors,
            "t_decode": batch["t_decode"],
            "t_embed": np.full(len(ok), seconds),
            "pid": np.full(len(ok), os.getpid()),
        }


def unpack(batch: dict[str, np.ndarray]) -> tuple[list[ImageRecord], np.ndarray, list[Skipped]]:
    """A batch's records to store, their vectors, and its skipped images."""
    ok = batch["ok"].astype(bool)
    items = [pickle.loads(r) for r in batch["record"]]
    records = [r for r, good in zip(items, ok) if good]
    skipped = [s for s, good in zip(items, ok) if not good]
    return records, np.asarray(batch["vector"][ok], dtype=np.float32), skipped
