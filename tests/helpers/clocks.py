"""Clocks for tests: capture time that steps one second per reading (no two captures share a name)."""

from __future__ import annotations

import datetime as dt
import threading


class SteppingClock:
    """Capture time: 2026-01-01 12:00:00 UTC, one second later at every reading."""

    def __init__(self) -> None:
        self.t = dt.datetime(2026, 1, 1, 12, 0, 0, tzinfo=dt.UTC)
        self.lock = threading.Lock()

    def __call__(self) -> dt.datetime:
        with self.lock:
            self.t += dt.timedelta(seconds=1)
            return self.t
