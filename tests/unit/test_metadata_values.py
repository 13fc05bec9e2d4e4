"""Payload values: plain JSON passes, anything else is refused with what it is."""

import datetime
import decimal
import math

import pytest

from lookalike.errors import DatasetLoadError
from lookalike.source.metadata import UnsafeValue, checked, json_value


@pytest.mark.parametrize(
    "value, stored",
    [
        (None, None),
        ("x", "x"),
        (True, True),
        (3, 3),
        (2.5, 2.5),
        (decimal.Decimal("9.99"), 9.99),
        (datetime.date(2024, 5, 1), "2024-05-01"),
        (datetime.datetime(2024, 5, 1, 12, 30), "2024-05-01T12:30:00"),
        ((1, [2, {"a": None}]), [1, [2, {"a": None}]]),
    ],
)
def test_plain_values_are_stored_as_json(value, stored):
    assert json_value(value) == stored


@pytest.mark.parametrize(
    "value, what",
    [
        (math.nan, "not a finite number"),
        ({"w": [1.0, math.inf]}, "not a finite number"),
        (b"\x89PNG", "bytes (4 bytes)"),
        ({1: "a"}, "keys that are not strings"),
        (2**70, "too large"),
        (object(), "a object"),
    ],
)
def test_values_with_no_plain_json_form_are_refused(value, what):
    with pytest.raises(UnsafeValue, match=what.replace("(", r"\(").replace(")", r"\)")):
        json_value(value)


def test_a_refusal_names_the_column_and_the_image():
    with pytest.raises(DatasetLoadError, match="column 'price' of shoes/1.jpg holds nan") as e:
        checked("shop", "price", math.nan, "shoes/1.jpg")
    assert e.value.kind == "payload" and "--" not in str(e.value)
