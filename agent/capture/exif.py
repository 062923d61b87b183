"""The EXIF record of a Sticky Pi image (the 2022 format, firmware >= 3).

``Make`` = ``StickyPi``, ``Model`` = ``RP_<sensor>``, the three datetimes, and a
``UserComment`` of raw ASCII: a header line ``v,T,H,B,L,lat,lng,a,l,b`` and a value
line formatted ``%s,%.1f,%.1f,%i,%.2f,%.5f,%.5f,%.1f,%s,%i``, joined by one ``\\n``,
no trailing newline, no EXIF character-code prefix. Unknown values have fixed
defaults (``T=-300.0``, ``H=-1.0``, ``B=0``, ``L=0.00`` ...). See
``shared/specs/image-format.md``.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass
from fractions import Fraction

import piexif

from agent.errors import ImageFormatError

MAKE = "StickyPi"
HEADER = "v,T,H,B,L,lat,lng,a,l,b"
FIELDS = HEADER.split(",")
VALUE_FORMAT = "%s,%.1f,%.1f,%i,%.2f,%.5f,%.5f,%.1f,%s,%i"
EXIF_DATETIME_FORMAT = "%Y:%m:%d %H:%M:%S"
MAX_VERSION_LEN = 8
MAX_TAG_PAYLOAD = 128

UNKNOWN_TEMPERATURE = -300.0
UNKNOWN_HUMIDITY = -1.0
UNKNOWN_BATTERY = 0
UNKNOWN_LUMINOSITY = 0.0
UNKNOWN_POSITION = 0.0
UNKNOWN_ALTITUDE = 0.0
UNKNOWN_SYNC_TIME = 0


def luminosity(exposure_us: float | None) -> float:
    """Given an exposure time in microseconds, return ``L = log10(1e6 / exposure)``; 0.0 if unknown."""
    if exposure_us is None or not math.isfinite(exposure_us) or exposure_us <= 0:
        return UNKNOWN_LUMINOSITY
    value = math.log10(1e6 / exposure_us)
    return value if math.isfinite(value) else UNKNOWN_LUMINOSITY


@dataclass(frozen=True)
class Record:
    """The ten values of the UserComment record, already resolved to the spec's unknowns.

    Build one with :meth:`from_readings`, which maps every missing reading to the
    spec's unknown value; the fields then always format to a valid record.
    """

    v: str
    T: float = UNKNOWN_TEMPERATURE
    H: float = UNKNOWN_HUMIDITY
    B: int = UNKNOWN_BATTERY
    L: float = UNKNOWN_LUMINOSITY
    lat: float = UNKNOWN_POSITION
    lng: float = UNKNOWN_POSITION
    a: float = UNKNOWN_ALTITUDE
    l: int = UNKNOWN_SYNC_TIME  # noqa: E741 - the spec's name
    b: int = 0

    @classmethod
    def from_readings(
        cls,
        version: str,
        *,
        temperature: float | None = None,
        humidity: float | None = None,
        battery: float | None = None,
        exposure_us: float | None = None,
        lat: float | None = None,
        lng: float | None = None,
        alt: float | None = None,
        last_sync: float | None = None,
        manual: bool = False,
    ) -> Record:
        """Given raw readings (``None`` = unknown), return a record with the spec's unknowns filled in.

        Out-of-range or non-finite readings count as unknown rather than producing
        a record the server would store as nonsense. Raise ImageFormatError for a
        version the server cannot store (empty, over 8 characters, or with a comma).
        """
        if not version or len(version) > MAX_VERSION_LEN or "," in version or "\n" in version:
            raise ImageFormatError(
                f"device software version must be 1-{MAX_VERSION_LEN} characters "
                f"without commas, got {version!r}"
            )

        def ok(x: float | None, lo: float, hi: float) -> float | None:
            return x if x is not None and math.isfinite(x) and lo <= x <= hi else None

        t = ok(temperature, -100.0, 150.0)
        h = ok(humidity, 0.0, 100.0)
        bat = ok(battery, 0.0, 100.0)
        la = ok(lat, -90.0, 90.0)
        ln = ok(lng, -180.0, 180.0)
        al = ok(alt, -1000.0, 10000.0)
        ls = ok(last_sync, 0.0, 2**31 * 2.0)
        return cls(
            v=version,
            T=UNKNOWN_TEMPERATURE if t is None else t,
            H=UNKNOWN_HUMIDITY if h is None else h,
            B=UNKNOWN_BATTERY if bat is None else round(bat),
            L=luminosity(exposure_us),
            lat=UNKNOWN_POSITION if la is None else la,
            lng=UNKNOWN_POSITION if ln is None else ln,
            a=UNKNOWN_ALTITUDE if al is None else al,
            l=UNKNOWN_SYNC_TIME if ls is None else int(ls),
            b=1 if manual else 0,
        )

    def format(self) -> str:
        """Return the two-line UserComment text (no trailing newline)."""
        values = VALUE_FORMAT % (
            self.v,
            self.T,
            self.H,
            self.B,
            self.L,
            self.lat,
            self.lng,
            self.a,
            self.l,
            self.b,
        )
        return HEADER + "\n" + values

    def as_dict(self) -> dict[str, object]:
        """Return the record as the values it formats to (what a reader of the file would see)."""
        return parse_user_comment(self.format().encode("ascii"))


def parse_user_comment(raw: bytes) -> dict[str, object]:
    """Given a UserComment payload, return its ten values keyed by the header's names.

    Raise ImageFormatError if it has a charset prefix, is not two lines, or any
    field is missing, empty or not a number where the spec says number.
    """
    if raw[:8] in (b"ASCII\0\0\0", b"UNICODE\0", b"\0" * 8):
        raise ImageFormatError("UserComment has an EXIF character-code prefix")
    try:
        text = raw.decode("ascii")
    except UnicodeDecodeError as e:
        raise ImageFormatError("UserComment is not ASCII") from e
    lines = text.split("\n")
    if len(lines) != 2:
        raise ImageFormatError(f"UserComment must be two lines, got {len(lines)}")
    keys, values = lines[0].split(","), lines[1].split(",")
    if keys != FIELDS or len(values) != len(FIELDS) or any(not v for v in values):
        raise ImageFormatError(f"UserComment fields do not match {HEADER!r}: {text!r}")
    out: dict[str, object] = {"v": values[0]}
    try:
        for key, value in zip(FIELDS[1:], values[1:], strict=True):
            out[key] = int(value) if key in ("B", "l", "b") else float(value)
    except ValueError as e:
        raise ImageFormatError(f"UserComment value not a number: {e}") from e
    return out


def _rational(x: float, denominator: int = 1_000_000) -> tuple[int, int]:
    f = Fraction(x).limit_denominator(denominator)
    return f.numerator, f.denominator


def _gps_dms(value: float) -> tuple[tuple[int, int], tuple[int, int], tuple[int, int]]:
    value = abs(value)
    degrees = int(value)
    minutes_f = (value - degrees) * 60
    minutes = int(minutes_f)
    seconds = (minutes_f - minutes) * 60
    return (degrees, 1), (minutes, 1), (round(seconds * 10000), 10000)


@dataclass(frozen=True)
class ExposureInfo:
    """Camera facts that go into standard EXIF tags (all optional)."""

    exposure_us: float | None = None
    analogue_gain: float | None = None


def build_exif(
    *,
    when: dt.datetime,
    model: str,
    record: Record,
    exposure: ExposureInfo | None = None,
    location: tuple[float, float, float] | None = None,
    software: str | None = None,
) -> bytes:
    """Given the capture time (UTC), the camera model and the record, return an EXIF APP1 payload.

    ``location`` is ``(lat, lng, alt)``; when given a GPS IFD is written too.
    Raise ImageFormatError if a tag's payload would exceed the firmware's 128 bytes.
    """
    stamp = when.astimezone(dt.UTC).strftime(EXIF_DATETIME_FORMAT).encode("ascii")
    comment = record.format().encode("ascii")
    for tag, payload in (("Model", model.encode()), ("UserComment", comment)):
        if len(payload) > MAX_TAG_PAYLOAD:
            raise ImageFormatError(f"EXIF {tag} is {len(payload)} bytes, over {MAX_TAG_PAYLOAD}")
    zeroth: dict[int, object] = {
        piexif.ImageIFD.Make: MAKE.encode("ascii"),
        piexif.ImageIFD.Model: model.encode("ascii"),
        piexif.ImageIFD.DateTime: stamp,
    }
    if software:
        zeroth[piexif.ImageIFD.Software] = software.encode("ascii")
    exif_ifd: dict[int, object] = {
        piexif.ExifIFD.DateTimeOriginal: stamp,
        piexif.ExifIFD.DateTimeDigitized: stamp,
        piexif.ExifIFD.UserComment: comment,
    }
    if exposure and exposure.exposure_us and exposure.exposure_us > 0:
        exif_ifd[piexif.ExifIFD.ExposureTime] = _rational(exposure.exposure_us / 1e6)
    if exposure and exposure.analogue_gain and exposure.analogue_gain > 0:
        exif_ifd[piexif.ExifIFD.ISOSpeedRatings] = min(65535, round(100 * exposure.analogue_gain))
    gps: dict[int, object] = {}
    if location is not None:
        lat, lng, alt = location
        gps = {
            piexif.GPSIFD.GPSVersionID: (2, 3, 0, 0),
            piexif.GPSIFD.GPSLatitudeRef: b"N" if lat >= 0 else b"S",
            piexif.GPSIFD.GPSLatitude: _gps_dms(lat),
            piexif.GPSIFD.GPSLongitudeRef: b"E" if lng >= 0 else b"W",
            piexif.GPSIFD.GPSLongitude: _gps_dms(lng),
            piexif.GPSIFD.GPSAltitudeRef: 0 if alt >= 0 else 1,
            piexif.GPSIFD.GPSAltitude: _rational(abs(alt), 100),
        }
    data: bytes = piexif.dump({"0th": zeroth, "Exif": exif_ifd, "GPS": gps, "1st": {}})
    return data


def insert_exif(jpeg: bytes, exif: bytes) -> bytes:
    """Given encoded JPEG bytes and an EXIF payload, return the JPEG with its EXIF replaced.

    The image data is not re-encoded. Raise ImageFormatError if ``jpeg`` is not a JPEG.
    """
    if not jpeg.startswith(b"\xff\xd8"):
        raise ImageFormatError("frame is not a JPEG (no SOI marker)")
    import io

    out = io.BytesIO()
    try:
        piexif.insert(exif, jpeg, out)
    except (ValueError, piexif.InvalidImageDataError) as e:
        raise ImageFormatError(f"cannot insert EXIF into frame: {e}") from e
    return out.getvalue()


@dataclass(frozen=True)
class ExifSummary:
    """What :func:`read_exif` found in a file the agent wrote."""

    make: str
    model: str
    datetime: dt.datetime
    record: dict[str, object]
    exposure_us: float | None


def read_exif(jpeg: bytes) -> ExifSummary:
    """Given JPEG bytes in the 2022 format, return its EXIF facts.

    Raise ImageFormatError if the EXIF is missing, ``Make`` is not ``StickyPi``,
    or the datetimes or UserComment are malformed.
    """
    if not isinstance(jpeg, bytes | bytearray) or not jpeg.startswith(b"\xff\xd8"):
        # piexif takes anything else for a file NAME and opens it (a FIFO hangs, a path leaks)
        raise ImageFormatError("not a JPEG (no JPEG start marker)")
    try:
        d = piexif.load(bytes(jpeg))
    except Exception as e:  # piexif raises bare ValueError/struct.error on junk
        raise ImageFormatError(f"unreadable EXIF ({type(e).__name__}: {str(e)[:80]!r})") from e
    zeroth, exif_ifd = d.get("0th", {}), d.get("Exif", {})
    make = zeroth.get(piexif.ImageIFD.Make, b"").decode("ascii", "replace")
    if make != MAKE:
        raise ImageFormatError(f"EXIF Make is {make!r}, expected {MAKE!r}")
    model = zeroth.get(piexif.ImageIFD.Model, b"").decode("ascii", "replace")
    raw_dt = exif_ifd.get(piexif.ExifIFD.DateTimeOriginal) or zeroth.get(piexif.ImageIFD.DateTime)
    if not raw_dt:
        raise ImageFormatError("EXIF has no DateTimeOriginal")
    try:
        when = dt.datetime.strptime(raw_dt.decode("ascii"), EXIF_DATETIME_FORMAT)
    except ValueError as e:
        raise ImageFormatError(f"EXIF DateTimeOriginal malformed: {raw_dt!r}") from e
    comment = exif_ifd.get(piexif.ExifIFD.UserComment)
    if not comment:
        raise ImageFormatError("EXIF has no UserComment")
    record = parse_user_comment(comment)
    exp = exif_ifd.get(piexif.ExifIFD.ExposureTime)
    exposure_us = exp[0] / exp[1] * 1e6 if exp and exp[1] else None
    return ExifSummary(make, model, when.replace(tzinfo=dt.UTC), record, exposure_us)
