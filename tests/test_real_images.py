"""The spec parser (tests/stickypi_spec.py) against the four real Sticky Pi images, and its
rejections of files the server would refuse.

Negative cases are built from a copy of a real image's bytes with piexif, in memory: the shared
files are only ever read.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
from collections.abc import Callable
from typing import Any

import piexif
import pytest
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image
from stickypi_spec import (
    HEADER_2022,
    REAL_IMAGES,
    SpecError,
    parse_file_name,
    parse_image,
    parse_user_comment,
)

UTC = dt.UTC
NEW = "512858f4.2022-05-17_18-46-57.jpg"
NEW_COMMENT = b"v,T,H,B,L,lat,lng,a,l,b\n3.1.0,20.6,42.6,72,1.20,49.26142,-123.25088,97.3,1652813182,1"
LEGACY_NONE = dict.fromkeys(("device_version", "bat", "lum", "but", "l", "user_comment"))

EXPECTED: dict[str, dict[str, Any]] = {
    NEW: {
        "format": "2022",
        "device": "512858f4",
        "datetime": dt.datetime(2022, 5, 17, 18, 46, 57, tzinfo=UTC),
        "width": 4056,
        "height": 3040,
        "model": "RP_imx477",
        "device_version": "3.1.0",
        "temp": 20.6,
        "hum": 42.6,
        "bat": 72,
        "lum": 1.20,
        "lat": 49.26142,
        "lng": -123.25088,
        "alt": 97.3,
        "l": 1652813182,
        "but": True,
        "user_comment": NEW_COMMENT.decode(),
        "legacy_make": None,
    },
    "512858f4.2022-05-17_18-34-50.jpg": {
        "format": "2022",
        "device": "512858f4",
        "datetime": dt.datetime(2022, 5, 17, 18, 34, 50, tzinfo=UTC),
        "width": 4056,
        "height": 3040,
        "model": "RP_imx477",
        "device_version": "3.1.0",
        "temp": 17.0,
        "hum": 44.6,
        "bat": 72,
        "lum": 1.86,
        "lat": 49.26140,
        "lng": -123.25103,
        "alt": 81.7,
        "l": 1652811355,
        "but": True,
        "user_comment": (
            "v,T,H,B,L,lat,lng,a,l,b\n3.1.0,17.0,44.6,72,1.86,49.26140,-123.25103,81.7,1652811355,1"
        ),
        "legacy_make": None,
    },
    # Legacy: the values are the Make dict's own (float32 sensor readings widened to float).
    # 1b74105a wrote lat/lng swapped; the server stores them as written.
    "1b74105a.2020-07-05_10-07-16.jpg": {
        "format": "2020",
        "device": "1b74105a",
        "datetime": dt.datetime(2020, 7, 5, 10, 7, 16, tzinfo=UTC),
        "width": 2592,
        "height": 1944,
        "model": "RP_ov5647",
        "lat": -121.7552,
        "lng": 49.243553,
        "alt": 22.0,
        "temp": 10.300000190734863,
        "hum": 97.5999984741211,
        **LEGACY_NONE,
    },
    # lat == lng == alt == 0 in the dict: the server's "no GPS", stored as None.
    "5c173ff2.2020-06-20_21-33-24.jpg": {
        "format": "2020",
        "device": "5c173ff2",
        "datetime": dt.datetime(2020, 6, 20, 21, 33, 24, tzinfo=UTC),
        "width": 2592,
        "height": 1944,
        "model": "RP_ov5647",
        "lat": None,
        "lng": None,
        "alt": None,
        "temp": 21.899999618530273,
        "hum": 76.80000305175781,
        **LEGACY_NONE,
    },
}


@pytest.fixture(scope="module")
def new_blob() -> bytes:
    """The bytes of a real 2022 image, the base of every negative case."""
    return (REAL_IMAGES / NEW).read_bytes()


def with_exif(blob: bytes, mutate: Callable[[dict[str, Any]], None]) -> bytes:
    """A copy of ``blob`` whose EXIF was changed by ``mutate`` (in memory)."""
    exif = piexif.load(blob)
    mutate(exif)
    out = io.BytesIO()
    piexif.insert(piexif.dump(exif), blob, out)
    return out.getvalue()


def set_comment(comment: bytes) -> Callable[[dict[str, Any]], None]:
    def mutate(exif: dict[str, Any]) -> None:
        exif["Exif"][piexif.ExifIFD.UserComment] = comment

    return mutate


def set_tag(ifd: str, tag: int, value: bytes | None) -> Callable[[dict[str, Any]], None]:
    def mutate(exif: dict[str, Any]) -> None:
        if value is None:
            del exif[ifd][tag]
        else:
            exif[ifd][tag] = value

    return mutate


# --- the real images ---------------------------------------------------------------------------


def test_the_four_real_images_are_there() -> None:
    assert sorted(p.name for p in REAL_IMAGES.glob("*.jpg")) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
@pytest.mark.parametrize("strict", [True, False], ids=["strict", "lenient"])
def test_real_image(name: str, strict: bool) -> None:
    path = REAL_IMAGES / name
    row = parse_image(path, strict=strict)
    expected = EXPECTED[name]
    assert {k: row[k] for k in expected} == expected  # type: ignore[literal-required]
    assert row["md5"] == hashlib.md5(path.read_bytes()).hexdigest()
    assert row["datetime"].tzinfo is UTC


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_parsing_bytes_equals_parsing_the_path(name: str) -> None:
    path = REAL_IMAGES / name
    assert parse_image(path.read_bytes(), name) == parse_image(path)
    assert parse_image(str(path)) == parse_image(path)


def test_legacy_make_dict_is_kept_raw() -> None:
    row = parse_image(REAL_IMAGES / "5c173ff2.2020-06-20_21-33-24.jpg")
    assert row["legacy_make"] is not None
    assert row["legacy_make"]["lat"] == row["legacy_make"]["lng"] == 0.0
    assert row["legacy_make"]["datetime"] == "2020-06-20 06:38:36"  # not the capture time


# --- file names ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "512858f4.2022-05-17_18-46-57.extra.jpg",  # 4 fields
        "512858f4.2022-05-17_18-46-57",  # 2 fields
        "512858f.2022-05-17_18-46-57.jpg",  # 7-char device
        "512858f40.2022-05-17_18-46-57.jpg",  # 9-char device
        "512858g4.2022-05-17_18-46-57.jpg",  # not hex
        "+512858f.2022-05-17_18-46-57.jpg",  # int(x, 16) would take it; not 8 hex chars
        "512858f4.2019-10-31_23-59-59.jpg",  # before 2019-11-01
        "512858f4.1970-01-01_00-00-05.jpg",  # a Pi that booted without a clock
        "512858f4.2000-01-01_00-00-00.jpg",  # an unset RTC
        "512858f4.2022-5-17_18-46-57.jpg",  # not zero-padded
        "512858f4.2022-02-30_18-46-57.jpg",  # no such day
        "512858f4.2022-05-17T18:46:57.jpg",  # the API's datetime form is not the file name's
        "512858f4.2022-05-17_18-46-57.jpeg",
        "file",  # a multipart part named "file"
    ],
)
def test_bad_file_name(name: str) -> None:
    with pytest.raises(SpecError):
        parse_file_name(name)


def test_file_name_boundary_and_case() -> None:
    assert parse_file_name("0000abcd.2019-11-01_00-00-00.jpg") == (
        "0000abcd",
        dt.datetime(2019, 11, 1, tzinfo=UTC),
    )
    # Upper case parses, but it is another device id: returned unchanged.
    device, _ = parse_file_name("512858F4.2022-05-17_18-46-57.jpg")
    assert device == "512858F4"
    assert device != "512858f4"


def test_parse_image_checks_the_name(new_blob: bytes) -> None:
    with pytest.raises(SpecError, match="three dot-separated"):
        parse_image(new_blob, "file")
    with pytest.raises(SpecError, match="2019-11-01"):
        parse_image(new_blob, "512858f4.1970-01-01_00-00-00.jpg")


# --- files the server rejects (or would silently store wrong): SpecError in both modes ---------


def replace_in_comment(old: bytes, new: bytes) -> Callable[[dict[str, Any]], None]:
    assert old in NEW_COMMENT
    return set_comment(NEW_COMMENT.replace(old, new, 1))


MAKE = piexif.ImageIFD.Make

# case: (mutation, the reason's regex)
REJECTED: dict[str, tuple[Callable[[dict[str, Any]], None], str]] = {
    # The server splits on "\n" and requires exactly two lines: a trailing newline is a third
    # (empty) line, so the server rejects it, not only the strict mode. The agent never writes one.
    "trailing newline": (set_comment(NEW_COMMENT + b"\n"), "trailing newline"),
    "crlf": (replace_in_comment(b"\n", b"\r\n"), "header"),
    "one line": (set_comment(NEW_COMMENT.split(b"\n")[1]), "1 line"),
    "empty field": (replace_in_comment(b",72,", b",,"), "'B' is empty"),
    "empty version": (replace_in_comment(b"\n3.1.0,", b"\n,"), "'v' is empty"),
    "empty last field": (set_comment(NEW_COMMENT[:-1]), "'b' is empty"),
    # The server would keep "ASCII\0\0\0v" as a header key and silently drop the version.
    "ascii charset prefix": (set_comment(b"ASCII\0\0\0" + NEW_COMMENT), "drop the first field"),
    "undefined charset prefix": (set_comment(b"\0" * 8 + NEW_COMMENT), "character-code prefix"),
    "missing UserComment": (set_tag("Exif", piexif.ExifIFD.UserComment, None), "no EXIF User"),
    "header order": (replace_in_comment(b"v,T,H", b"v,H,T"), "header"),
    "header missing l": (
        set_comment(b"v,T,H,B,L,lat,lng,a,b\n3.1.0,1.0,1.0,1,1.00,1.0,1.0,1.0,0"),
        "header",
    ),
    "extra value": (set_comment(NEW_COMMENT + b",7"), "11 values"),
    "missing value": (set_comment(NEW_COMMENT.rsplit(b",", 1)[0]), "9 values"),
    "not a number": (replace_in_comment(b",20.6,", b",warm,"), "T='warm'"),
    "nan": (replace_in_comment(b",20.6,", b",nan,"), "T='nan'"),
    "fractional battery": (replace_in_comment(b",72,", b",72.5,"), "B='72.5'"),
    "button not an int": (replace_in_comment(b",1652813182,1", b",1652813182,1.0"), "b='1.0'"),
    "version over 8 chars": (replace_in_comment(b"3.1.0,", b"3.1.0-rc1,"), "longer than 8"),
    "make not StickyPi, not a dict": (set_tag("0th", MAKE, b"Canon EOS"), "neither"),
    "make an identifier": (set_tag("0th", MAKE, b"Canon"), "neither"),
    "make a list literal": (set_tag("0th", MAKE, b"['lat', 'lng']"), "neither"),
    "make lower case": (set_tag("0th", MAKE, b"stickypi"), "neither"),
    "missing Make": (set_tag("0th", MAKE, None), "no EXIF Make"),
    "legacy dict without lat": (set_tag("0th", MAKE, b"{'lng': 1.0, 'alt': 2.0}"), "lacks"),
    "legacy lat a string": (
        set_tag("0th", MAKE, b"{'lat': '1', 'lng': 1.0, 'alt': 2.0}"),
        "not a number",
    ),
}


@pytest.mark.parametrize("strict", [True, False], ids=["strict", "lenient"])
@pytest.mark.parametrize("case", sorted(REJECTED))
def test_rejected(new_blob: bytes, case: str, strict: bool) -> None:
    mutate, reason = REJECTED[case]
    with pytest.raises(SpecError, match=reason):
        parse_image(with_exif(new_blob, mutate), NEW, strict=strict)


def test_trailing_newline_reason_is_explicit() -> None:
    for strict in (True, False):
        with pytest.raises(SpecError, match="trailing newline"):
            parse_user_comment(NEW_COMMENT + b"\n", strict=strict)


def test_no_exif_at_all(new_blob: bytes) -> None:
    out = io.BytesIO()
    piexif.remove(new_blob, out)
    with pytest.raises(SpecError, match="EXIF"):
        parse_image(out.getvalue(), NEW)


def test_not_a_jpeg() -> None:
    png = io.BytesIO()
    Image.new("RGB", (8, 8)).save(png, "PNG")
    with pytest.raises(SpecError, match="JPEG"):
        parse_image(png.getvalue(), NEW)


def test_truncated_jpeg(new_blob: bytes) -> None:
    with pytest.raises(SpecError, match="JPEG"):
        parse_image(new_blob[: len(new_blob) // 2], NEW)


# --- what the server takes but a writer must not produce: SpecError only when strict -----------

STRICT_ONLY: dict[str, tuple[Callable[[dict[str, Any]], None], dict[str, Any]]] = {
    # case: (mutation, what the server stores instead)
    "two decimals for T": (replace_in_comment(b",20.6,", b",20.63,"), {"temp": 20.63}),
    "integer for a": (replace_in_comment(b",97.3,", b",97,"), {"alt": 97.0}),
    "four decimals for lat": (replace_in_comment(b"49.26142", b"49.2614"), {"lat": 49.2614}),
    "battery over 100": (replace_in_comment(b",72,", b",101,"), {"bat": 101}),
    "button 2": (replace_in_comment(b",1652813182,1", b",1652813182,2"), {"but": True}),
    "last sync not a time": (replace_in_comment(b"1652813182", b"never"), {"l": None}),
    "DateTime with dashes": (
        set_tag("0th", piexif.ImageIFD.DateTime, b"2022-05-17 18:46:57"),
        {},
    ),
    "no DateTimeOriginal": (set_tag("Exif", piexif.ExifIFD.DateTimeOriginal, None), {}),
    "DateTimeDigitized not a date": (
        set_tag("Exif", piexif.ExifIFD.DateTimeDigitized, b"2022:13:17 18:46:57"),
        {},
    ),
    "model not RP_": (set_tag("0th", piexif.ImageIFD.Model, b"imx477"), {"model": "imx477"}),
    "over 128 bytes": (
        replace_in_comment(b"49.26142", b"49.26142" + b"0" * 50),
        {"lat": 49.26142},
    ),
}


@pytest.mark.parametrize("case", sorted(STRICT_ONLY))
def test_strict_only(new_blob: bytes, case: str) -> None:
    mutate, stored = STRICT_ONLY[case]
    blob = with_exif(new_blob, mutate)
    with pytest.raises(SpecError):
        parse_image(blob, NEW)
    row = parse_image(blob, NEW, strict=False)
    assert {k: row[k] for k in stored} == stored  # type: ignore[literal-required]


# --- the spec's own format string always parses back -------------------------------------------

_VERSION = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E, exclude_characters=","))


@given(
    v=_VERSION.filter(lambda s: 1 <= len(s) <= 8),
    t=st.floats(-300, 100),
    h=st.floats(-1, 100),
    b_level=st.integers(0, 100),
    lum=st.floats(0, 10),
    lat=st.floats(-90, 90),
    lng=st.floats(-180, 180),
    alt=st.floats(-500, 9000),
    sync=st.integers(0, 2**32),
    button=st.integers(0, 1),
)
def test_spec_format_round_trips(
    v: str,
    t: float,
    h: float,
    b_level: int,
    lum: float,
    lat: float,
    lng: float,
    alt: float,
    sync: int,
    button: int,
) -> None:
    values = (v, t, h, b_level, lum, lat, lng, alt, sync, button)
    line = "%s,%.1f,%.1f,%i,%.2f,%.5f,%.5f,%.1f,%s,%i" % values  # noqa: UP031 (the spec's own)
    record = parse_user_comment(f"{HEADER_2022}\n{line}".encode())
    assert record["device_version"] == v
    assert record["temp"] == float(f"{t:.1f}")
    assert record["hum"] == float(f"{h:.1f}")
    assert record["bat"] == b_level
    assert record["lum"] == float(f"{lum:.2f}")
    assert record["lat"] == float(f"{lat:.5f}")
    assert record["lng"] == float(f"{lng:.5f}")
    assert record["alt"] == float(f"{alt:.1f}")
    assert record["l"] == sync
    assert record["but"] is bool(button)
