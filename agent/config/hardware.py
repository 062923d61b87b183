"""Configuration of the hardware seams: camera, flash, sensors, button, status LED."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Literal

from pydantic import (
    Field,
    field_validator,
    model_validator,
)

from agent.config.base import Duration, PinFactoryName, ShortDuration, _Section, parse_duration


class SyntheticCameraConfig(_Section):
    type: Literal["synthetic"]
    width: int = Field(default=4056, ge=64, le=10000)
    height: int = Field(default=3040, ge=48, le=10000)
    seed: int = Field(default=0, ge=0, le=2**63 - 1)
    #: Mean number of insects that land on the card between two captures.
    insects_per_capture: float = Field(default=0.5, ge=0, le=1000)
    sensor: str = "synthetic"
    #: Defocus: Gaussian blur radius in pixels at 4056 wide (0: sharp). The simulated lens
    #: (set from the web page's focus control) adds to it away from its in-focus position.
    blur: float = Field(default=0.0, ge=0, le=200)


class ReplayCameraConfig(_Section):
    type: Literal["replay"]
    folder: Path
    sensor: str = "replay"

    @field_validator("folder")
    @classmethod
    def _folder(cls, v: Path) -> Path:
        if not v.is_dir():
            raise ValueError(f"no such folder: {v}")
        if not any(v.glob("*.jpg")):
            raise ValueError(f"no .jpg files in {v}")
        return v


_SENSOR_NAME_RE = re.compile(r"^[A-Za-z0-9_]{1,37}$")  # EXIF Model is RP_<sensor>, at most 40


def _auto_or_number(v: object, what: str, example: str) -> object:
    """Given a config value, return ``"auto"`` or the number; raise ValueError saying what is allowed."""
    if isinstance(v, str) and v.strip().lower() == "auto":
        return "auto"
    if isinstance(v, int | float) and not isinstance(v, bool):
        return v
    raise ValueError(f'must be "auto" or {what} like {example}, got {v!r}')


class Picamera2CameraConfig(_Section):
    """``[camera] type = "picamera2"``: a Raspberry Pi camera (HQ imx477, Camera Module 3 imx708...)."""

    type: Literal["picamera2"]
    #: Still size (both or neither, even numbers); default: the sensor's full resolution.
    width: int | None = Field(default=None, ge=64, le=10000)
    height: int | None = Field(default=None, ge=48, le=10000)
    camera_index: int = Field(default=0, ge=0, le=16)
    #: ``"auto"`` or a fixed exposure time in microseconds (a flash trap: fixed, e.g. 20000).
    exposure: Literal["auto"] | int = "auto"
    #: ``"auto"`` or a fixed analogue gain (1.0: no gain).
    analogue_gain: Literal["auto"] | float = "auto"
    #: White balance: ``"auto"``, or ``"fixed"`` with ``colour_gains = [red, blue]``.
    awb: Literal["auto", "fixed"] = "auto"
    colour_gains: tuple[float, float] | None = None
    #: Focus of a camera with a focus motor (Camera Module 3): ``"manual"`` (at
    #: ``lens_position``), ``"auto"`` (one autofocus scan each time the camera opens) or
    #: ``"continuous"``. Unset: the camera's default. Ignored, with a warning, on fixed-focus cameras.
    af_mode: Literal["manual", "auto", "continuous"] | None = None
    #: Lens position in dioptres (1 / distance in metres; 0: infinity), with ``af_mode = "manual"``.
    lens_position: float | None = None
    #: Keep the camera running between captures (quicker, settled exposure, more power).
    #: Default: open it for each capture and release it after, which saves power on long intervals.
    keep_open: bool = False
    #: A capture (opening, settling, the frame and its JPEG) that takes longer is abandoned:
    #: the camera is closed and the next capture reopens it.
    capture_timeout: float = 10.0
    #: Frames dropped before the kept one while exposure, gain or white balance is automatic,
    #: so they settle under the flash (the camera keeps at least one when ``keep_open``).
    settle_frames: int = Field(default=5, ge=0, le=100)
    #: Sensor name for EXIF Model (``RP_<sensor>``); default: the camera's model, e.g. imx477.
    sensor: str | None = None

    @field_validator("width", "height")
    @classmethod
    def _even(cls, v: int | None) -> int | None:
        if v is not None and v % 2:
            raise ValueError(f"must be an even number of pixels (libcamera needs it), got {v}")
        return v

    @field_validator("exposure", mode="before")
    @classmethod
    def _exposure(cls, v: object) -> object:
        v = _auto_or_number(v, "a fixed exposure time in microseconds", "20000")
        if not isinstance(v, int | float):
            return v
        if not 1 <= v <= 700_000_000:
            raise ValueError(f"a fixed exposure must be 1 to 700000000 microseconds, got {v:g}")
        return round(v)

    @field_validator("analogue_gain", mode="before")
    @classmethod
    def _gain(cls, v: object) -> object:
        v = _auto_or_number(v, "a fixed analogue gain", "1.0")
        if isinstance(v, int | float) and not 1.0 <= v <= 64.0:
            raise ValueError(f"a fixed analogue gain must be 1.0 to 64.0, got {v:g}")
        return v

    @field_validator("colour_gains")
    @classmethod
    def _colour_gains(cls, v: tuple[float, float] | None) -> tuple[float, float] | None:
        if v is not None and not all(0 < g <= 32 for g in v):
            raise ValueError(f"must be [red, blue] gains, each above 0 and at most 32, got {list(v)}")
        return v

    @field_validator("lens_position")
    @classmethod
    def _lens_position(cls, v: float | None) -> float | None:
        if v is not None and not 0 <= v <= 32:
            raise ValueError(f"must be 0 to 32 dioptres (0: infinity, 10: 10 cm), got {v:g}")
        return v

    @field_validator("capture_timeout", mode="before")
    @classmethod
    def _timeout(cls, v: object) -> float:
        seconds = parse_duration(v)
        if not 0 < seconds <= 3600:
            raise ValueError(f'must be a duration above zero and at most 1h like "10s", got {v!r}')
        return seconds

    @field_validator("sensor")
    @classmethod
    def _sensor(cls, v: str | None) -> str | None:
        if v is not None and not _SENSOR_NAME_RE.match(v):
            raise ValueError(f'must be 1-37 letters, digits or _ like "imx477" (for EXIF Model), got "{v}"')
        return v

    @model_validator(mode="after")
    def _consistent(self) -> Picamera2CameraConfig:
        if (self.width is None) != (self.height is None):
            raise ValueError("width and height go together: set both, or neither for full resolution")
        if self.awb == "fixed" and self.colour_gains is None:
            raise ValueError('awb = "fixed" needs colour_gains = [red, blue], e.g. [2.0, 1.6]')
        if self.awb == "auto" and self.colour_gains is not None:
            raise ValueError('colour_gains needs awb = "fixed" (with awb = "auto" they would be ignored)')
        if self.af_mode == "manual" and self.lens_position is None:
            raise ValueError('af_mode = "manual" needs lens_position (dioptres; 0: infinity)')
        if self.lens_position is not None and self.af_mode != "manual":
            raise ValueError('lens_position needs af_mode = "manual"')
        if isinstance(self.exposure, int) and self.exposure / 1e6 >= self.capture_timeout:
            raise ValueError(
                f"a fixed exposure of {self.exposure / 1e6:g}s does not fit in capture_timeout "
                f"({self.capture_timeout:g}s): raise capture_timeout"
            )
        return self


CameraConfig = Annotated[
    SyntheticCameraConfig | ReplayCameraConfig | Picamera2CameraConfig,
    Field(discriminator="type"),
]


class NoFlashConfig(_Section):
    type: Literal["none"]


class GpioFlashConfig(_Section):
    type: Literal["gpio"]
    #: BCM pin number of the flash MOSFET/LED driver.
    pin: int = Field(default=23, ge=0, le=27)
    active_high: bool = True
    #: gpiozero pin factory (``mock`` on a laptop); default: gpiozero's choice
    #: (``$GPIOZERO_PIN_FACTORY`` or the Pi's own).
    pin_factory: Literal["mock", "lgpio", "rpigpio", "pigpio", "native"] | None = None
    #: Time the flash is on before the exposure starts.
    warmup: Duration = 0.0


FlashConfig = Annotated[NoFlashConfig | GpioFlashConfig, Field(discriminator="type")]


class NoSensorsConfig(_Section):
    type: Literal["none"]


class FakeSensorsConfig(_Section):
    type: Literal["fake"]
    temperature: float | None = Field(default=21.5, ge=-60, le=100)
    humidity: float | None = Field(default=55.0, ge=0, le=100)
    battery: float | None = Field(default=80.0, ge=0, le=100)


class HatSensorsConfig(_Section):
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


SensorsConfig = Annotated[NoSensorsConfig | FakeSensorsConfig | HatSensorsConfig, Field(discriminator="type")]


class ButtonConfig(_Section):
    """``[button]``: the hat's manual capture button (to ground, internal pull-up)."""

    enabled: bool = False
    #: BCM pin (GPIO 22 on the Sticky Pi hat).
    pin: int = Field(default=22, ge=0, le=27)
    #: Presses closer together than this (contact bounce) count once.
    bounce: ShortDuration = Field(default=0.05, ge=0, le=5)
    pin_factory: PinFactoryName | None = None


