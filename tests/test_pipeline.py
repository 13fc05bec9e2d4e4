"""The ingest pipeline: order, skips and failures survive the worker and writer threads."""

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
    rows = [r.row for b in batches for r in b.records]
    assert rows == list(range(12)) and [len(b.records) for b in batches] == [5, 5, 2]
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
