"""The environment-sensor seam: temperature, humidity and battery for the EXIF record.

Backends, chosen by ``[sensors] type`` or ``$STICKY_AGENT_SENSORS``:

- ``none``: every reading unknown (the record gets the spec's unknown values).
- ``fake``: fixed, configurable readings (demos and tests); records each read.

Real sensors (DHT22 / BME280 through IIO sysfs, the MCP3001 battery ADC) arrive
with the hardware issue as further classes here. A sensor that fails must return
unknown values and never stop a capture: :func:`read_safely` enforces that.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Protocol

from agent.config import SensorsConfig

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Readings:
    """One set of readings; ``None`` means unknown."""

    temperature: float | None = None  # degrees C
    humidity: float | None = None  # relative humidity, %
    battery: float | None = None  # 0-100


class Sensors(Protocol):
    def read(self) -> Readings:
        """Return the current readings. May raise; callers use :func:`read_safely`."""
        ...


class NoSensors:
    def read(self) -> Readings:
        return Readings()


class FakeSensors:
    """Returns the configured readings and counts how often it was read."""

    def __init__(
        self,
        temperature: float | None = None,
        humidity: float | None = None,
        battery: float | None = None,
    ) -> None:
        self.readings = Readings(temperature, humidity, battery)
        self.reads = 0

    def read(self) -> Readings:
        self.reads += 1
        return self.readings


def make_sensors(config: SensorsConfig) -> Sensors:
    """Given the ``[sensors]`` config, return its backend."""
    if config.type == "fake":
        return FakeSensors(config.temperature, config.humidity, config.battery)
    return NoSensors()


def read_safely(sensors: Sensors) -> tuple[Readings, str | None]:
    """Given a sensor backend, return its readings and ``None``, or unknown readings and the error.

    Never raises: a failing sensor must not cost a capture.
    """
    try:
        return sensors.read(), None
    except Exception as e:  # any sensor fault becomes unknown values
        log.warning("sensor read failed, recording unknown values: %s", e)
        return Readings(), f"{type(e).__name__}: {e}"
