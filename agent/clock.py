"""Can the clock be trusted? An image's name is its capture second, so a wrong clock is a wrong image.

A Pi without network or RTC boots in 1970 (or 2000 with an unset RTC). The
Sticky Pi server rejects anything before 2019-11-01, and an image written under
a wrong date can never be fixed afterwards, so :func:`check_capture_time`
refuses such times and the capture is recorded as a clock problem instead.
The time of the last NTP synchronisation (EXIF ``l``) comes from
systemd-timesyncd's marker file.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from agent.errors import ClockError
from agent.naming import EARLIEST_VALID_TIME

TIMESYNC_MARKER = Path("/run/systemd/timesync/synchronized")


def check_capture_time(now: dt.datetime) -> dt.datetime:
    """Given the current time (aware), return it in UTC truncated to the second.

    Raise ClockError if it is before 2019-11-01, the earliest date the server accepts.
    """
    utc = now.astimezone(dt.UTC).replace(microsecond=0)
    if utc < EARLIEST_VALID_TIME:
        raise ClockError(
            f"the clock reads {utc:%Y-%m-%d %H:%M:%S} UTC, before 2019-11-01: not a real "
            "capture time. No image was written. Give the trap network (NTP) or a set RTC "
            "(see hardware/), and check `timedatectl`"
        )
    return utc


def last_sync_time(marker: Path = TIMESYNC_MARKER) -> float | None:
    """Return the unix time of the last NTP synchronisation, or None if unknown.

    systemd-timesyncd touches its marker file at every synchronisation.
    """
    try:
        return marker.stat().st_mtime
    except OSError:
        return None
