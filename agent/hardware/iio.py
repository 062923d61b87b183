"""Read climate sensors through the Linux kernel's IIO drivers (sysfs), as Pi OS overlays provide them.

``dtoverlay=dht11,gpiopin=27`` (the ``dht11`` driver also reads the DHT22) and
``dtoverlay=i2c-sensor,bme280`` each add a folder ``/sys/bus/iio/devices/iio:deviceN/``
whose ``name`` file names the driver (``dht11``; ``bme280``). A channel reads either
processed, ``in_<channel>_input``, or raw, ``(in_<channel>_raw + in_<channel>_offset) *
in_<channel>_scale``; both give the IIO ABI's units: milli-degrees C for ``temp``,
milli-percent for ``humidityrelative``, kPa for ``pressure``.

A DHT read often fails (the kernel returns EIO on a bad checksum, ETIMEDOUT when the
sensor does not answer): :class:`IioClimate` retries a few times with a short delay and
then raises; the caller turns that into unknown values.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

#: The sysfs folder of IIO devices.
IIO_ROOT = Path("/sys/bus/iio/devices")

#: Driver names (the ``name`` file) per configured climate sensor. The kernel's dht11
#: driver handles the DHT22; the bmp280 driver names a BME280 ``bme280`` (and a BMP280,
#: which has no humidity channel, ``bmp280``).
DRIVER_NAMES: dict[str, tuple[str, ...]] = {
    "dht22": ("dht11", "dht22"),
    "bme280": ("bme280", "bmp280"),
}

#: Plausible ranges (degrees C; %): a value outside is a misread, not weather.
TEMPERATURE_RANGE = (-45.0, 90.0)
HUMIDITY_RANGE = (0.0, 100.0)


class IioError(OSError):
    """An IIO device gave no usable value (worth another try)."""


class IioNotFound(IioError):
    """No such IIO device or channel (another try will not help)."""


@dataclass(frozen=True)
class Climate:
    """One climate reading; ``None`` where the sensor has no such channel."""

    temperature: float  # degrees C
    humidity: float | None  # relative humidity, %
    pressure: float | None = None  # kPa


def find_device(root: Path, names: Sequence[str]) -> Path | None:
    """Return the first ``iio:device*`` folder under ``root`` whose ``name`` is one of ``names``."""
    try:
        folders = sorted(root.glob("iio:device*"))
    except OSError:
        return None
    for folder in folders:
        try:
            name = (folder / "name").read_text().strip()
        except OSError:
            continue
        if name in names:
            return folder
    return None


def _read_number(path: Path) -> float:
    text = path.read_text().strip()
    try:
        return float(text)
    except ValueError:
        raise IioError(f"{path} holds {text!r}, not a number") from None


def has_channel(device: Path, channel: str) -> bool:
    return (device / f"in_{channel}_input").exists() or (device / f"in_{channel}_raw").exists()


def read_channel(device: Path, channel: str) -> float:
    """Return one channel of an IIO device in its ABI unit (``_input``, else ``_raw`` scaled).

    Raise OSError (EIO, ETIMEDOUT, ... as the driver reports them) or IioError.
    """
    processed = device / f"in_{channel}_input"
    if processed.exists():
        return _read_number(processed)
    raw_path = device / f"in_{channel}_raw"
    if not raw_path.exists():
        raise IioNotFound(f"{device} has no {channel} channel (no in_{channel}_input or in_{channel}_raw)")
    raw = _read_number(raw_path)
    offset_path = device / f"in_{channel}_offset"
    scale_path = device / f"in_{channel}_scale"
    offset = _read_number(offset_path) if offset_path.exists() else 0.0
    scale = _read_number(scale_path) if scale_path.exists() else 1.0
    return (raw + offset) * scale


def _in_range(value: float, bounds: tuple[float, float], what: str) -> float:
    low, high = bounds
    if not low <= value <= high:
        raise IioError(f"implausible {what} {value:g} (outside {low:g}..{high:g})")
    return value


class IioClimate:
    """A temperature/humidity(/pressure) sensor behind an IIO driver, found by driver name.

    The device is looked up at every read: ``iio:deviceN`` numbers can change across
    boots and a driver can bind after the agent started.
    """

    def __init__(
        self,
        names: Sequence[str],
        root: Path = IIO_ROOT,
        attempts: int = 3,
        retry_delay: float = 2.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.names = tuple(names)
        self.root = root
        self.attempts = max(1, attempts)
        self.retry_delay = retry_delay
        self.sleep = sleep

    def device(self) -> Path:
        """Return the device folder; raise IioError naming what to check if there is none."""
        found = find_device(self.root, self.names)
        if found is None:
            raise IioNotFound(
                f"no IIO device named {' or '.join(self.names)} under {self.root}: is the overlay "
                "in /boot/firmware/config.txt and the sensor wired? (see hardware/sensors.md)"
            )
        return found

    def read_once(self) -> Climate:
        """Read every channel once. Raise OSError if the driver fails or a value is implausible."""
        device = self.device()
        temperature = _in_range(read_channel(device, "temp") / 1000.0, TEMPERATURE_RANGE, "temperature")
        humidity = None
        if has_channel(device, "humidityrelative"):
            humidity = _in_range(
                read_channel(device, "humidityrelative") / 1000.0, HUMIDITY_RANGE, "humidity"
            )
        pressure = read_channel(device, "pressure") if has_channel(device, "pressure") else None
        return Climate(temperature, humidity, pressure)

    def read(self) -> Climate:
        """Read, retrying failed reads; raise the last OSError after ``attempts`` failures
        (at once if the device or a channel is missing)."""
        last: OSError | None = None
        for attempt in range(self.attempts):
            if attempt:
                self.sleep(self.retry_delay)
            try:
                return self.read_once()
            except IioNotFound:
                raise
            except OSError as e:  # EIO, ETIMEDOUT, EAGAIN from the driver; a misread value
                last = e
        assert last is not None
        raise last
