"""The settings of the ``picamera2`` camera (:mod:`agent.hardware.camera.picamera2`), which
registers them: ``[camera] type = "picamera2"``. A module of their own only to keep the camera's
module short; they import nothing of picamera2."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator, model_validator

from agent.hardware.camera import CameraSettings
from agent.settings import parse_duration

_SENSOR_NAME_RE = re.compile(r"^[A-Za-z0-9_]{1,37}$")  # EXIF Model is RP_<sensor>, at most 40


def _auto_or_number(v: object, what: str, example: str) -> object:
    """Given a config value, return ``"auto"`` or the number; raise ValueError saying what is allowed."""
    if isinstance(v, str) and v.strip().lower() == "auto":
        return "auto"
    if isinstance(v, int | float) and not isinstance(v, bool):
        return v
    raise ValueError(f'must be "auto" or {what} like {example}, got {v!r}')


class Picamera2CameraConfig(CameraSettings):
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
