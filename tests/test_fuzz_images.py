"""Whatever bytes arrive, the image loader returns an RGB image or a BadImage: nothing else."""

import io

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from lookalike.errors import BadImage
from lookalike.images import open_image
from tests.conftest import make_image


def _jpeg() -> bytes:
    buf = io.BytesIO()
    make_image((120, 180, 60), seed=3, size=32).save(buf, "JPEG", quality=85)
    return buf.getvalue()


def _png() -> bytes:
    buf = io.BytesIO()
    make_image((20, 40, 250), seed=4, size=16).convert("P").save(buf, "PNG")
    return buf.getvalue()


SEEDS = [_jpeg(), _png()]
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def check(data: bytes) -> None:
    try:
        image = open_image(data, max_pixels=4_000_000)
    except BadImage as e:
        assert str(e).startswith("<image bytes>: ")
    else:
        assert isinstance(image, Image.Image) and image.mode == "RGB"
        assert image.width * image.height <= 4_000_000


@FUZZ
@given(st.binary(max_size=2048))
def test_random_bytes(data):
    check(data)


@FUZZ
@given(
    st.sampled_from(SEEDS),
    st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), min_size=1, max_size=12),
    st.integers(0, 10_000),
)
def test_mutated_real_images(seed, flips, cut):
    data = bytearray(seed)
    for pos, value in flips:
        data[pos % len(data)] = value
    check(bytes(data[: max(1, len(data) - cut % len(data))]))
