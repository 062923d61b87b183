"""An independent reader of Sticky Pi image files, written from the specification only.

Sources: ``../shared/specs/image-format.md`` and ``../shared/specs/sticky-pi-api.md`` (beside the
checkout), not the agent's code, so tests can hold the agent's output against it. It lives in the
package because ``stickyctl devserver`` parses uploads with it (``strict=False``); the tests
import it through ``tests/stickypi_spec.py``.

:func:`parse_image` reads a JPEG the way the Sticky Pi API server does on ``/_put_new_images``
and returns the row the server would store. It raises :class:`SpecError` for anything the server
would reject (a 500) and also for the cases where it would accept the file but silently lose data
(an EXIF character-code prefix on ``UserComment``, an unknown or missing header key).

``strict=True`` (the default) adds the rules a well-behaved writer follows although the server
does not check them: the exact ``printf`` format of every value, value ranges, ASCII only, the
128-byte tag limit, ``Model`` = ``RP_<sensor>`` and the three EXIF date tags. Use
``strict=False`` to ask "would the server take this file, and what would it store?".

Assumptions beyond the spec's text (confirmed against the public ``sticky-pi-api`` server):

* A ``UserComment`` with a trailing newline is **rejected by the server**, not only by the strict
  mode: the server splits the record on ``"\\n"`` and requires exactly two parts; a trailing
  newline makes a third, empty, line.
* 2020 legacy images: ``Make`` holds a Python dict literal. The server stores its ``lat``, ``lng``,
  ``alt``, ``temp`` and ``hum`` as they are, except that ``lat == lng == alt == 0`` means "no GPS"
  and all three become ``None``. The dict's ``datetime`` is not the capture time (the file name
  is) and is not stored. Legacy images carry no ``device_version``, ``bat``, ``lum``, ``but`` or
  ``l``: those are ``None``. ``lum`` is not derived from ``no_flash_exposure_time`` because the
  server does not do it. Note that device ``1b74105a`` wrote lat/lng swapped (lat -121.76,
  lng 49.24); the server stores them swapped and so does this parser.
* 2022 values are stored as written, including the "unknown" sentinels (``T=-300.0``,
  ``H=-1.0``, ``lat=lng=0.0``...). ``b`` is stored as a bool, ``B`` as an int, ``l`` is returned
  as an int although the server ignores it.
"""

from __future__ import annotations

import ast
import datetime as dt
import hashlib
import io
import math
import os
import re
from pathlib import Path
from typing import Any, Literal, TypedDict, cast

import piexif
from PIL import Image

#: The server rejects images taken before the platform existed.
TIME_ORIGIN = dt.datetime(2019, 11, 1, tzinfo=dt.UTC)
#: The 2022 ``UserComment`` header, exactly.
HEADER_2022 = "v,T,H,B,L,lat,lng,a,l,b"
#: The firmware's per-tag payload limit.
MAX_TAG_BYTES = 128
#: ``device_version`` column width.
MAX_VERSION_CHARS = 8

_DEVICE_RE = re.compile(r"[0-9a-fA-F]{8}")
_NAME_DATETIME_RE = re.compile(r"\d{4}-\d{2}-\d{2}_\d{2}-\d{2}-\d{2}")
_EXIF_DATETIME_RE = re.compile(r"\d{4}:\d{2}:\d{2} \d{2}:\d{2}:\d{2}")
_MODEL_RE = re.compile(r"RP_[A-Za-z0-9]+")
# The four 8-byte character codes of the EXIF standard for UserComment.
_CHARSET_PREFIXES = (b"ASCII\0\0\0", b"UNICODE\0", b"JIS\0\0\0\0\0", b"\0" * 8)

