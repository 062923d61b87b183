"""What the agent writes parses by the server's rules (tests/stickypi_spec.py, written from the spec)."""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import piexif
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image
from stickypi_spec import parse_file_name, parse_image, parse_user_comment

from agent import __version__
from agent.capture.exif import Record, build_exif, insert_exif, luminosity, read_exif
from agent.capture.imagewriter import make_thumbnails, thumbnail_size
from agent.capture.naming import image_name, parse_image_name, thumbnail_path
from agent.config import load_config
from agent.errors import ImageFormatError
from agent.service import Pipeline

LOCATION = {"lat": 49.26142, "lng": -123.25088, "alt": 97.3}


def capture_one(config_path: Path, manual: bool = False) -> tuple[Path, str]:
    pipeline = Pipeline.build(load_config(config_path, environ={}))
    try:
        result = pipeline.capturer.capture(manual=manual)
        assert result.ok, result.error
        assert result.image is not None
        return pipeline.config.storage.data_dir / result.image.path, result.image.md5
    finally:
        pipeline.close()


@pytest.mark.parametrize("manual", [False, True])
def test_written_image_parses_by_the_servers_rules(write_config: Callable[..., Path], manual: bool) -> None:
    path, md5 = capture_one(write_config(location=LOCATION), manual=manual)
    parsed = parse_image(path, strict=True)
    assert parsed["format"] == "2022"
    assert parsed["device"] == "0a1b2c3d"
    assert parsed["datetime"] == parse_file_name(path.name)[1]
    assert parsed["md5"] == md5 == hashlib.md5(path.read_bytes()).hexdigest()
    assert (parsed["width"], parsed["height"]) == (320, 240)
    assert parsed["model"] == "RP_synthetic"
    assert parsed["device_version"] == __version__
    assert (parsed["temp"], parsed["hum"], parsed["bat"]) == (20.6, 42.6, 72)
    assert (parsed["lat"], parsed["lng"], parsed["alt"]) == (49.26142, -123.25088, 97.3)
    assert parsed["but"] is manual
    assert parsed["lum"] > 0  # the synthetic camera reports an exposure time
    # the user comment is raw ASCII, two lines, no trailing newline, no charset prefix
    raw = piexif.load(str(path))["Exif"][piexif.ExifIFD.UserComment]
    assert raw.startswith(b"v,T,H,B,L,lat,lng,a,l,b\n") and not raw.endswith(b"\n")
    # a GPS block because a location is configured
    gps = piexif.load(str(path))["GPS"]
    assert gps[piexif.GPSIFD.GPSLatitudeRef] == b"N" and gps[piexif.GPSIFD.GPSLongitudeRef] == b"W"
    deg, minutes, secs = (a / b for a, b in gps[piexif.GPSIFD.GPSLatitude])
    assert math.isclose(deg + minutes / 60 + secs / 3600, 49.26142, abs_tol=1e-6)


def test_unknown_sensors_and_no_location_give_the_specs_unknowns(write_config: Callable[..., Path]) -> None:
    path, _ = capture_one(write_config(sensors={"type": "none"}, location=None))
    parsed = parse_image(path, strict=True)
    assert (parsed["temp"], parsed["hum"], parsed["bat"]) == (-300.0, -1.0, 0)
    assert parsed["user_comment"].split("\n")[1].split(",")[5:8] == ["0.00000", "0.00000", "0.0"]
    assert piexif.load(str(path))["GPS"] == {}


def test_thumbnails_and_pixels(write_config: Callable[..., Path]) -> None:
    path, _ = capture_one(write_config(camera={"width": 1000, "height": 700}))
    for kind, box in (("thumbnail", (512, 384)), ("thumbnail-mini", (128, 96))):
        with Image.open(thumbnail_path(path, kind)) as im:
            im.load()
            assert im.size == thumbnail_size(1000, 700, box)
            ref = Image.new("RGB", (1000, 700))
            ref.thumbnail(box)
            assert im.size == ref.size  # Pillow's Image.thumbnail semantics


def test_exif_is_spliced_in_without_reencoding() -> None:
    im = Image.fromarray(np.random.default_rng(0).integers(0, 255, (96, 128, 3), dtype=np.uint8))
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=90)
    frame = buf.getvalue()
    when = dt.datetime(2024, 5, 1, 12, 0, 0, tzinfo=dt.UTC)
    out = insert_exif(frame, build_exif(when=when, model="RP_imx477", record=Record(v="1.0")))
    a = np.asarray(Image.open(io.BytesIO(frame)))
    b = np.asarray(Image.open(io.BytesIO(out)))
    assert np.array_equal(a, b)
    assert read_exif(out).datetime == when
    with pytest.raises(ImageFormatError, match="not a JPEG"):
        insert_exif(b"\x89PNG....", b"")


def test_real_trap_images_replayed_through_the_agent_parse(write_config: Callable[..., Path]) -> None:
    from stickypi_spec import REAL_IMAGES

    path, _ = capture_one(write_config(camera={"type": "replay", "folder": str(REAL_IMAGES)}))
    parsed = parse_image(path, strict=True)
    # the first file in name order: 1b74105a.2020-07-05_10-07-16.jpg, a 2020 ov5647 image
    assert (parsed["width"], parsed["height"]) == (2592, 1944)
    assert parsed["model"] == "RP_replay"
    # the replayed frame's exposure (9985 us, from its own EXIF) feeds L
    assert parsed["lum"] == round(math.log10(1e6 / 9985), 2)


