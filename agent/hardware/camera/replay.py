"""The ``replay`` camera: cycles through the JPEGs of a folder, in name order.

Useful to run the whole pipeline on real trap images (``shared/data/real-images``)
on a laptop. The files' bytes are passed on as they are: nothing is re-encoded,
and the image writer replaces their EXIF. Where a file's EXIF has an exposure
time, the frame reports it, like a real camera would. Given the data folder, it goes on
where the previous run stopped (:mod:`agent.hardware.camera.position`).
"""

from __future__ import annotations

import bisect
import collections
import io
from pathlib import Path
from typing import Literal

import piexif
from PIL import Image
from pydantic import field_validator

from agent.errors import CameraError
from agent.hardware.camera import CameraSettings, Frame, Lighting, no_lighting
from agent.hardware.camera.position import Position, position_file
from agent.registry import register


class ReplayCameraConfig(CameraSettings):
    """``[camera] type = "replay"``: the JPEGs of ``folder``, in name order, round and round."""

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


@register("camera", ReplayCameraConfig)
class ReplayCamera:
    """Given a folder of JPEGs, deliver them one per capture, round and round (across runs,
    when given the data folder: the next file's name is kept there)."""

    def __init__(self, config: ReplayCameraConfig, state_dir: Path | None = None) -> None:
        self.folder = config.folder
        self.sensor = config.sensor
        self._files: list[Path] = []
        self._next = 0
        self._position = Position(position_file(state_dir), {"type": "replay", "folder": str(self.folder)})
        #: The files delivered last, in order (for tests), bounded for long runs.
        self.delivered: collections.deque[Path] = collections.deque(maxlen=100)

    def open(self) -> None:
        self._files = sorted(p for p in self.folder.glob("*.jpg") if p.is_file())
        if not self._files:
            raise CameraError(f"replay camera: no .jpg files in {self.folder}")
        saved = self._position.load().get("next")
        if isinstance(saved, str):  # that file, or the one after where it was if it is gone
            self._next = bisect.bisect_left([p.name for p in self._files], saved) % len(self._files)

    def capture(self, quality: int, flash: Lighting = no_lighting) -> Frame:
        """Return the next file's bytes as a frame (``flash`` lit while it is read: the
        exposure). Raise CameraError if the camera is not open or the file is unreadable."""
        if not self._files:
            raise CameraError("replay camera: capture before open()")
        path = self._files[self._next % len(self._files)]
        self._next += 1
        try:
            with flash():
                data = path.read_bytes()
            with Image.open(io.BytesIO(data)) as im:
                width, height = im.size
                if im.format != "JPEG":
                    raise CameraError(f"replay camera: {path} is not a JPEG")
        except OSError as e:
            raise CameraError(f"replay camera: cannot read {path}: {e}") from e
        self.delivered.append(path)
        self._position.save({"next": self._files[self._next % len(self._files)].name})
        return Frame(
            jpeg=data,
            width=width,
            height=height,
            sensor=self.sensor,
            exposure_us=_exposure_us(data),
        )

    def preview(self, width: int) -> Frame:
        """Return the file delivered last (the next one before any capture) without advancing
        the sequence; the web page scales it to ``width``. Raise CameraError if not open."""
        if not self._files:
            raise CameraError("replay camera: preview before open()")
        path = self.delivered[-1] if self.delivered else self._files[self._next % len(self._files)]
        try:
            data = path.read_bytes()
            with Image.open(path) as im:
                w, h = im.size
        except OSError as e:
            raise CameraError(f"replay camera: cannot read {path}: {e}") from e
        return Frame(jpeg=data, width=w, height=h, sensor=self.sensor, exposure_us=_exposure_us(data))

    def close(self) -> None:
        self._files = []


def _exposure_us(data: bytes) -> float | None:
    try:
        exp = piexif.load(data).get("Exif", {}).get(piexif.ExifIFD.ExposureTime)
    except Exception:  # piexif raises assorted errors on odd files; exposure is optional
        return None
    if not exp or not exp[1]:
        return None
    return float(exp[0]) / float(exp[1]) * 1e6
