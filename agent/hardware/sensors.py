"""The environment-sensor seam: temperature, humidity and battery for the EXIF record.

Backends, chosen by ``[sensors] type`` or ``$STICKY_AGENT_SENSORS``, each a settings class (a
:class:`SensorsSettings`) registered with its factory ``(settings, pin_factory=None)``
(:mod:`agent.registry`):

- ``none``: every reading unknown (the record gets the spec's unknown values).
- ``fake``: fixed, configurable readings (demos and tests); counts each read. The seam's
  in-memory backend: a test may also hand it a sequence of readings (:class:`FakeSensors`).
- ``hat``: the Sticky Pi hat: a DHT22 (or a BME280) through its Linux IIO driver
  (:mod:`agent.hardware.iio`), and the battery through the MCP3001 ADC (gpiozero), its voltage
  turned into a 0-100 level by a LiPo discharge curve.

A sensor that fails must return unknown values and never stop a capture:
:class:`HatSensors` turns each sensor's failure into ``None`` and a counted warning, and
:func:`read_safely` catches anything a backend still raises. Every backend passes the same
contract tests (``tests/helpers/sensors_contract.py``).
"""

from __future__ import annotations

import bisect
import contextlib
import logging
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

from pydantic import Field

from agent import registry
from agent.hardware.iio import DRIVER_NAMES, IioClimate
from agent.registry import register
from agent.settings import PinFactoryName, ShortDuration, _Section

if TYPE_CHECKING:
    from agent.config import SensorsConfig

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Readings:
    """One set of readings; ``None`` means unknown."""

    temperature: float | None = None  # degrees C
    humidity: float | None = None  # relative humidity, %
    battery: float | None = None  # 0-100
    #: What failed in this read (``"climate: ..."``), for the capture's metadata.
    errors: tuple[str, ...] = ()


class Sensors(Protocol):
    def read(self) -> Readings:
        """Return the current readings. May raise; callers use :func:`read_safely`."""
        ...

    def close(self) -> None:
        """Release the sensors' devices; safe to call twice. A read after it may open them again."""


class SensorsSettings(_Section):
    """The base of every ``[sensors]`` backend's settings; ``type: Literal[...]`` names the backend."""

    type: str


class NoSensorsConfig(SensorsSettings):
    """``[sensors] type = "none"`` (the default): every reading unknown."""

    type: Literal["none"]


class FakeSensorsConfig(SensorsSettings):
    """``[sensors] type = "fake"``: these readings every time (None: unknown)."""

    type: Literal["fake"]
    temperature: float | None = Field(default=21.5, ge=-60, le=100)
    humidity: float | None = Field(default=55.0, ge=0, le=100)
    battery: float | None = Field(default=80.0, ge=0, le=100)


class HatSensorsConfig(SensorsSettings):
    """``[sensors] type = "hat"``: the Sticky Pi hat's sensors (see hardware/sensors.md)."""

    type: Literal["hat"]
    #: Temperature/humidity sensor, read through its Linux IIO driver (``dtoverlay=dht11`` for
    #: the DHT22, ``dtoverlay=i2c-sensor,bme280`` for a BME280).
    climate: Literal["dht22", "bme280", "none"] = "dht22"
    #: Where the kernel lists IIO devices (a fake tree in tests).
    iio_root: Path = Path("/sys/bus/iio/devices")
    #: Reads per capture before the climate sensor is given up as unknown (DHT reads often fail).
    climate_attempts: int = Field(default=3, ge=1, le=10)
    #: Wait between two climate read attempts (a DHT22 needs about 2 s between samples).
    climate_retry_delay: ShortDuration = Field(default=2.0, ge=0, le=10)
    #: Read the battery through the hat's MCP3001 ADC.
    battery: bool = True
    #: Battery voltage over ADC input voltage: ``(R1 + R2) / R2`` for a divider R1 (battery side)
    #: over R2 (ground side); 1 without a divider.
    battery_divider: float = Field(default=2.0, ge=1.0, le=20.0)
    #: The ADC's reference voltage (its VREF pin), the input voltage that reads full scale.
    battery_vref: float = Field(default=3.3, gt=0, le=5.5)
    #: SPI pins of the MCP3001 (BCM); 11/10/9/8 use the Pi's hardware SPI when it is enabled,
    #: else gpiozero bit-bangs them. The MCP3001 has no data input: the MOSI pin is unused.
    battery_clock_pin: int = Field(default=11, ge=0, le=27)
    battery_mosi_pin: int = Field(default=10, ge=0, le=27)
    battery_miso_pin: int = Field(default=9, ge=0, le=27)
    battery_select_pin: int = Field(default=8, ge=0, le=27)
    pin_factory: PinFactoryName | None = None

    def gpio_pins(self) -> list[tuple[str, int, str | None]]:
        """Return the pins it drives as ``(key, BCM pin, pin factory)``: the ADC's, with a battery."""
        if not self.battery:
            return []
        keys = ("battery_clock_pin", "battery_mosi_pin", "battery_miso_pin", "battery_select_pin")
        return [(f"sensors.{key}", getattr(self, key), self.pin_factory) for key in keys]


