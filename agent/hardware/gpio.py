"""One gpiozero pin factory for every GPIO device of the process (flash, button, LED, battery ADC).

gpiozero keeps the pins a factory has handed out and refuses a second device on a pin in use
(``GPIOPinInUse``), but only within one factory: a factory per device would let the flash, the
LED and the button all drive GPIO 23. So every device gets its factory from
:func:`shared_pin_factory`, which, like gpiozero's own ``Device.pin_factory``, makes the factory
once and hands the same one out afterwards. The configuration also refuses a pin used twice
(``led.pin: GPIO 23 is already used by flash.pin``) before anything is opened.
"""

from __future__ import annotations

import importlib
import threading
from typing import Any

from agent.errors import HardwareError

#: Pin factory names of the config (``pin_factory = "mock"``) -> gpiozero's class.
FACTORIES = {
    "mock": "gpiozero.pins.mock:MockFactory",
    "lgpio": "gpiozero.pins.lgpio:LGPIOFactory",
    "rpigpio": "gpiozero.pins.rpigpio:RPiGPIOFactory",
    "pigpio": "gpiozero.pins.pigpio:PiGPIOFactory",
    "native": "gpiozero.pins.native:NativeFactory",
}

_lock = threading.Lock()


def _class_of(name: str) -> type:
    module, _, cls = FACTORIES[name].partition(":")
    factory_class: type = getattr(importlib.import_module(module), cls)
    return factory_class


def shared_pin_factory(name: str | None = None) -> Any:
    """Given a configured factory name (or None: gpiozero's own choice), return the process's
    one pin factory, making it (and installing it as gpiozero's ``Device.pin_factory``) the
    first time. With None and no factory yet, return None: gpiozero then makes its default
    one, also in ``Device.pin_factory``, shared the same way.

    Raise HardwareError if the process already drives its pins with another factory, or the
    factory cannot be made here (e.g. lgpio off a Pi).
    """
    from gpiozero import Device

    with _lock:
        current = Device.pin_factory
        if name is None:
            return current
        wanted = _class_of(name)
        if current is not None:
            if isinstance(current, wanted):
                return current
            raise HardwareError(
                f'pin factory "{name}" asked for, but this process already drives its GPIO pins '
                f"with {type(current).__name__}: give every device the same pin_factory"
            )
        try:
            factory = wanted()
        except Exception as e:  # gpiozero raises its own errors (BadPinFactory, ImportError...)
            raise HardwareError(f'cannot use the "{name}" GPIO pin factory here: {e}') from e
        Device.pin_factory = factory
        return factory


def release_shared_pin_factory() -> None:
    """Close the shared factory and forget it (tests; the agent keeps it for its lifetime)."""
    from gpiozero import Device

    with _lock:
        factory, Device.pin_factory = Device.pin_factory, None
    if factory is not None:
        reset = getattr(factory, "reset", None)  # MockFactory: forget every pin and reservation
        if reset is not None:
            reset()
        factory.close()
