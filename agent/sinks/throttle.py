"""Metered links: a bandwidth cap shared by all uploads, and a daily data budget.

The cap is a token bucket: senders take bytes and wait (on a monotonic clock) until the
bucket has them. The budget counts bytes uploaded per UTC day in the queue's agent
state, so it holds across restarts.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from agent.errors import SyncError

if TYPE_CHECKING:
    from agent.config import Config
    from agent.queue import Queue


class TokenBucket:
    """``rate`` tokens per second, with one second of burst; :meth:`take` blocks until granted."""

    def __init__(
        self,
        rate: float,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.rate = rate
        self.capacity = self.rate
        self._tokens = self.capacity
        self._last = clock()
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()

    def take(self, n: int) -> None:
        """Block until ``n`` tokens (bytes, requests) may be spent."""
        while n > 0:
            with self._lock:
                now = self._clock()
                self._tokens = min(self.capacity, self._tokens + (now - self._last) * self.rate)
                self._last = now
                grant = min(n, int(self._tokens)) if self._tokens >= 1 else 0
                self._tokens -= grant
                wait = 0.0 if grant else (1 - self._tokens) / self.rate
            n -= grant
            if n > 0:
                self._sleep(max(wait, min(0.05, n / self.rate)))


class Bandwidth(TokenBucket):
    """A token bucket of ``kbps`` kilobits per second (tokens are bytes), one second of burst."""

    def __init__(
        self,
        kbps: float,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        super().__init__(kbps * 1000 / 8, clock, sleep)


class DailyBudget:
    """Bytes uploaded per UTC day, persisted in the queue; ``None`` limit = unlimited."""

    def __init__(
        self,
        queue: Queue,
        limit_mb: float | None,
        now: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
    ) -> None:
        self.queue = queue
        self.limit = None if limit_mb is None else int(limit_mb * 1_000_000)
        self.now = now
        self._lock = threading.Lock()

    def _today(self) -> str:
        return self.now().strftime("%Y-%m-%d")

    def used(self) -> int:
        state = self.queue.published()
        if state.get("budget_day") != self._today():
            return 0
        return int(state.get("budget_used", "0"))

    def remaining(self) -> int | None:
        return None if self.limit is None else max(0, self.limit - self.used())

    def reserve(self, n: int) -> bool:
        """Count ``n`` bytes against today's budget if they fit; return False if they do not.

        Check and count are one step (parallel uploads cannot overshoot), and bytes are
        counted before they are sent: a refused or interrupted upload used the link too.
        """
        if self.limit is None:
            return True  # no budget: nothing to count, no write per upload
        with self._lock:
            used = self.used()
            if used + n > self.limit:
                return False
            self.queue.publish(budget_day=self._today(), budget_used=str(used + n))
            return True


class BudgetExhausted(SyncError):
    """Today's data budget is spent; uploads resume tomorrow (UTC)."""


@dataclass
class Link:
    """What every sink's worker shares: one network link's bandwidth cap and daily budget."""

    bandwidth: Bandwidth | None
    budget: DailyBudget
    budget_mb: float | None

    @classmethod
    def from_config(cls, config: Config, queue: Queue) -> Link:
        """Given the config's ``[sync]`` table, return the link every sink shares."""
        kbps, mb = config.sync.bandwidth_kbps, config.sync.daily_budget_mb
        return cls(Bandwidth(kbps) if kbps else None, DailyBudget(queue, mb), mb)


class ThrottledBody:
    """A request body streamed through the bandwidth cap (16 kB at a time when capped), with a
    length, so ``requests`` sends a Content-Length (S3's presigned PUTs need it) and no chunks."""

    def __init__(self, data: bytes | memoryview, throttle: Bandwidth | None) -> None:
        self._data, self._pos, self._throttle = memoryview(data), 0, throttle

    def __len__(self) -> int:
        return len(self._data) - self._pos

    def __iter__(self) -> Iterator[bytes]:
        while chunk := self.read(65536):
            yield chunk

    def read(self, n: int = -1) -> bytes:
        left = len(self._data) - self._pos
        n = left if n < 0 else min(n, left)
        if self._throttle is not None:
            n = min(n, 16384)
            self._throttle.take(n)
        chunk = bytes(self._data[self._pos : self._pos + n])
        self._pos += n
        return chunk