class NoSensors:
    def read(self) -> Readings:
        return Readings()

    def close(self) -> None:
        pass


class FakeSensors:
    """Returns the configured readings (or, given ``sequence``, those in turn, then the last one
    again) and counts how often it was read."""

    def __init__(
        self,
        temperature: float | None = None,
        humidity: float | None = None,
        battery: float | None = None,
        sequence: Iterable[Readings] = (),
    ) -> None:
        self.readings = Readings(temperature, humidity, battery)
        self.sequence = list(sequence)
        self.reads = 0
        self.closed = False

    def read(self) -> Readings:
        self.reads += 1
        if self.sequence:
            self.readings = self.sequence.pop(0)
        return self.readings

    def close(self) -> None:
        self.closed = True


@register("sensors", NoSensorsConfig)
def make_no_sensors(config: NoSensorsConfig, pin_factory: Any = None) -> NoSensors:
    """Given ``[sensors] type = "none"``, return sensors that read unknown values."""
    return NoSensors()


@register("sensors", FakeSensorsConfig)
def make_fake_sensors(config: FakeSensorsConfig, pin_factory: Any = None) -> FakeSensors:
    """Given ``[sensors] type = "fake"``, return sensors that read the configured values."""
    return FakeSensors(config.temperature, config.humidity, config.battery)


#: LiPo cell voltage (V) -> remaining charge (%), at a light load; linear in between.
LIPO_CURVE: tuple[tuple[float, float], ...] = (
    (3.30, 0.0),
    (3.50, 5.0),
    (3.60, 10.0),
    (3.70, 20.0),
    (3.80, 40.0),
    (3.90, 60.0),
    (4.00, 80.0),
    (4.10, 90.0),
    (4.20, 100.0),
)


def lipo_level(voltage: float, curve: tuple[tuple[float, float], ...] = LIPO_CURVE) -> float:
    """Given a LiPo cell voltage, return its charge level 0-100 (clamped outside the curve)."""
    volts = [v for v, _ in curve]
    if not voltage > volts[0]:  # also NaN
        return curve[0][1]
    if voltage >= volts[-1]:
        return curve[-1][1]
    i = bisect.bisect_right(volts, voltage)
    (v0, p0), (v1, p1) = curve[i - 1], curve[i]
    return p0 + (p1 - p0) * (voltage - v0) / (v1 - v0)


class AnalogInput(Protocol):
    """What the battery needs of an ADC: gpiozero's ``MCP3001`` or a test fake."""

    @property
    def value(self) -> float:
        """The input as a fraction of the reference voltage, 0..1."""
        ...

    def close(self) -> None: ...


