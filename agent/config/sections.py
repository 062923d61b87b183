"""Configuration of the sections that are no seam: device, storage, capture, location, sync,
retention, log."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Literal

from pydantic import (
    Field,
    ValidationInfo,
    field_validator,
)

from agent.capture.naming import DEVICE_ID_RE
from agent.settings import MAX_INTERVAL_S, MIN_INTERVAL_S, Duration, _parse_clock_time, _Section


class DeviceConfig(_Section):
    #: 8 lower-case hex digits; default: the last 8 hex digits of the CPU serial.
    id: str | None = None

    @field_validator("id")
    @classmethod
    def _check_id(cls, v: str | None) -> str | None:
        if v is not None and not DEVICE_ID_RE.match(v):
            raise ValueError(f'must be 8 lower-case hex digits like "5c173ff2", got "{v}"')
        return v


class StorageConfig(_Section):
    data_dir: Path = Path("/var/lib/sticky-agent/images")
    #: SQLite queue file; default ``<data_dir>/queue.sqlite``.
    queue: Path | None = None
    #: How many capture attempts the log table keeps (oldest pruned).
    keep_capture_log: int = Field(default=10_000, ge=100, le=10_000_000)

    @property
    def queue_path(self) -> Path:
        return self.queue if self.queue is not None else self.data_dir / "queue.sqlite"


class WindowConfig(_Section):
    """A daily time window (local time); ``start > end`` spans midnight (e.g. night only)."""

    start: dt.time
    end: dt.time

    @field_validator("start", "end", mode="before")
    @classmethod
    def _time(cls, v: object) -> dt.time:
        return _parse_clock_time(v)

    def contains(self, t: dt.time) -> bool:
        if self.start <= self.end:
            return self.start <= t < self.end
        return t >= self.start or t < self.end


class CaptureConfig(_Section):
    #: Time between captures (``"20m"``); at least 10 s.
    interval: Duration = 1200.0
    #: Optional cron expression (5 fields, local time) used instead of ``interval``.
    cron: str | None = None
    #: Optional daily window outside which scheduled captures are skipped.
    window: WindowConfig | None = None
    jpeg_quality: int = Field(default=90, ge=50, le=100)
    #: How long a capture may wait for another capture's lock.
    lock_timeout: Duration = Field(default=60.0, ge=1, le=3600)

    @field_validator("interval")
    @classmethod
    def _min_interval(cls, v: float) -> float:
        if v < MIN_INTERVAL_S:
            raise ValueError(f'must be a duration >= {MIN_INTERVAL_S}s, got "{v:g}s"')
        if v > MAX_INTERVAL_S:
            raise ValueError(f'must be at most 24h (a trap captures at least once a day), got "{v:g}s"')
        return v

    @field_validator("cron")
    @classmethod
    def _cron(cls, v: str | None) -> str | None:
        if v is None:
            return v
        from apscheduler.triggers.cron import CronTrigger

        try:
            CronTrigger.from_crontab(v)
        except ValueError as e:
            raise ValueError(f'not a 5-field cron expression ("*/20 * * * *"): {e}') from e
        if v.split()[2:] != ["*", "*", "*"]:
            raise ValueError(
                f'must fire every day: day of month, month and day of week must be "*", got "{v}"'
            )
        return v

    @field_validator("window")
    @classmethod
    def _window_fires(cls, v: WindowConfig | None, info: ValidationInfo) -> WindowConfig | None:
        if v is None or "interval" not in info.data or "cron" not in info.data:
            return v  # the schedule itself is invalid: already reported
        from agent.capture.scheduler import WindowedTrigger, make_trigger

        trigger = make_trigger(info.data["interval"], info.data["cron"], v)
        assert isinstance(trigger, WindowedTrigger)
        start = dt.datetime.now(dt.UTC).replace(microsecond=0)
        for day in range(8):
            t = start + dt.timedelta(days=day)
            _, nxt = trigger.next_fire_in_window(None, t)
            if nxt is None or nxt - t > dt.timedelta(days=1):
                raise ValueError(
                    f"the schedule never fires between {v.start:%H:%M} and {v.end:%H:%M} on some days: "
                    "widen the window or capture more often"
                )
        return v


class LocationConfig(_Section):
    lat: float = Field(ge=-90, le=90)
    lng: float = Field(ge=-180, le=180)
    alt: float = Field(default=0.0, ge=-500, le=10_000)


class SyncConfig(_Section):
    """``[sync]``: what every sink shares, one link: the bandwidth cap and the daily budget.

    (Before several sinks, ``[sync]`` also held the Sticky Pi API's ``url``, ``credentials``...:
    such a table is still read, as a ``[[sink]]`` named ``stickypi``; see :mod:`agent.config`.)
    """

    #: Optional cap on upload speed, kilobits per second (metered links), all sinks together.
    bandwidth_kbps: float | None = Field(default=None, ge=1, le=10_000_000)
    #: Optional cap on uploaded megabytes per UTC day, all sinks together; holds across restarts.
    daily_budget_mb: float | None = Field(default=None, gt=0, le=10_000_000)


class RetentionConfig(_Section):
    """``[retention]``: when originals the server holds (same md5, verified) may be deleted."""

    keep_days: float | None = Field(default=None, ge=0, le=36_500)
    max_data_gb: float | None = Field(default=None, gt=0, le=1_000_000)
    #: Keep at least this much disk free; below it captures stop rather than write broken files.
    min_free_disk_mb: float = Field(default=200.0, ge=0, le=1e12)
    #: Delete originals the server does NOT hold when the disk is full. Off: never.
    delete_unsynced: bool = False


class LogConfig(_Section):
    level: Literal["debug", "info", "warning", "error"] = "info"
