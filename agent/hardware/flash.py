"""The flash seam: light the card for the exposure, and always switch it off again.

Backends, chosen by ``[flash] type`` or ``$STICKY_AGENT_FLASH``, each a settings class (a
:class:`FlashSettings`) registered with its factory ``(settings, pin_factory=None)``
(:mod:`agent.registry`):

- ``none``: no flash (daylight, or a flash wired to the camera).
- ``gpio``: a gpiozero ``DigitalOutputDevice`` on a BCM pin (GPIO 23 on the Sticky
  Pi hat), on the process's one shared pin factory (:mod:`agent.hardware.gpio`): gpiozero's
  choice (``$GPIOZERO_PIN_FACTORY``, lgpio on a Pi 5) unless ``pin_factory`` is set;
  ``mock`` runs anywhere and records every pin state with its time
  (``MockPin.assert_states_and_times``).
- ``memory``: no hardware; records every switch with its time, like gpiozero's ``MockPin``
  (:class:`RecordingFlash`).

Every backend passes the same contract tests (``tests/helpers/flash_contract.py``).

Use :meth:`Flash.lit` around the exposure: the flash is off when it returns,
whether the frame came or the camera raised. A capture hands the camera an
:class:`Exposure` (``exposure.lit``): the camera lights it only around the frames that
make the picture, the exposure times how long the flash was on, and :meth:`Exposure.end`
makes sure a camera thread abandoned mid-exposure can neither leave it on nor light it again.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, Literal, Protocol

from pydantic import Field

from agent import registry
from agent.errors import FlashError
from agent.hardware.gpio import shared_pin_factory
from agent.registry import register
from agent.settings import Duration, PinFactoryName, _Section

if TYPE_CHECKING:
    from agent.config import FlashConfig

log = logging.getLogger(__name__)


class Flash(Protocol):
    """A flash backend: off when made, ``lit()`` around each exposure, ``close()`` at the end."""

    def on(self) -> None: ...

    def off(self) -> None: ...

    def close(self) -> None:
        """Switch off and release the pin; safe to call twice."""

    def lit(self) -> contextlib.AbstractContextManager[None]: ...


class FlashSettings(_Section):
    """The base of every ``[flash]`` backend's settings; ``type: Literal[...]`` names the backend."""

    type: str


class NoFlashConfig(FlashSettings):
    """``[flash] type = "none"`` (the default): no flash."""

    type: Literal["none"]


class GpioFlashConfig(FlashSettings):
    """``[flash] type = "gpio"``: a flash switched by a GPIO pin (through a MOSFET or LED driver)."""

    type: Literal["gpio"]
    #: BCM pin number of the flash MOSFET/LED driver.
    pin: int = Field(default=23, ge=0, le=27)
    active_high: bool = True
    #: gpiozero pin factory (``mock`` on a laptop); default: gpiozero's choice
    #: (``$GPIOZERO_PIN_FACTORY`` or the Pi's own).
    pin_factory: PinFactoryName | None = None
    #: Time the flash is on before the exposure starts.
    warmup: Duration = 0.0

    def gpio_pins(self) -> list[tuple[str, int, str | None]]:
        """Return the pins it drives as ``(key, BCM pin, pin factory)``."""
        return [("flash.pin", self.pin, self.pin_factory)]


class MemoryFlashConfig(FlashSettings):
    """``[flash] type = "memory"``: no hardware; records its switches (tests, demos)."""

    type: Literal["memory"]
    warmup: Duration = 0.0


class _LitMixin:
    warmup: float = 0.0

    def on(self) -> None:
        raise NotImplementedError

    def off(self) -> None:
        raise NotImplementedError

    @contextlib.contextmanager
    def lit(self) -> Iterator[None]:
        """Switch on (waiting the warm-up), yield, then switch off even if the body raised."""
        self.on()
        try:
            if self.warmup > 0:
                time.sleep(self.warmup)
            yield
        finally:
            self.off()


class NoFlash(_LitMixin):
    """No flash: ``on``/``off`` do nothing (but are counted, for tests)."""

    #: Whether switching it on makes light (the capture log reports the flash's on-time).
    lights = False

    def __init__(self) -> None:
        self.switches = 0

    def on(self) -> None:
        self.switches += 1

    def off(self) -> None:
        pass

    def close(self) -> None:
        pass


@register("flash", NoFlashConfig)
def make_no_flash(config: NoFlashConfig, pin_factory: Any = None) -> NoFlash:
    """Given ``[flash] type = "none"``, return a flash that does nothing."""
    return NoFlash()


