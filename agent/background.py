"""A worker thread of the agent: woken by events, looping until stopped, never delaying captures.

Subclasses implement :meth:`BackgroundWorker.cycle`, which does one round of work and
returns how long to wait before the next (0: go on at once). :meth:`wake` cuts a wait short
(a new capture, ``stickyctl sync``). The threads are daemons: a stop that times out
abandons work in progress, which is safe because the queue only moves on evidence.

No exception kills the thread: one that :meth:`cycle` did not handle is logged as one line
(the traceback only at debug level), and the next cycle waits longer after each such failure
in a row (5 s, 10 s, 20 s ... up to 15 min), so a bug met on every cycle neither floods the
log nor spins.
"""

from __future__ import annotations

import logging
import threading

from agent.errors import describe_unexpected

log = logging.getLogger(__name__)


class BackgroundWorker:
    """A daemon thread running :meth:`cycle` until :meth:`stop`."""

    thread_name = "worker"
    #: The wait after the first unexpected failure; it doubles with each one in a row.
    crash_backoff_base = 5.0
    crash_backoff_max = 900.0

    def __init__(self) -> None:
        self._wake = threading.Event()
        self._stopping = False
        self._thread: threading.Thread | None = None
        #: Unexpected failures in a row (0 after a cycle that returned).
        self.crashes = 0
        #: The last unexpected failure, as one line (None after a cycle that returned).
        self.last_crash: str | None = None

    def cycle(self) -> float:
        """Do one round of work; return the seconds to wait before the next (0: at once)."""
        raise NotImplementedError

    def _before_loop(self) -> None:
        """Run once in the thread before the first cycle."""

    def start(self) -> None:
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name=self.thread_name, daemon=True)
        self._thread.start()

    def wake(self) -> None:
        """Cut the current wait short."""
        self._wake.set()

    def stop(self, timeout: float = 5.0) -> bool:
        """Ask the thread to stop and wait up to ``timeout``; return False if it is still busy."""
        self._stopping = True
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                log.warning(
                    "the %s worker is still busy after %gs; not waiting longer", self.thread_name, timeout
                )
                return False
        return True

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def run_cycle(self) -> float:
        """Run one :meth:`cycle` and return its delay; if it raised, log one line and return
        the backoff instead (never raise, except for KeyboardInterrupt and SystemExit)."""
        try:
            delay = self.cycle()
        except Exception as e:
            self.crashes += 1
            self.last_crash = describe_unexpected(e)
            delay = float(min(self.crash_backoff_max, self.crash_backoff_base * 2.0 ** (self.crashes - 1)))
            log.error(
                "the %s worker failed unexpectedly (%s); trying again in %gs",
                self.thread_name,
                self.last_crash,
                delay,
            )
            log.debug("the %s worker's failure", self.thread_name, exc_info=True)
            return delay
        self.crashes, self.last_crash = 0, None
        return delay

    def _run(self) -> None:
        try:
            self._before_loop()
        except Exception as e:
            log.error(
                "the %s worker could not prepare (%s); going on", self.thread_name, describe_unexpected(e)
            )
            log.debug("the %s worker's failure", self.thread_name, exc_info=True)
        while not self._stopping:
            delay = self.run_cycle()
            if delay > 0:
                self._wake.wait(delay)
            self._wake.clear()