# Exact shape of each value under "%s,%.1f,%.1f,%i,%.2f,%.5f,%.5f,%.1f,%s,%i" (strict mode).
_STRICT_VALUE_RE: dict[str, re.Pattern[str]] = {
    "v": re.compile(r"[!-~]+"),  # %s: printable ASCII, no space (commas are split off already)
    "T": re.compile(r"-?\d+\.\d"),
    "H": re.compile(r"-?\d+\.\d"),
    "B": re.compile(r"-?\d+"),
    "L": re.compile(r"-?\d+\.\d{2}"),
    "lat": re.compile(r"-?\d+\.\d{5}"),
    "lng": re.compile(r"-?\d+\.\d{5}"),
    "a": re.compile(r"-?\d+\.\d"),
    "l": re.compile(r"\d+"),  # %s of a unix time in whole seconds
    "b": re.compile(r"[01]"),
}


# Row keys that come from the EXIF metadata; a format that lacks one stores None.
_METADATA_KEYS = (
    "device_version", "temp", "hum", "bat", "lum", "lat", "lng", "alt", "but", "l",
    "user_comment", "legacy_make",
)  # fmt: skip


class SpecError(Exception):
    """The file breaks the Sticky Pi image specification; the message says how."""


class ParsedImage(TypedDict):
    """What the server stores for one image (plus a few fields useful to tests)."""

    format: Literal["2022", "2020"]
    device: str
    datetime: dt.datetime  # aware, UTC, from the file name
    md5: str
    width: int
    height: int
    model: str | None  # EXIF Model, e.g. "RP_imx477"; not stored by the server
    device_version: str | None  # v
    temp: float | None  # T
    hum: float | None  # H
    bat: int | None  # B
    lum: float | None  # L
    lat: float | None
    lng: float | None
    alt: float | None  # a
    but: bool | None  # b
    l: int | None  # last clock sync (unix seconds); 2022 only, ignored by the server  # noqa: E741
    user_comment: str | None  # the raw 2022 record, decoded
    legacy_make: dict[str, Any] | None  # the raw 2020 dict


def parse_file_name(name: str) -> tuple[str, dt.datetime]:
    """Parse ``<device>.<YYYY-MM-DD_HH-MM-SS>.jpg`` into ``(device, aware UTC datetime)``.

    Upper-case hex parses (as the server does) but names another device: it is returned as is.
    """
    fields = name.split(".")
    if len(fields) != 3:
        raise SpecError(f"wrong file name {name!r}: three dot-separated fields expected")
    device, stamp, ext = fields
    if not _DEVICE_RE.fullmatch(device):
        raise SpecError(f"invalid device field {device!r}: exactly 8 hex characters expected")
    if not _NAME_DATETIME_RE.fullmatch(stamp):
        raise SpecError(f"invalid datetime field {stamp!r}: YYYY-MM-DD_HH-MM-SS expected")
    try:
        when = dt.datetime.strptime(stamp, "%Y-%m-%d_%H-%M-%S").replace(tzinfo=dt.UTC)
    except ValueError as exc:
        raise SpecError(f"invalid datetime field {stamp!r}: {exc}") from None
    if when < TIME_ORIGIN:
        raise SpecError(f"datetime {stamp} is before 2019-11-01: taken before the platform existed")
    if ext != "jpg":
        raise SpecError(f"wrong extension {ext!r}: 'jpg' expected")
    return device, when


