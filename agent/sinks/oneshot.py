"""``stickyctl sync`` without a running agent: one full sync here, with progress and a verdict.

The sync runs in a daemon thread (the same :class:`~agent.sinks.worker.SyncWorker` as the agent,
cycle after cycle until there is nothing more to do or it must wait); the main thread draws
progress on a terminal (``n of N images, MB, rate, ETA``) and stays responsive to Ctrl-C. At the
end :func:`verdict` turns the worker's last error into one line naming the real cause: missing
or refused credentials, a 403, what the server answered, or that it could not be reached.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TextIO

from agent.config import Config
from agent.errors import (
    ConfigError,
    SinkAuthError,
    SinkForbidden,
    SinkProtocolError,
    SinkRejected,
    SinkUnreachable,
    StickyAgentError,
    describe_unexpected,
)
from agent.sinks.base import SinkSettings
from agent.sinks.worker import SyncWorker

#: How often the progress line is redrawn, and how long a Ctrl-C waits for the sync thread.
REDRAW_S = 0.5
STOP_GRACE_S = 1.5


@dataclass
class Progress:
    """Images done and bytes sent so far, against the backlog at the start (thread-safe)."""

    total_images: int
    total_bytes: int
    started: float = field(default_factory=time.monotonic)
    images: int = 0
    sent: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, images: int, sent: int) -> None:
        with self._lock:
            self.images += images
            self.sent += sent

    def line(self, now: float | None = None) -> str:
        """Return ``n of N images, x of y MB, r MB/s, ETA m:ss`` (under 80 characters)."""
        with self._lock:
            images, sent = self.images, self.sent
        elapsed = max(1e-6, (now if now is not None else time.monotonic()) - self.started)
        rate = sent / elapsed
        left = max(0, self.total_bytes - sent)
        eta = f"ETA {dt.timedelta(seconds=round(left / rate))}" if rate > 0 and left else "ETA -"
        return (
            f"{min(images, self.total_images)} of {self.total_images} images, "
            f"{sent / 1e6:.1f} of {self.total_bytes / 1e6:.1f} MB, {rate / 1e6:.2f} MB/s, {eta}"
        )


class UnexpectedSyncError(StickyAgentError):
    """The sync stopped on an exception no one planned for (a bug): reported in one line."""


@dataclass
class Outcome:
    """What one ``stickyctl sync`` did."""

    progress: Progress
    waiting: int
    waiting_bytes: int
    annotations: int
    error: StickyAgentError | None
    refusing: bool
    interrupted: bool = False
    finished: bool = True


def run(
    config: Config,
    sink: SinkSettings,
    *,
    environ: Mapping[str, str] | None = None,
    out: TextIO | None = None,
    tty: bool = False,
    quiet_logs: bool = True,
) -> Outcome:
    """Given a config, one of its sinks and no agent running, sync to it until done or stuck.

    Progress goes to ``out`` when ``tty``. On Ctrl-C, return within :data:`STOP_GRACE_S` with
    ``interrupted`` set (``finished`` False if the sync thread is still in a request: the
    caller must then exit without waiting for it). Raise StickyAgentError if the queue cannot
    be opened.
    """
    from agent.queue import Queue
    from agent.queue import deliveries as dq
    from agent.sinks.base import open_sink
    from agent.sinks.credentials import with_unit_credentials

    settings = with_unit_credentials(sink, environ)
    queue = Queue(config.storage.queue_path, create=False)
    dq.enqueue(queue, settings.name)
    n, size = dq.waiting(queue, settings.name)
    progress = Progress(n, size)
    worker = SyncWorker(config, queue, lambda: open_sink(settings, environ), settings=settings)
    worker.on_progress = progress.add
    annotations = [0]
    done = threading.Event()
    worker_log = logging.getLogger("agent.sinks.worker")
    level = worker_log.level
    if quiet_logs:  # the verdict names the cause; only errors about single images are logged
        worker_log.setLevel(logging.ERROR)

    unexpected: list[BaseException] = []

    def loop() -> None:
        try:
            while not worker.interrupted:
                delay = worker.cycle()
                if worker.last_stats is not None:
                    annotations[0] += worker.last_stats.annotations_sent
                    worker.last_stats = None
                if delay > 0:
                    break
        except Exception as e:  # a bug or a surprise: one line in the verdict, not a traceback
            unexpected.append(e)
        finally:
            done.set()

    thread = threading.Thread(target=loop, name="sync-once", daemon=True)
    interrupted = False
    try:
        thread.start()
        while not done.wait(REDRAW_S):
            if tty and out is not None:
                out.write("\r" + progress.line() + "\033[K")
                out.flush()
    except KeyboardInterrupt:
        interrupted = True
        worker.stop(0)  # no new upload starts; an answer being read ends now, a stalled one is abandoned
        done.wait(STOP_GRACE_S)
    finally:
        worker_log.setLevel(level)
        if tty and out is not None:
            out.write("\r" + progress.line() + "\033[K\n")
            out.flush()
    finished = done.is_set()
    error = worker.last_error
    if unexpected:
        error = UnexpectedSyncError(f"sync failed unexpectedly: {describe_unexpected(unexpected[0])}")
    waiting, waiting_bytes = (n - progress.images, size - progress.sent)
    if finished:
        worker.stop(0)
        waiting, waiting_bytes = dq.waiting(queue, settings.name)
        queue.close()
    return Outcome(
        progress,
        waiting,
        waiting_bytes,
        annotations[0],
        error,
        worker.refusing,
        interrupted,
        finished,
    )


def verdict(outcome: Outcome, sink: SinkSettings) -> str:
    """Given an outcome and its sink, return the final line. Raise StickyAgentError naming the
    real cause if the sync stopped on an error."""
    url = sink.address
    who = "the API" if sink.type == "stickypi" else f"{sink.name} ({sink.type})"
    named = f"{sink.name}: " if not sink._legacy else ""
    p = outcome.progress
    counts = (
        f"{p.images} of {p.total_images} images synced ({p.sent / 1e6:.1f} MB sent), "
        f"{outcome.annotations} annotation(s); {outcome.waiting} image(s) "
        f"({outcome.waiting_bytes / 1e6:.1f} MB) still waiting"
    )
    e = outcome.error
    kept = f"{counts}; the queue is kept"
    if e is None and outcome.refusing:
        raise StickyAgentError(
            f"{who} at {url} refuses every upload: a server outage? {kept}; the agent retries by itself"
        )
    if e is None:
        return f"synced with {url}: {counts}"
    if isinstance(e, UnexpectedSyncError):
        raise e
    if isinstance(e, SinkProtocolError):
        raise StickyAgentError(
            f"{who} at {url} answered, but not as the {sink.type} platform does: {e}; {kept}"
        )
    if isinstance(e, SinkUnreachable):
        raise StickyAgentError(f"{who} at {url} is unreachable: {e}; {kept}")
    if isinstance(e, SinkAuthError):
        raise StickyAgentError(f"{named}{e}: fix the credentials (stickyctl doctor shows which file); {kept}")
    if isinstance(e, SinkForbidden):
        raise StickyAgentError(f"{named}{e}; {kept}")
    if isinstance(e, SinkRejected):
        raise StickyAgentError(f"{who} at {url} answered with an error: {e}; {kept}")
    if isinstance(e, ConfigError):  # credentials missing, malformed, readable by others
        raise StickyAgentError(f"{named}{e}; {kept}")
    raise StickyAgentError(f"{named}sync stopped: {e}; {kept}")
