"""Configuration of the hardware that is no seam: button, status LED; the GPIO pin check.

The seams' backends (camera, flash, sensors) hold their settings in their own modules."""

from __future__ import annotations

from pydantic import Field

from agent.settings import PinFactoryName, ShortDuration, _Section


class ButtonConfig(_Section):
    """``[button]``: the hat's manual capture button (to ground, internal pull-up)."""

    enabled: bool = False
    #: BCM pin (GPIO 22 on the Sticky Pi hat).
    pin: int = Field(default=22, ge=0, le=27)
    #: Presses closer together than this (contact bounce) count once.
    bounce: ShortDuration = Field(default=0.05, ge=0, le=5)
    pin_factory: PinFactoryName | None = None

    def gpio_pins(self) -> list[tuple[str, int, str | None]]:
        """Return the pins it uses as ``(key, BCM pin, pin factory)`` (none when disabled)."""
        return [("button.pin", self.pin, self.pin_factory)] if self.enabled else []


class LedConfig(_Section):
    """``[led]``: an optional status LED (blinks on capture; patterns for offline and error)."""

    enabled: bool = False
    #: BCM pin of the LED (through a ~330 ohm resistor); the hat has none, any free pin works.
    pin: int = Field(default=24, ge=0, le=27)
    active_high: bool = True
    pin_factory: PinFactoryName | None = None

    def gpio_pins(self) -> list[tuple[str, int, str | None]]:
        """Return the pins it uses as ``(key, BCM pin, pin factory)`` (none when disabled)."""
        return [("led.pin", self.pin, self.pin_factory)] if self.enabled else []


def gpio_problems(*sections: object) -> list[str]:
    """Given the config's sections, return one problem per GPIO pin claimed twice and per pin
    factory that differs from the first one set (one factory drives every pin), naming both keys.
    A section claims pins through a ``gpio_pins()`` method (a backend's settings may have one)."""
    claims: list[tuple[str, int, str | None]] = []
    for section in sections:
        gpio_pins = getattr(section, "gpio_pins", None)
        if callable(gpio_pins):
            claims += gpio_pins()
    problems: list[str] = []
    used: dict[int, str] = {}
    for key, pin, _ in claims:
        if pin in used:
            problems.append(f"{key}: GPIO {pin} is already used by {used[pin]}")
        else:
            used[pin] = key
    factories = {f"{key.split('.')[0]}.pin_factory": name for key, _, name in claims if name is not None}
    first = next(iter(factories.items()), None)
    for key, name in factories.items():
        if first is not None and name != first[1]:
            problems.append(
                f'{key}: "{name}" differs from {first[0]} = "{first[1]}"; one pin factory drives '
                "every GPIO pin: set the same one (or none) everywhere"
            )
    return problems