class LedConfig(_Section):
    """``[led]``: an optional status LED (blinks on capture; patterns for offline and error)."""

    enabled: bool = False
    #: BCM pin of the LED (through a ~330 ohm resistor); the hat has none, any free pin works.
    pin: int = Field(default=24, ge=0, le=27)
    active_high: bool = True
    pin_factory: PinFactoryName | None = None


def gpio_problems(
    flash: NoFlashConfig | GpioFlashConfig,
    sensors: NoSensorsConfig | FakeSensorsConfig | HatSensorsConfig,
    button: ButtonConfig,
    led: LedConfig,
) -> list[str]:
    """Given the GPIO sections, return one problem per pin claimed twice and per pin factory
    that differs from the first one set (one factory drives every pin), naming both keys."""
    claims: list[tuple[str, int, str | None]] = []
    if isinstance(flash, GpioFlashConfig):
        claims.append(("flash.pin", flash.pin, flash.pin_factory))
    if isinstance(sensors, HatSensorsConfig) and sensors.battery:
        for key in ("battery_clock_pin", "battery_mosi_pin", "battery_miso_pin", "battery_select_pin"):
            claims.append((f"sensors.{key}", getattr(sensors, key), sensors.pin_factory))
    if button.enabled:
        claims.append(("button.pin", button.pin, button.pin_factory))
    if led.enabled:
        claims.append(("led.pin", led.pin, led.pin_factory))
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
