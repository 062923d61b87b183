"""The sensors contract (huey's StorageTests idea): behaviour every sensor backend must have:
plausible or unknown values, never a raise. A backend's test class
(``tests/test_sensors_contract.py``) only says how to make one."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from agent import registry
from agent.hardware.sensors import Readings, read_safely


class SensorsContract:
    """Behaviour every sensor backend must have."""

    #: The ``type`` name of the backend the test class runs against.
    backend = ""

    def make(self, tmp_path: Path) -> Any:
        raise NotImplementedError

    def test_the_backend_is_registered(self) -> None:
        assert self.backend in registry.backends("sensors")

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

    def test_close_after_reads_is_safe_twice(self, tmp_path: Path) -> None:
        sensors = self.make(tmp_path)
        sensors.read()
        sensors.close()
        sensors.close()