def parse_image(
    source: str | os.PathLike[str] | bytes, name: str | None = None, *, strict: bool = True
) -> ParsedImage:
    """Parse a Sticky Pi JPEG (a path or the file's bytes) as the server would.

    ``name`` is the file name the image is uploaded under; it defaults to the path's base name
    and is required for bytes. Returns the stored row (see :class:`ParsedImage`); raises
    :class:`SpecError` if the server would reject the file or lose data (and, with ``strict``,
    for any departure from the spec's writer rules).
    """
    if isinstance(source, bytes):
        if name is None:
            raise TypeError("name is required when parsing bytes")
        blob = source
    else:
        blob = Path(source).read_bytes()
        name = Path(source).name if name is None else name
    device, when = parse_file_name(name)

    try:
        with Image.open(io.BytesIO(blob)) as img:
            if img.format != "JPEG":
                raise SpecError(f"not a JPEG but {img.format}")
            img.load()  # the server decodes the whole image (thumbnails): truncation fails there
            width, height = img.size
    except (OSError, Image.DecompressionBombError) as exc:
        raise SpecError(f"not a readable JPEG: {exc}") from None
    try:
        exif = piexif.load(blob)
    except Exception as exc:  # piexif raises assorted errors on malformed EXIF
        raise SpecError(f"malformed EXIF: {exc}") from None
    ifd0, exif_ifd = exif["0th"], exif["Exif"]
    if not ifd0 and not exif_ifd:
        raise SpecError("no EXIF")

    model_raw = ifd0.get(piexif.ImageIFD.Model)
    model = None if model_raw is None else model_raw.decode("ascii", "replace")
    make = ifd0.get(piexif.ImageIFD.Make)
    if make is None:
        raise SpecError("no EXIF Make")

    if make == b"StickyPi":
        image_format = "2022"
        if strict:
            _check_2022_tags(ifd0, exif_ifd, model)
        comment = exif_ifd.get(piexif.ExifIFD.UserComment)
        if comment is None:
            raise SpecError("2022 format (Make=StickyPi) but no EXIF UserComment")
        metadata = parse_user_comment(comment, strict=strict)
    else:
        image_format = "2020"
        metadata = parse_legacy_make(make)

    row = {
        "format": image_format,
        "device": device,
        "datetime": when,
        "md5": hashlib.md5(blob).hexdigest(),
        "width": width,
        "height": height,
        "model": model,
        **dict.fromkeys(_METADATA_KEYS),
        **metadata,
    }
    return cast(ParsedImage, row)


def parse_user_comment(comment: bytes, *, strict: bool = True) -> dict[str, Any]:
    """Parse a 2022 ``UserComment`` payload: the stored fields, ``l`` and the raw text."""
    for prefix in _CHARSET_PREFIXES:
        if comment.startswith(prefix):
            raise SpecError(
                f"UserComment starts with the EXIF character-code prefix {prefix!r}: "
                "the server would silently drop the first field"
            )
    if strict and len(comment) > MAX_TAG_BYTES:
        raise SpecError(f"UserComment is {len(comment)} bytes, over the {MAX_TAG_BYTES}-byte limit")
    try:
        text = comment.decode("ascii" if strict else "utf-8")
    except UnicodeDecodeError as exc:
        raise SpecError(f"UserComment is not {'ASCII' if strict else 'UTF-8'}: {exc}") from None

    # The server splits on "\n" and asserts two parts: a trailing newline (a third, empty line)
    # or a "\r\n" (a "b\r" header key, silently dropped) break it. Rejected in both modes.
    lines = text.split("\n")
    if len(lines) != 2:
        raise SpecError(
            f"UserComment splits into {len(lines)} line(s), exactly 2 joined by one '\\n' expected"
            + (" (trailing newline)" if len(lines) == 3 and lines[2] == "" else "")
        )
    if lines[0] != HEADER_2022:
        raise SpecError(f"UserComment header {lines[0]!r} is not exactly {HEADER_2022!r}")
    keys = lines[0].split(",")
    values = lines[1].split(",")
    if len(values) != len(keys):
        raise SpecError(f"UserComment has {len(values)} values for {len(keys)} header keys")
    raw = dict(zip(keys, values, strict=True))
    for key, value in raw.items():
        if value == "":
            raise SpecError(f"UserComment field {key!r} is empty")
        if strict and not _STRICT_VALUE_RE[key].fullmatch(value):
            raise SpecError(f"UserComment field {key}={value!r} does not match the spec's format")

    version = raw["v"]
    if len(version) > MAX_VERSION_CHARS:
        raise SpecError(f"device version {version!r} is longer than {MAX_VERSION_CHARS} chars")
    out: dict[str, Any] = {
        "device_version": version,
        "temp": _number(raw, "T"),
        "hum": _number(raw, "H"),
        "bat": _integer(raw, "B"),
        "lum": _number(raw, "L"),
        "lat": _number(raw, "lat"),
        "lng": _number(raw, "lng"),
        "alt": _number(raw, "a"),
        "but": _flag(raw["b"]),
        "l": int(raw["l"]) if raw["l"].isdigit() else None,  # ignored by the server
        "user_comment": text,
    }
    if strict:
        if not 0 <= out["bat"] <= 100:
            raise SpecError(f"battery level B={out['bat']} is outside 0-100")
        if not -90 <= out["lat"] <= 90 or not -180 <= out["lng"] <= 180:
            raise SpecError(f"position lat={out['lat']} lng={out['lng']} is out of range")
    return out


