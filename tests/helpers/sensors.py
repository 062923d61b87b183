"""Stand-ins for the hat's sensors: a fake IIO sysfs tree, a fake ADC, a recording sleep
(shared by the sensor tests and the sensors contract)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from agent.hardware.sensors import HatSensorsConfig


def iio_device(root: Path, index: int, name: str, **channels: float | str) -> Path:
    """Write ``root/iio:device<index>`` with a ``name`` and one file per channel attribute."""
    folder = root / f"iio:device{index}"
    folder.mkdir(parents=True)
    (folder / "name").write_text(name + "\n")
    for attr, value in channels.items():
        (folder / attr).write_text(f"{value}\n")
    return folder


def hat(root: Path, **kw: Any) -> HatSensorsConfig:
    return HatSensorsConfig(type="hat", iio_root=root, **{"battery": False, **kw})


class Sleeps:
    def __init__(self) -> None:
        self.calls: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)


class FakeAdc:
    def __init__(self, value: float | Exception) -> None:
        self._value = value
        self.closed = False

    @property
    def value(self) -> float:
        if isinstance(self._value, Exception):
            raise self._value
        return self._value

    def close(self) -> None:
        self.closed = True