class Battery:
    """The battery level through the hat's MCP3001 ADC and a voltage divider.

    The ADC is opened at the first read (and again after a failed open), so a missing
    SPI bus costs a battery reading, never the agent's start.
    """

    def __init__(
        self, config: HatSensorsConfig, pin_factory: Any = None, adc: AnalogInput | None = None
    ) -> None:
        self.config = config
        self.pin_factory = pin_factory
        self.adc = adc

    def _open(self) -> AnalogInput:
        if self.adc is None:
            from gpiozero import MCP3001

            from agent.hardware.gpio import shared_pin_factory

            c = self.config
            factory = self.pin_factory
            if factory is None:
                factory = shared_pin_factory(c.pin_factory)
            self.adc = MCP3001(
                max_voltage=c.battery_vref,
                clock_pin=c.battery_clock_pin,
                mosi_pin=c.battery_mosi_pin,
                miso_pin=c.battery_miso_pin,
                select_pin=c.battery_select_pin,
                pin_factory=factory,
            )
        return self.adc

    def voltage(self) -> float:
        """Return the battery voltage. Raise whatever the ADC raises."""
        fraction = min(1.0, max(0.0, float(self._open().value)))
        return fraction * self.config.battery_vref * self.config.battery_divider

    def level(self) -> float:
        """Return the charge level, 0-100."""
        return round(lipo_level(self.voltage()), 1)

    def close(self) -> None:
        if self.adc is not None:
            with contextlib.suppress(Exception):
                self.adc.close()
            self.adc = None


@register("sensors", HatSensorsConfig)
class HatSensors:
    """The Sticky Pi hat: climate through IIO, battery through the MCP3001.

    ``read`` never raises: a sensor that fails gives unknown values, a warning, and one
    more in ``failures[<sensor>]`` (``"climate"``, ``"battery"``).
    """

    def __init__(
        self,
        config: HatSensorsConfig,
        pin_factory: Any = None,
        sleep: Callable[[float], None] = time.sleep,
        adc: AnalogInput | None = None,
    ) -> None:
        self.config = config
        self.climate = (
            IioClimate(
                DRIVER_NAMES[config.climate],
                root=config.iio_root,
                attempts=config.climate_attempts,
                retry_delay=config.climate_retry_delay,
                sleep=sleep,
            )
            if config.climate != "none"
            else None
        )
        self.battery = Battery(config, pin_factory=pin_factory, adc=adc) if config.battery else None
        self.failures: Counter[str] = Counter()
        self.reads = 0

    def read(self) -> Readings:
        self.reads += 1
        temperature = humidity = level = None
        errors: list[str] = []
        if self.climate is not None:
            try:
                climate = self.climate.read()
                temperature, humidity = climate.temperature, climate.humidity
            except Exception as e:  # any sensor fault becomes unknown values
                errors.append(self._failed(f"climate ({self.config.climate})", "climate", e))
        if self.battery is not None:
            try:
                level = self.battery.level()
            except Exception as e:
                errors.append(self._failed("battery (MCP3001)", "battery", e))
        return Readings(temperature, humidity, level, tuple(errors))

    def _failed(self, what: str, key: str, e: Exception) -> str:
        self.failures[key] += 1
        log.warning(
            "%s sensor failed (%d failures since start), recording unknown values: %s",
            what,
            self.failures[key],
            e,
        )
        return f"{key}: {type(e).__name__}: {e}"

    def close(self) -> None:
        if self.battery is not None:
            self.battery.close()


def make_sensors(config: SensorsConfig, pin_factory: Any = None) -> Sensors:
    """Given the ``[sensors]`` config, return its backend. Never raises for absent hardware:
    a missing sensor reads as unknown."""
    sensors: Sensors = registry.create("sensors", config, pin_factory=pin_factory)
    return sensors


def read_safely(sensors: Sensors) -> tuple[Readings, str | None]:
    """Given a sensor backend, return its readings and ``None``, or unknown readings and the error
    (also the errors of a partly failed read, which keeps its good values).

    Never raises: a failing sensor must not cost a capture.
    """
    try:
        readings = sensors.read()
        return readings, "; ".join(readings.errors) or None
    except Exception as e:  # any sensor fault becomes unknown values
        log.warning("sensor read failed, recording unknown values: %s", e)
        return Readings(), f"{type(e).__name__}: {e}"
