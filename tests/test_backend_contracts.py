"""One contract per seam, every backend (huey's StorageTests idea): the flash backends
(none, gpiozero on MockFactory pins) and the sensor backends (none, fake, the hat against a
fake IIO sysfs tree and a fake ADC) behave the same way where the capture relies on them.
The camera contract is in test_camera_contract.py (synthetic, replay, picamera2 fake)."""

from __future__ import annotations

import errno
import math
from pathlib import Path
from typing import Any

import pytest
from gpiozero.pins.mock import MockFactory
from test_sensors import FakeAdc, Sleeps, hat, iio_device

from agent.config import GpioFlashConfig
from agent.hardware.flash import GpioFlash, NoFlash
from agent.hardware.sensors import FakeSensors, HatSensors, NoSensors, Readings, read_safely


class FlashContract:
    """Behaviour every flash backend must have."""

    def make(self) -> Any:
        raise NotImplementedError

    def is_lit(self, flash: Any) -> bool | None:
        """Return whether the light is on, or None for a backend without a light."""
        return None

    def test_lit_for_the_body_and_off_after(self) -> None:
        flash = self.make()
        seen = []
        with flash.lit():
            seen.append(self.is_lit(flash))
        assert seen[0] in (True, None)
        assert self.is_lit(flash) in (False, None)
        flash.close()

    def test_off_after_the_body_raised(self) -> None:
        flash = self.make()
        with pytest.raises(RuntimeError), flash.lit():
            raise RuntimeError("camera failed")
        assert self.is_lit(flash) in (False, None)
        flash.close()

    def test_many_exposures(self) -> None:
        flash = self.make()
        for _ in range(5):
            with flash.lit():
                pass
        assert self.is_lit(flash) in (False, None)
        flash.close()


class TestNoFlash(FlashContract):
    def make(self) -> Any:
        return NoFlash()


class TestGpioFlash(FlashContract):
    def make(self) -> Any:
        self.factory = MockFactory()
        return GpioFlash(GpioFlashConfig(type="gpio", pin=23), pin_factory=self.factory)

    def is_lit(self, flash: Any) -> bool | None:
        return bool(self.factory.pin(23).state)


class TestGpioFlashActiveLow(TestGpioFlash):
    def make(self) -> Any:
        self.factory = MockFactory()
        return GpioFlash(GpioFlashConfig(type="gpio", pin=23, active_high=False), pin_factory=self.factory)

    def is_lit(self, flash: Any) -> bool | None:
        return not bool(self.factory.pin(23).state)  # the pin is low while lit


class SensorsContract:
    """Behaviour every sensor backend must have: plausible or unknown values, never a raise."""

    def make(self, tmp_path: Path) -> Any:
        raise NotImplementedError

    def test_readings_are_plausible_or_unknown(self, tmp_path: Path) -> None:
        readings = self.make(tmp_path).read()  # read() itself never raises, whatever failed
        assert isinstance(readings, Readings)
        for value, lo, hi in (
            (readings.temperature, -100, 150),
            (readings.humidity, 0, 100),
            (readings.battery, 0, 100),
        ):
            assert value is None or (math.isfinite(value) and lo <= value <= hi)

    def test_repeated_reads_are_stable(self, tmp_path: Path) -> None:
        sensors = self.make(tmp_path)
        first = sensors.read()
        for _ in range(3):
            again = sensors.read()
            assert read_safely(sensors)[0] == again
            assert (again.temperature is None) == (first.temperature is None)
            assert (again.battery is None) == (first.battery is None)


class TestNoSensors(SensorsContract):
    def make(self, tmp_path: Path) -> Any:
        return NoSensors()


class TestFakeSensors(SensorsContract):
    def make(self, tmp_path: Path) -> Any:
        return FakeSensors(20.6, 42.6, 72)


class TestHatSensors(SensorsContract):
    def make(self, tmp_path: Path) -> Any:
        iio_device(tmp_path, 0, "dht11", in_temp_input=20600, in_humidityrelative_input=42600)
        return HatSensors(hat(tmp_path, climate="dht22", battery=True), sleep=Sleeps(), adc=FakeAdc(0.6))


class TestHatSensorsAllFailing(SensorsContract):
    def make(self, tmp_path: Path) -> Any:
        # no IIO device at all, and an ADC that errors: unknowns, never a raise
        return HatSensors(
            hat(tmp_path / "absent", climate="dht22", battery=True),
            sleep=Sleeps(),
            adc=FakeAdc(OSError(errno.EIO, "SPI transfer failed")),
        )