# -- property tests -------------------------------------------------------------------

devices = st.text(alphabet="0123456789abcdef", min_size=8, max_size=8)
times = st.datetimes(
    min_value=dt.datetime(2019, 11, 1), max_value=dt.datetime(2099, 12, 31), timezones=st.just(dt.UTC)
)


@given(devices, times)
def test_names_round_trip_and_parse_like_the_server(device: str, when: dt.datetime) -> None:
    name = image_name(device, when)
    parsed = parse_image_name(name)
    assert parsed.device == device and parsed.datetime == when.replace(microsecond=0)
    assert parse_file_name(name) == (device, when.replace(microsecond=0))
    assert parsed.name == name


@given(st.text(max_size=40))
def test_arbitrary_names_are_accepted_only_if_well_formed(name: str) -> None:
    try:
        parsed = parse_image_name(name)
    except ImageFormatError:
        return
    assert image_name(parsed.device, parsed.datetime) == name


def finite_or_junk(lo: float, hi: float) -> st.SearchStrategy[float | None]:
    return st.one_of(
        st.none(),
        st.floats(min_value=lo, max_value=hi),
        st.floats(allow_nan=True, allow_infinity=True),
    )


@settings(max_examples=300)
@given(
    temperature=finite_or_junk(-100, 150),
    humidity=finite_or_junk(0, 100),
    battery=finite_or_junk(0, 100),
    exposure=finite_or_junk(1, 1e7),
    lat=finite_or_junk(-90, 90),
    lng=finite_or_junk(-180, 180),
    alt=finite_or_junk(-1000, 10000),
    last_sync=st.one_of(st.none(), st.integers(0, 2**32)),
    manual=st.booleans(),
)
def test_any_readings_make_a_record_the_server_parses(
    temperature, humidity, battery, exposure, lat, lng, alt, last_sync, manual
) -> None:
    rec = Record.from_readings(
        __version__,
        temperature=temperature,
        humidity=humidity,
        battery=battery,
        exposure_us=exposure,
        lat=lat,
        lng=lng,
        alt=alt,
        last_sync=last_sync,
        manual=manual,
    )
    text = rec.format()
    parsed = parse_user_comment(text.encode("ascii"), strict=True)
    assert len(text.encode()) <= 128

    def expect(value: float | None, lo: float, hi: float, unknown: float) -> float:
        ok = value is not None and math.isfinite(value) and lo <= value <= hi
        return value if ok else unknown  # type: ignore[return-value]

    assert parsed["temp"] == pytest.approx(expect(temperature, -100, 150, -300.0), abs=0.051)
    assert parsed["hum"] == pytest.approx(expect(humidity, 0, 100, -1.0), abs=0.051)
    assert parsed["bat"] == round(expect(battery, 0, 100, 0))
    assert parsed["lat"] == pytest.approx(expect(lat, -90, 90, 0.0), abs=6e-6)
    assert parsed["lng"] == pytest.approx(expect(lng, -180, 180, 0.0), abs=6e-6)
    assert parsed["alt"] == pytest.approx(expect(alt, -1000, 10000, 0.0), abs=0.051)
    assert parsed["lum"] == pytest.approx(luminosity(exposure), abs=0.006)
    assert parsed["but"] is manual
    assert parsed["l"] == (0 if last_sync is None else last_sync)


def test_unknown_values_are_the_specs() -> None:
    assert Record.from_readings("3.1.0").format() == (
        "v,T,H,B,L,lat,lng,a,l,b\n3.1.0,-300.0,-1.0,0,0.00,0.00000,0.00000,0.0,0,0"
    )
    for bad in ("", "123456789", "1,2"):
        with pytest.raises(ImageFormatError):
            Record.from_readings(bad)


@given(st.integers(1, 5000), st.integers(1, 5000), st.sampled_from([(512, 384), (128, 96)]))
def test_thumbnail_size_matches_pillow(w: int, h: int, box: tuple[int, int]) -> None:
    im = Image.new("1", (w, h))
    im.thumbnail(box)
    assert thumbnail_size(w, h, box) == im.size


def test_thumbnails_from_one_reduced_decode_fit_their_boxes() -> None:
    buf = io.BytesIO()
    Image.new("RGB", (4056, 3040), (220, 200, 40)).save(buf, "JPEG")
    thumbs = make_thumbnails(buf.getvalue())
    assert Image.open(io.BytesIO(thumbs["thumbnail"])).size == (512, 384)
    assert Image.open(io.BytesIO(thumbs["thumbnail-mini"])).size == (128, 96)
    with pytest.raises(ImageFormatError):
        make_thumbnails(b"\xff\xd8 not really")


def tiny_jpeg(size: tuple[int, int] = (64, 48)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, (220, 200, 40)).save(buf, "JPEG")
    return buf.getvalue()
