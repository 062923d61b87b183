"""A worker thread of the agent: woken by events, looping until stopped, never delaying captures.

Subclasses implement :meth:`BackgroundWorker.cycle`, which does one round of work and
returns how long to wait before the next (0: go on at once). :meth:`wake` cuts a wait short
(a new capture, ``stickyctl sync``). The threads are daemons: a stop that times out
abandons work in progress, which is safe because the queue only moves on evidence.
"""

from __future__ import annotations

import logging
import threading

log = logging.getLogger(__name__)


class BackgroundWorker:
    """A daemon thread running :meth:`cycle` until :meth:`stop`."""

    thread_name = "worker"

    def __init__(self) -> None:
        self._wake = threading.Event()
        self._stopping = False
        self._thread: threading.Thread | None = None

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

    def _run(self) -> None:
        self._before_loop()
        while not self._stopping:
            delay = self.cycle()
            if delay > 0:
                self._wake.wait(delay)
            self._wake.clear()
