"""Can the clock be trusted? An image's name is its capture second, so a wrong clock is a wrong image.

A Pi without network or RTC boots in 1970 (or 2000 with an unset RTC). The
Sticky Pi server rejects anything before 2019-11-01, and an image written under
a wrong date can never be fixed afterwards, so :func:`check_capture_time`
refuses such times and the capture is recorded as a clock problem instead.
The time of the last NTP synchronisation (EXIF ``l``) comes from
systemd-timesyncd's marker file.

:func:`clock_state` says where the time comes from, for ``stickyctl status``: NTP
(timesyncd's marker, or ``timedatectl``), a real-time clock that agrees with the
system clock (DS1307/DS3231 on I2C, see hardware/rtc.md), or nothing.
"""

from __future__ import annotations

import datetime as dt
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from agent.capture.naming import EARLIEST_VALID_TIME
from agent.errors import ClockError

TIMESYNC_MARKER = Path("/run/systemd/timesync/synchronized")
RTC_DIR = Path("/sys/class/rtc/rtc0")
#: How far the RTC may be from the system clock and still count as its source.
RTC_TOLERANCE_S = 10.0
TIMEDATECTL_TIMEOUT_S = 2.0


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


@dataclass(frozen=True)
class ClockState:
    """Where the system time comes from, and whether a capture name can rely on it."""

    source: Literal["ntp", "rtc", "none"]
    synchronised: bool  # NTP synchronised
    last_sync: float | None  # unix time of the last NTP synchronisation
    rtc_device: str | None  # the RTC's driver and bus address, e.g. "rtc-ds1307 1-0068"
    trusted: bool
    detail: str


def timedatectl_synchronised(timeout: float = TIMEDATECTL_TIMEOUT_S) -> bool | None:
    """Return ``timedatectl``'s NTPSynchronized, or None if it is absent, slow or fails."""
    exe = shutil.which("timedatectl")
    if exe is None:
        return None
    try:
        out = subprocess.run(
            [exe, "show", "-p", "NTPSynchronized", "--value"],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    value = out.stdout.strip()
    if out.returncode != 0 or value not in ("yes", "no"):
        return None
    return value == "yes"


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except (OSError, UnicodeDecodeError):  # absent, or EINVAL from an RTC that was never set
        return None


def _utc(t: float) -> str:
    return f"{dt.datetime.fromtimestamp(t, dt.UTC):%Y-%m-%d %H:%M:%S} UTC"


def clock_state(
    now: dt.datetime | None = None,
    marker: Path = TIMESYNC_MARKER,
    rtc_dir: Path = RTC_DIR,
    timedatectl: Callable[[], bool | None] | None = timedatectl_synchronised,
) -> ClockState:
    """Return where the system clock's time comes from and whether it can be trusted.

    NTP: timesyncd's marker file exists (its mtime is the last synchronisation), or
    ``timedatectl`` says NTPSynchronized (chrony, ntpd). RTC: ``rtc_dir/name`` exists and
    the RTC set the system clock at boot (``hctosys`` = 1) or reads the same time
    (``since_epoch``, within 10 s). A time before 2019-11-01 is never trusted.
    """
    now = now or dt.datetime.now(dt.UTC)
    now_ts = now.timestamp()
    last_sync = last_sync_time(marker)
    synchronised = last_sync is not None
    if not synchronised and timedatectl is not None:
        synchronised = bool(timedatectl())
    rtc_device = _read(rtc_dir / "name")
    plausible = now >= EARLIEST_VALID_TIME
    if synchronised:
        when = f", last sync {_utc(last_sync)}" if last_sync is not None else ""
        rtc = f"; RTC {rtc_device} present" if rtc_device else ""
        detail = f"NTP synchronised{when}{rtc}"
        return ClockState("ntp", True, last_sync, rtc_device, plausible, _implausible(detail, plausible))
    if rtc_device is None:
        detail = "no NTP synchronisation and no RTC: the time may be wrong (get network, or fit an RTC)"
        return ClockState("none", False, None, None, False, detail)
    hctosys = _read(rtc_dir / "hctosys") == "1"
    since_epoch = _read(rtc_dir / "since_epoch")
    rtc_time = float(since_epoch) if since_epoch and since_epoch.isdigit() else None
    rtc_valid = rtc_time is not None and rtc_time >= EARLIEST_VALID_TIME.timestamp()
    agrees = rtc_valid and rtc_time is not None and abs(rtc_time - now_ts) <= RTC_TOLERANCE_S
    if rtc_time is not None and not rtc_valid:
        detail = (
            f"RTC {rtc_device} reads {_utc(rtc_time)}: it was never set. Once the clock is right "
            "(NTP), run `sudo hwclock -w` (hardware/rtc.md)"
        )
        return ClockState("none", False, None, rtc_device, False, detail)
    if agrees or hctosys:
        how = "set the system clock at boot" if hctosys else "agrees with the system clock"
        detail = f"no NTP synchronisation; RTC {rtc_device} {how}"
        if rtc_time is not None and not agrees:
            detail += f" (the two now differ by {rtc_time - now_ts:+.0f} s: drift)"
        return ClockState("rtc", False, None, rtc_device, plausible, _implausible(detail, plausible))
    if rtc_time is None:
        detail = f"no NTP synchronisation; RTC {rtc_device} is unreadable and did not set the clock at boot"
    else:
        detail = (
            f"no NTP synchronisation; RTC {rtc_device} reads {_utc(rtc_time)}, "
            f"{rtc_time - now_ts:+.0f} s from the system clock: the system clock was not set from it"
        )
    return ClockState("none", False, None, rtc_device, False, detail)


def _implausible(detail: str, plausible: bool) -> str:
    return detail if plausible else detail + ", yet the time is before 2019-11-01: not trusted"
