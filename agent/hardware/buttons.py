"""The hat's manual capture button and an optional status LED, through gpiozero.

:class:`ManualButton` calls its callback once per press of the button on GPIO 22 (to
ground, internal pull-up): the agent then takes a manual capture (EXIF ``b`` = 1).
Contact bounce is filtered twice: gpiozero's ``bounce_time`` (in the pin driver, where
it has one) and a check here that the button was still for ``bounce`` seconds before a
press, so a bouncing press or release never counts as a second press.

:class:`StatusLed` blinks once (0.5 s) on each capture and shows the trap's state:
``ok`` dark, ``offline`` a slow double blink every 3 s, ``error`` a fast blink. A small
player thread plays the patterns with gpiozero's ``LED.blink(on_time, off_time, n)``
(in the foreground of that thread, so a capture blink and the state pattern never fight
over the pin); a state change takes effect within a second.

Neither stops the agent: a disabled or unusable button or LED (no GPIO, pin in use) is
logged and then does nothing. ``pin_factory = "mock"`` runs anywhere.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from agent.config import ButtonConfig, LedConfig
from agent.hardware.gpio import shared_pin_factory

log = logging.getLogger(__name__)


def _factory(name: str | None, given: Any) -> Any:
    """The pin factory given (tests), else the process's shared one."""
    return shared_pin_factory(name) if given is None else given


class ManualButton:
    """Calls ``on_press()`` once per debounced press. Inert when disabled or unusable."""

    def __init__(
        self,
        config: ButtonConfig,
        on_press: Callable[[], None],
        pin_factory: Any = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self.on_press = on_press
        self.clock = clock
        self.presses = 0
        self.error: str | None = None
        self.device: Any = None
        self._last_edge: float | None = None
        self._lock = threading.Lock()
        if not config.enabled:
            return
        try:
            from gpiozero import Button

            self.device = Button(
                config.pin,
                pull_up=True,
                bounce_time=config.bounce or None,
                pin_factory=_factory(config.pin_factory, pin_factory),
            )
        except Exception as e:  # gpiozero raises a family of its own errors
            self.error = f"cannot use the manual button on GPIO {config.pin}: {e}"
            log.error("%s; manual captures only through `stickyctl capture`", self.error)
            return
        self.device.when_pressed = self._pressed
        self.device.when_released = self._released

    def _still_for(self, now: float) -> bool:
        """Record an edge at ``now``; return True if the pin was still for ``bounce`` before it."""
        still = self._last_edge is None or now - self._last_edge >= self.config.bounce
        self._last_edge = now
        return still

    def _pressed(self) -> None:
        with self._lock:
            if not self._still_for(self.clock()):
                return
            self.presses += 1
        log.info("manual button pressed: requesting a capture")
        try:
            self.on_press()
        except Exception:  # runs in gpiozero's thread: log, never kill it
            log.exception("the manual button's callback failed")

    def _released(self) -> None:
        with self._lock:
            self._still_for(self.clock())

    def close(self) -> None:
        if self.device is not None:
            with contextlib.suppress(Exception):
                self.device.close()
            self.device = None


@dataclass(frozen=True)
class Blink:
    """A burst of ``n`` blinks, then ``pause`` seconds dark."""

    on_time: float
    off_time: float
    n: int
    pause: float = 0.0


#: The state patterns, repeated while the state holds (``None``: dark).
PATTERNS: dict[str, Blink | None] = {
    "ok": None,
    "offline": Blink(0.15, 0.25, 2, pause=2.6),  # slow double blink, every 3 s
    "error": Blink(0.1, 0.1, 5),  # fast blink, 5 Hz
}
#: Bursts kept in ``StatusLed.played`` (the newest; older ones are only counted).
PLAYED_KEPT = 100
#: One long blink per capture, then a gap before the state pattern resumes.
CAPTURED = Blink(0.5, 0.0, 1, pause=0.5)


class StatusLed:
    """A status LED: ``captured()``, ``set_state("ok" | "offline" | "error")``, ``close()``.

    ``timescale`` multiplies every time (tests run the patterns fast).
    """

    def __init__(self, config: LedConfig, pin_factory: Any = None, timescale: float = 1.0) -> None:
        self.config = config
        self.timescale = timescale
        self.state = "ok"
        self.error: str | None = None
        self.device: Any = None
        #: Names of the last bursts played ("captured", "offline", "error"), newest last;
        #: bounded (an error pattern plays ~72,000 bursts a day). ``bursts`` counts them all.
        self.played: collections.deque[str] = collections.deque(maxlen=PLAYED_KEPT)
        self.bursts = 0
        self._captures = 0
        self._closing = False
        self._wake = threading.Event()
        self._changed = threading.Condition()
        self._thread: threading.Thread | None = None
        if not config.enabled:
            return
        try:
            from gpiozero import LED

            self.device = LED(
                config.pin,
                active_high=config.active_high,
                initial_value=False,
                pin_factory=_factory(config.pin_factory, pin_factory),
            )
        except Exception as e:
            self.error = f"cannot use the status LED on GPIO {config.pin}: {e}"
            log.error("%s; running without it", self.error)
            return
        self._thread = threading.Thread(target=self._run, name="status-led", daemon=True)
        self._thread.start()

    def captured(self) -> None:
        """Blink once (queued behind a burst in progress)."""
        with self._changed:
            self._captures += 1
        self._wake.set()

    def set_state(self, state: str) -> None:
        """Show ``ok`` (dark), ``offline`` (slow double blink) or ``error`` (fast blink)."""
        if state not in PATTERNS:
            raise ValueError(f"unknown LED state {state!r}; expected one of {sorted(PATTERNS)}")
        with self._changed:
            if state == self.state:
                return
            self.state = state
        self._wake.set()

    def wait_played(self, count: int, timeout: float = 10.0) -> bool:
        """Wait until ``count`` bursts have been played; return False on timeout."""
        with self._changed:
            return self._changed.wait_for(lambda: self.bursts >= count, timeout)

    def wait_for(self, predicate: Callable[[list[str]], bool], timeout: float = 10.0) -> bool:
        """Wait until ``predicate`` holds for the last bursts played; return False on timeout."""
        with self._changed:
            return self._changed.wait_for(lambda: predicate(list(self.played)), timeout)

    def _next(self) -> tuple[str, Blink | None] | None:
        with self._changed:
            self._wake.clear()
            if self._captures:
                self._captures -= 1
                return "captured", CAPTURED
            if self._closing:
                return None
            return self.state, PATTERNS[self.state]

    def _run(self) -> None:
        while (step := self._next()) is not None:
            name, blink = step
            if blink is None:
                self.device.off()
                self._wake.wait()
                continue
            try:
                self.play(blink)
            except Exception as e:  # a broken LED must not take the thread's loop down silently
                log.error("status LED on GPIO %d failed: %s", self.config.pin, e)
                return
            with self._changed:
                self.played.append(name)
                self.bursts += 1
                self._changed.notify_all()
            if blink.pause:
                self._wake.wait(blink.pause * self.timescale)

    def play(self, blink: Blink) -> None:
        """Play one burst now, in this thread (the LED is dark when it returns)."""
        s = self.timescale
        self.device.blink(on_time=blink.on_time * s, off_time=blink.off_time * s, n=blink.n, background=False)

    def close(self) -> None:
        """Finish the blinks already asked for, switch the LED off and release it. Idempotent."""
        with self._changed:
            self._closing = True
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
        if self.device is not None:
            with contextlib.suppress(Exception):
                self.device.off()
                self.device.close()
            self.device = None