def parse_legacy_make(make: bytes) -> dict[str, Any]:
    """Map a 2020 ``Make`` dict literal onto the stored fields (see the module docstring)."""
    text = _ascii(make, "Make")
    try:
        legacy = ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        raise SpecError(f"EXIF Make {text[:40]!r} is neither 'StickyPi' nor a dict literal") from None
    if not isinstance(legacy, dict):
        raise SpecError(f"EXIF Make {text[:40]!r} is neither 'StickyPi' nor a dict literal")
    missing = [k for k in ("lat", "lng", "alt") if k not in legacy]
    if missing:
        raise SpecError(f"legacy Make dict lacks {missing}")
    out: dict[str, Any] = {"legacy_make": legacy}
    for key in ("lat", "lng", "alt", "temp", "hum"):
        value = legacy.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
            raise SpecError(f"legacy Make {key}={value!r} is not a number")
        out[key] = value
    if out["lat"] == 0 and out["lng"] == 0 and out["alt"] == 0:
        out["lat"] = out["lng"] = out["alt"] = None  # the server's "no GPS"
    return out


def _check_2022_tags(ifd0: dict[int, Any], exif_ifd: dict[int, Any], model: str | None) -> None:
    """Strict checks of the 2022 EXIF tags the server does not read itself."""
    if model is None or not _MODEL_RE.fullmatch(model):
        raise SpecError(f"EXIF Model {model!r} is not RP_<sensor>")
    tags = {
        "DateTime": ifd0.get(piexif.ImageIFD.DateTime),
        "DateTimeOriginal": exif_ifd.get(piexif.ExifIFD.DateTimeOriginal),
        "DateTimeDigitized": exif_ifd.get(piexif.ExifIFD.DateTimeDigitized),
    }
    for tag, raw in tags.items():
        if raw is None:
            raise SpecError(f"no EXIF {tag}")
        value = _ascii(raw, tag)
        if not _EXIF_DATETIME_RE.fullmatch(value):
            raise SpecError(f"EXIF {tag} {value!r} is not YYYY:MM:DD HH:MM:SS")
        try:
            dt.datetime.strptime(value, "%Y:%m:%d %H:%M:%S")
        except ValueError as exc:
            raise SpecError(f"EXIF {tag} {value!r}: {exc}") from None


def _ascii(raw: bytes, tag: str) -> str:
    try:
        return raw.decode("ascii")
    except (UnicodeDecodeError, AttributeError):
        raise SpecError(f"EXIF {tag} is not ASCII text: {raw!r}") from None


def _number(raw: dict[str, str], key: str) -> float:
    try:
        value = float(raw[key])
    except ValueError:
        raise SpecError(f"UserComment field {key}={raw[key]!r} is not a number") from None
    if not math.isfinite(value):
        raise SpecError(f"UserComment field {key}={raw[key]!r} is not finite")
    return value


def _flag(value: str) -> bool:
    """``b`` as the server reads it: ``bool(int(value))``."""
    try:
        return bool(int(value))
    except ValueError:
        raise SpecError(f"UserComment field b={value!r} is not an integer") from None


def _integer(raw: dict[str, str], key: str) -> int:
    """``B``: the server reads a float into an integer column; only integral values are taken."""
    value = _number(raw, key)
    if not value.is_integer():
        raise SpecError(f"UserComment field {key}={raw[key]!r} is not an integer")
    return int(value)