@register("flash", MemoryFlashConfig)
class RecordingFlash(_LitMixin):
    """A flash without hardware that records each switch as ``(time, on)`` in ``states``,
    starting off, like gpiozero's ``MockPin``; switching it after ``close`` is a FlashError."""

    lights = True

    def __init__(
        self, config: MemoryFlashConfig, pin_factory: Any = None, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.warmup = config.warmup
        self.clock = clock
        self.states: list[tuple[float, bool]] = [(clock(), False)]
        self.closed = False

    @property
    def is_on(self) -> bool:
        return self.states[-1][1]

    def _switch(self, on: bool) -> None:
        if self.closed:
            raise FlashError(f"memory flash: switched {'on' if on else 'off'} after close()")
        if on != self.is_on:
            self.states.append((self.clock(), on))

    def on(self) -> None:
        self._switch(True)

    def off(self) -> None:
        self._switch(False)

    def close(self) -> None:
        if not self.closed and self.is_on:
            self.off()
        self.closed = True

    def assert_states(self, expected: Sequence[bool]) -> None:
        """Raise AssertionError unless the recorded states are ``expected`` (off first)."""
        got = [on for _, on in self.states]
        assert got == list(expected), f"flash states {got}, expected {list(expected)}"

    def assert_states_and_times(
        self, expected: Sequence[tuple[float, bool]], tolerance: float = 0.01
    ) -> None:
        """Given ``(seconds since the previous switch, on)`` pairs (gpiozero's form), raise
        AssertionError unless the record matches within ``tolerance`` seconds."""
        self.assert_states([on for _, on in expected])
        times = [0.0] + [b[0] - a[0] for a, b in zip(self.states, self.states[1:], strict=False)]
        for (want, on), got in zip(expected, times, strict=True):
            assert abs(got - want) <= tolerance, (
                f"flash {'on' if on else 'off'} after {got:g}s, expected {want:g}s"
            )


@register("flash", GpioFlashConfig)
class GpioFlash(_LitMixin):
    """A flash switched by a gpiozero output device on one BCM pin."""

    lights = True

    def __init__(self, config: GpioFlashConfig, pin_factory: Any = None) -> None:
        self.pin = config.pin
        self.warmup = config.warmup
        try:
            from gpiozero import DigitalOutputDevice

            if pin_factory is None:
                pin_factory = shared_pin_factory(config.pin_factory)
            self.device = DigitalOutputDevice(
                config.pin,
                active_high=config.active_high,
                initial_value=False,
                pin_factory=pin_factory,
            )
        except Exception as e:  # gpiozero raises a family of its own errors
            raise FlashError(
                f"cannot drive the flash on GPIO {config.pin}: {e}. On a laptop set "
                '[flash] pin_factory = "mock" (or GPIOZERO_PIN_FACTORY=mock); on a Pi check '
                "that the user is in the gpio group and nothing else holds the pin"
            ) from e

    def on(self) -> None:
        try:
            self.device.on()
        except Exception as e:
            raise FlashError(f"flash on GPIO {self.pin} would not switch on: {e}") from e

    def off(self) -> None:
        try:
            self.device.off()
        except Exception as e:
            # Never hide this: a flash stuck on drains the battery and cooks the card.
            log.error("flash on GPIO %d would not switch off: %s", self.pin, e)
            raise FlashError(f"flash on GPIO {self.pin} would not switch off: {e}") from e

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.device.off()
        self.device.close()


class Exposure:
    """The flash for one capture, given to the camera as its ``Lighting`` (:meth:`lit`).

    ``on_s`` is how long the flash was on (warm-up included), summed over every time it was
    lit. After :meth:`end` it cannot be lit again.
    """

    def __init__(self, flash: Flash, clock: Callable[[], float] = time.monotonic) -> None:
        self.flash = flash
        self.clock = clock
        self.on_s = 0.0
        self.times_lit = 0
        self._since: float | None = None
        self._ended = False
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def lit(self) -> Iterator[None]:
        """Switch the flash on (and wait its warm-up), yield, switch it off even if the body
        raised. Raise FlashError if the capture has already ended or the flash will not switch."""
        with self._lock:
            if self._ended:
                raise FlashError("the flash was asked for after its capture ended (camera too slow)")
            self.flash.on()
            self._since = self.clock()
            self.times_lit += 1
        try:
            warmup = float(getattr(self.flash, "warmup", 0.0))
            if warmup > 0:
                time.sleep(warmup)
            yield
        finally:
            self._off()

    def _off(self) -> None:
        with self._lock:
            if self._since is None:
                return
            self.on_s += self.clock() - self._since
            self._since = None
            self.flash.off()

    def end(self) -> None:
        """The capture is over: switch the flash off if a camera left it on; never light it again.
        Raise FlashError if it will not switch off."""
        with self._lock:
            self._ended = True
            left_on = self._since is not None
        if left_on:
            log.error("the flash was still on when its capture ended: switching it off")
            self._off()


def make_flash(config: FlashConfig, pin_factory: Any = None) -> Flash:
    """Given the ``[flash]`` config, return a flash that is off. Raise FlashError if the pin is unusable."""
    flash: Flash = registry.create("flash", config, pin_factory=pin_factory)
    return flash
