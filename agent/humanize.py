"""How times, durations and sizes read in what a technician sees (``status``, ``doctor``).

One time format everywhere (``2026-06-01 12:00:00 UTC``, the file names' clock) and decimal
units (1 MB = 1,000,000 bytes, like ``retention.min_free_disk_mb`` and disk makers).
"""

from __future__ import annotations

import datetime as dt
import textwrap

_UNITS = ("B", "kB", "MB", "GB", "TB")
#: Every line a technician reads fits a phone's terminal or a narrow SSH window.
MAX_LINE = 99


def size(n: float) -> str:
    """Given a number of bytes, return it in decimal units: ``512 B``, ``1.5 kB``, ``31.2 GB``."""
    for unit in _UNITS:
        if abs(n) < 1000 or unit == _UNITS[-1]:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    raise AssertionError("unreachable")


def when(t: dt.datetime | str | None) -> str:
    """Given an aware datetime (or its ISO string), return ``YYYY-MM-DD HH:MM:SS UTC``; ``never``
    for None. A naive datetime is taken as UTC."""
    if t is None or t == "":
        return "never"
    if isinstance(t, str):
        t = dt.datetime.fromisoformat(t)
    if t.tzinfo is None:
        t = t.replace(tzinfo=dt.UTC)
    return f"{t.astimezone(dt.UTC):%Y-%m-%d %H:%M:%S} UTC"


def duration(seconds: float) -> str:
    """Given seconds, return ``45 s``, ``20 min``, ``1 h 30 min`` or ``3.2 days``."""
    seconds = abs(seconds)
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{seconds / 60:.0f} min"
    if seconds < 48 * 3600:
        hours, minutes = divmod(round(seconds / 60), 60)
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    return f"{seconds / 86400:.1f} days"


def ago(t: dt.datetime | str | None, now: dt.datetime) -> str:
    """Given a time and now, return ``<when> (5 min ago)`` or ``<when> (in 30 s)``."""
    if t is None or t == "":
        return "never"
    if isinstance(t, str):
        t = dt.datetime.fromisoformat(t)
    secs = (now - t).total_seconds()
    rel = f"in {duration(secs)}" if secs < 0 else f"{duration(secs)} ago"
    return f"{when(t)} ({rel})"


def fit(line: str, indent: int) -> list[str]:
    """Given a line, return it as lines of at most MAX_LINE characters, the continuations indented
    by ``indent`` spaces (under the value, not the label)."""
    if len(line) <= MAX_LINE:
        return [line]
    return textwrap.wrap(line, width=MAX_LINE, subsequent_indent=" " * indent, break_on_hyphens=False)
