"""The devserver's values as the real server's database holds them: datetimes in and out, a lookup
key's datetime, the column types (``SMALLINT``, ``DECIMAL(9, 6)``, MariaDB ``FLOAT``) and
:class:`StoreError`, the failure the real server answers with a 500."""

from __future__ import annotations

import contextlib
import datetime as dt
import struct

_DB_DATETIME = "%Y-%m-%d %H:%M:%S"
_IN_DATETIMES = ("%Y-%m-%dT%H:%M:%SZ", "%Y-%m-%d_%H-%M-%S")


class StoreError(Exception):
    """The request fails as on the real server (a 500); the message says why, for the log."""


def format_datetime(when: dt.datetime) -> str:
    """Given an aware UTC datetime, return it as the API writes it: ``YYYY-MM-DDTHH:MM:SSZ``."""
    return when.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_datetime(value: object) -> dt.datetime:
    """Given ``YYYY-MM-DDTHH:MM:SSZ`` or legacy ``YYYY-MM-DD_HH-MM-SS``, return an aware UTC datetime.

    Raise :class:`StoreError` for anything else.
    """
    if isinstance(value, str):
        for fmt in _IN_DATETIMES:
            with contextlib.suppress(ValueError):
                return dt.datetime.strptime(value, fmt).replace(tzinfo=dt.UTC)
    raise StoreError(f"bad datetime {value!r}: YYYY-MM-DDTHH:MM:SSZ or YYYY-MM-DD_HH-MM-SS expected")


def key_datetime(value: object) -> str:
    """Given a lookup key's ``datetime``, return the text it is compared with, as the stored
    ``YYYY-MM-DD HH:MM:SS`` (the real server's ``SUBSTR(datetime, 1, 19) = '<value>'``).

    The two API forms are parsed first; any other string is compared as it is, so
    ``"2020-06-20 21:33:24"`` finds its image and ``"2020-06-20T21:33:24"`` (no ``Z``),
    ``...+00:00`` or ``....000Z`` silently find nothing, as on the real server. Raise
    :class:`StoreError` for a value that is not a string (absent, ``null``, a number).
    """
    if not isinstance(value, str):
        raise StoreError(f"bad datetime {value!r}: a string expected")
    for fmt in _IN_DATETIMES:
        with contextlib.suppress(ValueError):
            return db_datetime(dt.datetime.strptime(value, fmt).replace(tzinfo=dt.UTC))
    return value


def db_datetime(when: dt.datetime) -> str:
    return when.astimezone(dt.UTC).strftime(_DB_DATETIME)


def out_datetime(value: str) -> str:
    return dt.datetime.strptime(value, _DB_DATETIME).strftime("%Y-%m-%dT%H:%M:%SZ")


def smallint_column(value: float | None, column: str) -> int | None:
    """A value as a SMALLINT column stores it: rounded half away from zero, else an error."""
    if value is None:
        return None
    rounded = int(abs(value) + 0.5) * (1 if value >= 0 else -1)
    if not -32768 <= rounded <= 32767:
        raise StoreError(f"{column}={value} is out of range for a small integer column")
    return rounded


def decimal6_column(value: float | None) -> float | None:
    return None if value is None else round(value, 6)


def float_column(value: float | None) -> float | None:
    """A value as a MariaDB ``FLOAT`` column reads back: single precision, 6 significant digits."""
    if value is None:
        return None
    single = struct.unpack("f", struct.pack("f", value))[0]
    return float(f"{single:.6g}")
