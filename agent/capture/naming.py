"""Image identity: device ids, file names and where files live on disk.

An image is identified by its device and its capture second (UTC); the file name
``<device>.<YYYY-MM-DD_HH-MM-SS>.jpg`` carries both and is what the Sticky Pi
server parses. See ``shared/specs/image-format.md``.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from pathlib import Path

from agent.errors import ImageFormatError

DEVICE_ID_RE = re.compile(r"^[0-9a-f]{8}$")
FILE_NAME_RE = re.compile(r"^(?P<device>[0-9a-f]{8})\.(?P<stamp>\d{4}-\d{2}-\d{2}_\d{2}-\d{2}-\d{2})\.jpg$")
STAMP_FORMAT = "%Y-%m-%d_%H-%M-%S"
#: The server rejects images "taken before the platform existed".
EARLIEST_VALID_TIME = dt.datetime(2019, 11, 1, tzinfo=dt.UTC)

THUMBNAIL_DIRS = {"thumbnail": "thumbnail", "thumbnail-mini": "thumbnail-mini"}
#: Suffix of files being written; a file with it is never complete.
PARTIAL_SUFFIX = "~"


def validate_device_id(value: str) -> str:
    """Given a device id, return it unchanged. Raise ImageFormatError unless it is 8 lower-case hex digits."""
    if not DEVICE_ID_RE.match(value):
        raise ImageFormatError(
            f"device id must be exactly 8 lower-case hex digits (e.g. 5c173ff2), got {value!r}"
        )
    return value


def to_utc_second(when: dt.datetime) -> dt.datetime:
    """Given an aware datetime, return it in UTC truncated to the second.

    Raise ImageFormatError for a naive datetime (its zone would be a guess).
    """
    if when.tzinfo is None:
        raise ImageFormatError(f"capture time {when.isoformat()} has no time zone")
    return when.astimezone(dt.UTC).replace(microsecond=0)


def image_name(device: str, when: dt.datetime) -> str:
    """Given a device id and a capture time, return the image file name."""
    validate_device_id(device)
    return f"{device}.{to_utc_second(when).strftime(STAMP_FORMAT)}.jpg"


@dataclass(frozen=True)
class ImageName:
    """A parsed image file name."""

    device: str
    datetime: dt.datetime  # aware, UTC

    @property
    def name(self) -> str:
        return image_name(self.device, self.datetime)


def parse_image_name(name: str) -> ImageName:
    """Given a file name, return its device and UTC datetime.

    Raise ImageFormatError if it is not ``<8 lower-case hex>.<YYYY-MM-DD_HH-MM-SS>.jpg``
    or names an impossible date.
    """
    m = FILE_NAME_RE.match(name)
    if not m:
        raise ImageFormatError(f"not a Sticky Pi image name (<device>.<YYYY-MM-DD_HH-MM-SS>.jpg): {name!r}")
    try:
        when = dt.datetime.strptime(m["stamp"], STAMP_FORMAT).replace(tzinfo=dt.UTC)
    except ValueError as e:
        raise ImageFormatError(f"impossible date in image name {name!r}: {e}") from e
    return ImageName(m["device"], when)


def day_dir(data_dir: Path, device: str, when: dt.datetime) -> Path:
    """Given the data root, a device and a time, return the folder the day's images go in."""
    return data_dir / device / to_utc_second(when).strftime("%Y-%m-%d")


def image_path(data_dir: Path, device: str, when: dt.datetime) -> Path:
    """Return ``<data_dir>/<device>/<YYYY-MM-DD>/<device>.<YYYY-MM-DD_HH-MM-SS>.jpg``."""
    return day_dir(data_dir, device, when) / image_name(device, when)


def thumbnail_path(original: Path, kind: str) -> Path:
    """Given an original's path and ``thumbnail`` or ``thumbnail-mini``, return the thumbnail's path.

    Thumbnails keep the original's file name, in a sub-folder of its day folder.
    """
    if kind not in THUMBNAIL_DIRS:
        raise ValueError(f"unknown thumbnail kind {kind!r}")
    return original.parent / THUMBNAIL_DIRS[kind] / original.name


def partial_path(final: Path) -> Path:
    """Return the temporary name a file is written under before its atomic rename."""
    return final.with_name(final.name + PARTIAL_SUFFIX)
