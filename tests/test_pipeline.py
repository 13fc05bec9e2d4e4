"""The ingest pipeline: order, skips and failures survive the worker and writer threads."""

import threading
import time

import numpy as np
import pytest

from lookalike.embed.embedder import Embedder
from lookalike.ingest.writer import BackgroundWriter
from lookalike.source.batches import prepared_batches
from lookalike.source.dataset import load_source


@pytest.fixture(scope="module")
def emb(tiny_vit):
    return Embedder(tiny_vit, device="cpu", precision="fp32")


@pytest.mark.parametrize("workers", [1, 3])
def test_batches_come_in_order_with_pixels_for_each_record(image_folder, emb, workers):
    source = load_source(str(image_folder))
    batches = list(prepared_batches(source, emb, batch_size=5, workers=workers))
    paths = [r.path for b in batches for r in b.records]
    assert paths == source.paths and [len(b.records) for b in batches] == [5, 5, 2]
    assert all(b.pixels.shape == (len(b.records), 32, 32, 3) for b in batches)  # uint8 NHWC
    assert all(r.image is None for b in batches for r in b.records)  # memory: images dropped
    # Same vectors as embedding the decoded images directly.
    direct = emb.embed([r.image for r in source.load(range(5))[0]])
    np.testing.assert_allclose(emb.embed_pixels(batches[0].pixels), direct, atol=1e-6)


def test_a_batch_of_only_bad_images_yields_skips_and_no_pixels(image_folder, tmp_path, emb):
    for i in range(3):
        (tmp_path / "junk").mkdir(exist_ok=True)
        (tmp_path / "junk" / f"{i}.png").write_bytes(b"nope")
    source = load_source(str(tmp_path))
    (batch,) = list(prepared_batches(source, emb, batch_size=8))
    assert batch.records == [] and batch.pixels is None and len(batch.skipped) == 3


def test_writer_failure_surfaces_in_the_caller():
    written = []

    def write(records, vectors):
        if len(written) == 2:
            raise ConnectionError("server went away")
        written.append(len(records))

    with pytest.raises(ConnectionError, match="server went away"), BackgroundWriter(write) as w:
        for _ in range(10):
            w.submit([object()], np.zeros((1, 2)))
    assert written == [1, 1]


class Timed:
    """A stand-in for the embedder: each batch takes `seconds`; records how many batches
    were being prepared at once each time one started."""

    decode_side = None

    def __init__(self, seconds: float) -> None:
        self.seconds, self.running, self.seen = seconds, 0, []
        self.lock = threading.Lock()

    def prepare(self, images):
        n = len(list(images))
        with self.lock:
            self.running += 1
            self.seen.append(self.running)
        time.sleep(self.seconds)
        with self.lock:
            self.running -= 1
        return n


def test_workers_follow_the_bottleneck(image_folder):
    source = load_source(str(image_folder))  # 12 images, one per batch
    # Slow decoding, a fast model: every worker prepares at once.
    slow = Timed(0.3)
    assert sum(b.pixels for b in prepared_batches(source, slow, 1, workers=3)) == 12
    assert max(slow.seen) == 3
    # Fast decoding, a slow model: after the first fill, one worker at a time tops up.
    fast = Timed(0.01)
    for _ in prepared_batches(source, fast, 1, workers=3):
        time.sleep(0.15)
    assert fast.seen[4:] == [1] * 8, fast.seen
