"""One contract, every sensor backend (huey's StorageTests idea): none, fake (the in-memory
one) and the hat against a fake IIO sysfs tree and a fake ADC behave the same way where the
capture relies on them (``tests/helpers/sensors_contract.py``)."""

from __future__ import annotations

import errno
from pathlib import Path
from typing import Any

from helpers.contracts import untested_backends
from helpers.sensors import FakeAdc, Sleeps, hat, iio_device
from helpers.sensors_contract import SensorsContract

from agent.config import FakeSensorsConfig, NoSensorsConfig
from agent.hardware.sensors import FakeSensors, HatSensors, Readings, make_sensors


def test_every_sensors_backend_has_a_contract_class() -> None:
    """A new backend is one module, one line in registry.BUILTIN and one class here."""
    assert untested_backends("sensors", SensorsContract) == set()


class TestNoSensors(SensorsContract):
    backend = "none"

    def make(self, tmp_path: Path) -> Any:
        return make_sensors(NoSensorsConfig(type="none"))


class TestFakeSensors(SensorsContract):
    backend = "fake"

    def make(self, tmp_path: Path) -> Any:
        return make_sensors(FakeSensorsConfig(type="fake", temperature=20.6, humidity=42.6, battery=72))

    def test_a_sequence_handed_to_it_is_read_in_turn_then_the_last_again(self) -> None:
        first, second = Readings(20.0, 50.0, 90.0), Readings(None, 51.0, 89.5)
        sensors = FakeSensors(sequence=[first, second])
        assert [sensors.read() for _ in range(3)] == [first, second, second]
        assert sensors.reads == 3


class TestHatSensors(SensorsContract):
    backend = "hat"

    def make(self, tmp_path: Path) -> Any:
        iio_device(tmp_path, 0, "dht11", in_temp_input=20600, in_humidityrelative_input=42600)
        return HatSensors(hat(tmp_path, climate="dht22", battery=True), sleep=Sleeps(), adc=FakeAdc(0.6))


class TestHatSensorsAllFailing(TestHatSensors):
    def make(self, tmp_path: Path) -> Any:
        # no IIO device at all, and an ADC that errors: unknowns, never a raise
        return HatSensors(
            hat(tmp_path / "absent", climate="dht22", battery=True),
            sleep=Sleeps(),
            adc=FakeAdc(OSError(errno.EIO, "SPI transfer failed")),
        )
