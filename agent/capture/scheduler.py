"""When captures happen: an APScheduler 3 job with the trap's rules.

- an interval (``capture.interval``) or a cron expression (``capture.cron``),
  optionally limited to a daily window (``capture.window``, e.g. night only);
- one capture at a time (``max_instances=1``);
- missed slots (a suspend, a clock step forward) run once, not N times
  (``coalesce=True``, no misfire limit: a late capture beats no capture);
- a clock step *backwards* would leave the next slot far in the future: the
  agent calls :meth:`CaptureScheduler.check_clock` periodically to pull it back.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from typing import Any

from apscheduler.events import EVENT_JOB_ERROR, EVENT_JOB_EXECUTED, EVENT_JOB_MISSED, JobEvent
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from agent.config import CaptureConfig, WindowConfig

log = logging.getLogger(__name__)

JOB_ID = "capture"
#: Interval slots are counted from the epoch, so they sit on the clock (every 20 min at
#: :00, :20, :40) whatever the start time, and survive any clock step.
EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
#: How many window jumps to try before deciding a trigger never fires in the window.
_MAX_WINDOW_JUMPS = 400


class WindowedTrigger(BaseTrigger):  # type: ignore[misc]
    """A trigger that fires only when ``base`` fires inside a daily local-time window."""

    def __init__(self, base: BaseTrigger, window: WindowConfig) -> None:
        self.base = base
        self.window = window

    def _next_window_start(self, after: dt.datetime) -> dt.datetime:
        local = after.astimezone()
        start = local.replace(
            hour=self.window.start.hour,
            minute=self.window.start.minute,
            second=self.window.start.second,
            microsecond=0,
        )
        if start <= local:
            start += dt.timedelta(days=1)
        return start

    def next_fire_in_window(
        self, previous_fire_time: dt.datetime | None, now: dt.datetime
    ) -> tuple[bool, dt.datetime | None]:
        """Return (found, the next fire time inside the window); found is False if it never is."""
        t: dt.datetime | None = self.base.get_next_fire_time(previous_fire_time, now)
        for _ in range(_MAX_WINDOW_JUMPS):
            if t is None or self.window.contains(t.astimezone().time()):
                return True, t
            t = self.base.get_next_fire_time(None, self._next_window_start(t))
        return False, None

    def get_next_fire_time(
        self, previous_fire_time: dt.datetime | None, now: dt.datetime
    ) -> dt.datetime | None:
        found, t = self.next_fire_in_window(previous_fire_time, now)
        if not found:
            log.error("the capture schedule never fires inside the window %s", self.window)
        return t

    def __str__(self) -> str:
        return f"{self.base} within {self.window.start}-{self.window.end}"


def build_trigger(config: CaptureConfig) -> BaseTrigger:
    """Given the ``[capture]`` config, return the APScheduler trigger for captures."""
    return make_trigger(config.interval, config.cron, config.window)


def make_trigger(interval: float, cron: str | None, window: WindowConfig | None) -> BaseTrigger:
    """Given an interval (s), or a cron expression instead, and an optional window, return the trigger."""
    base: BaseTrigger
    if cron:
        base = CronTrigger.from_crontab(cron)
    else:
        base = IntervalTrigger(seconds=interval, start_date=EPOCH, timezone=dt.UTC)
    return WindowedTrigger(base, window) if window else base


class CaptureScheduler:
    """Runs ``job`` on the capture schedule in a background thread."""

    def __init__(
        self,
        config: CaptureConfig,
        job: Callable[[], Any],
        on_run: Callable[[], None] | None = None,
    ) -> None:
        """``on_run`` is called after each run (or miss), from a scheduler thread. It must not
        call back into the scheduler: APScheduler holds its job-store lock while it shuts down
        and waits for the run, so a callback that takes that lock would deadlock the stop."""
        self.trigger = build_trigger(config)
        self._on_run = on_run
        self._scheduler = BackgroundScheduler(timezone=dt.UTC)
        self._scheduler.add_job(
            job,
            self.trigger,
            id=JOB_ID,
            name="capture",
            max_instances=1,
            coalesce=True,
            misfire_grace_time=None,
        )
        self._scheduler.add_listener(self._after_run, EVENT_JOB_EXECUTED | EVENT_JOB_ERROR | EVENT_JOB_MISSED)

    def _after_run(self, event: JobEvent) -> None:
        if event.code == EVENT_JOB_ERROR:
            log.error("capture job raised: %s", event.exception)
        if self._on_run is not None:
            self._on_run()

    def start(self) -> None:
        self._scheduler.start()

    def shutdown(self, wait: bool = True) -> None:
        """Stop scheduling; with ``wait`` the capture in progress finishes first."""
        if self._scheduler.running:
            self._scheduler.shutdown(wait=wait)

    @property
    def running(self) -> bool:
        return bool(self._scheduler.running)

    @property
    def next_run_time(self) -> dt.datetime | None:
        job = self._scheduler.get_job(JOB_ID)
        return None if job is None else job.next_run_time

    def check_clock(self, now: dt.datetime | None = None) -> bool:
        """If the next slot is further away than the schedule allows (the clock stepped back),
        reschedule from now. Return True if it did."""
        now = now or dt.datetime.now(dt.UTC)
        nxt = self.next_run_time
        if nxt is None:
            return False
        fresh = self.trigger.get_next_fire_time(None, now)
        if fresh is None or nxt <= fresh:
            return False
        log.warning(
            "next capture was at %s but the schedule says %s: the clock stepped back; rescheduling",
            nxt.isoformat(),
            fresh.isoformat(),
        )
        self._scheduler.modify_job(JOB_ID, next_run_time=fresh)
        self._scheduler.wakeup()
        return True
