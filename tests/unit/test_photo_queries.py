"""Dates, places and defaults for photo libraries: --where on dates, --near/--within, the
model a new collection gets, and the threshold calibration's choice, with no model or store."""

import pytest
from PIL import Image

from lookalike.defaults import DEFAULT_MODEL, PHOTO_MODEL, default_model
from lookalike.errors import BadQuery
from lookalike.images import refused_format
from lookalike.query import (
    DATETIME,
    GEO,
    KEYWORD,
    check_filter,
    distance_m,
    merge_types,
    near_condition,
    parse_distance,
    parse_where,
    value_type,
)
from lookalike.source.exif import fields_of

TYPES = {"taken": DATETIME, "location": GEO, "place": KEYWORD}


def test_the_tutorials_dataset_keeps_its_model_and_any_other_folder_gets_the_photo_model():
    for beans in ("beans", "AI-Lab-Makerere/beans", "../shared/data/beans", "/data/beans/"):
        assert default_model(beans) == DEFAULT_MODEL
    for other in ("~/Pictures", "/photos/beans-2024", "cifar10", "./holiday"):
        assert default_model(other) == PHOTO_MODEL


def test_rfc3339_text_is_a_datetime_field_and_a_lon_lat_object_a_place():
    assert value_type("2024-06-01T14:03:22Z") == DATETIME
    assert value_type("2024-06-01") == KEYWORD  # a date alone stays text
    assert value_type({"lon": 8.5, "lat": 47.3}) == GEO
    assert value_type({"lon": "8.5", "lat": 47.3}) != GEO
    mixed = merge_types({}, [{"t": "2024-06-01T10:00:00Z"}, {"t": "yesterday"}])
    assert mixed == {"t": KEYWORD}


@pytest.mark.parametrize(
    "where, bounds",
    [
        ("taken>=2024-06-01", {"gte": "2024-06-01T00:00:00Z"}),
        ("taken>2024-06-01", {"gte": "2024-06-02T00:00:00Z"}),  # after that day
        ("taken<=2024-06", {"lt": "2024-07-01T00:00:00Z"}),  # to the end of June
        ("taken<2024-12", {"lt": "2024-12-01T00:00:00Z"}),
        ("taken<=2024-12", {"lt": "2025-01-01T00:00:00Z"}),
        ("taken=2024-06-01", {"gte": "2024-06-01T00:00:00Z", "lt": "2024-06-02T00:00:00Z"}),
        ("taken>=2024-06-01T14:30", {"gte": "2024-06-01T14:30:00Z"}),
        ("taken<2024-06-01T14:30:00+02:00", {"lt": "2024-06-01T12:30:00Z"}),
    ],
)
def test_where_takes_dates_days_and_months(where, bounds):
    assert parse_where([where], TYPES) == {"must": [{"key": "taken", "range": bounds}]}


def test_a_date_that_is_not_one_is_said_in_words():
    with pytest.raises(BadQuery, match="not a date such as 2024-06-01"):
        parse_where(["taken>=June"], TYPES)
    with pytest.raises(BadQuery, match="--near"):
        parse_where(["location=alps"], TYPES)


def test_near_within_is_a_geo_radius_in_metres():
    condition = near_condition("46.55, 7.98", "5km")
    assert condition == {
        "key": "location",
        "geo_radius": {"center": {"lon": 7.98, "lat": 46.55}, "radius": 5000.0},
    }
    assert parse_distance("800m") == 800 and parse_distance("2mi") == pytest.approx(3218.688)
    assert near_condition(None, None) is None
    for near, within, says in [
        ("46.5", "5km", "LAT,LON"),
        ("146.5,7", "5km", "latitude is -90..90"),
        ("46.5,7", "far", "5km, 800m or 2mi"),
        ("46.5,7", None, "go together"),
    ]:
        with pytest.raises(BadQuery, match=says):
            near_condition(near, within)
    check_filter({"must": [condition]}, TYPES)  # a filter every engine takes
    zurich, bern = {"lat": 47.3769, "lon": 8.5417}, {"lat": 46.948, "lon": 7.4474}
    assert distance_m(zurich, bern) == pytest.approx(95_500, rel=0.01)


def test_exif_fields_read_as_a_photo_library_shows_them():
    exif = Image.Exif()
    exif[0x010F], exif[0x0110], exif[0x0112] = "Apple\x00", " iPhone 15 Pro ", 6
    exif.get_ifd(0x8769)[0x9003] = "2024:06:01 14:03:22"
    exif.get_ifd(0x8769)[0x9011] = "+02:00"
    gps = exif.get_ifd(0x8825)
    gps[1], gps[2], gps[3], gps[4] = "S", (33.0, 51.0, 54.0), "E", (151.0, 12.0, 36.0)
    fields = fields_of(exif, (4032, 3024))
    assert fields == {
        "taken": "2024-06-01T14:03:22Z",
        "taken_offset": "+02:00",
        "camera_make": "Apple",
        "camera_model": "iPhone 15 Pro",
        "orientation": 6,
        "width": 3024,  # shown upright: turned a quarter
        "height": 4032,
        "location": {"lon": 151.21, "lat": -33.865},
    }
    blank = Image.Exif()
    blank.get_ifd(0x8769)[0x9003] = "0000:00:00 00:00:00"
    blank.get_ifd(0x8825).update({1: "N", 2: (0.0, 0.0, 0.0), 3: "E", 4: (0.0, 0.0, 0.0)})
    assert fields_of(blank, (10, 10)) == {"width": 10, "height": 10}  # no date, no 0,0 fix


def test_raw_and_other_unread_formats_are_refused_in_words():
    assert "camera RAW (.nef)" in refused_format("DSC_0001.NEF")
    assert "JPEG XL" in refused_format("a.jxl")
    assert refused_format("IMG_0001.HEIC") is None and refused_format("a.avif") is None


def test_the_calibrated_threshold_separates_copies_from_other_photos():
    from lookalike.ingest.calibrate import separating

    copies, others = [0.99, 0.97, 0.95, 0.91], [0.62, 0.70, 0.81]
    assert separating(copies, others) == pytest.approx((0.81 + 0.91) / 2)
    # Overlap: a false pair costs twice a missed copy, so the cut stays above the others.
    assert separating([0.99, 0.95, 0.80], [0.70, 0.85]) == pytest.approx((0.85 + 0.95) / 2)
