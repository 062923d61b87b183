"""The ``replay`` camera: cycles through the JPEGs of a folder, in name order.

Useful to run the whole pipeline on real trap images (``shared/data/real-images``)
on a laptop. The files' bytes are passed on as they are: nothing is re-encoded,
and the image writer replaces their EXIF. Where a file's EXIF has an exposure
time, the frame reports it, like a real camera would.
"""

from __future__ import annotations

import collections
import io
from pathlib import Path

import piexif
from PIL import Image

from agent.camera import Frame, Lighting, no_lighting
from agent.config import ReplayCameraConfig
from agent.errors import CameraError


class ReplayCamera:
    """Given a folder of JPEGs, deliver them one per capture, round and round."""

    def __init__(self, config: ReplayCameraConfig) -> None:
        self.folder = config.folder
        self.sensor = config.sensor
        self._files: list[Path] = []
        self._next = 0
        #: The files delivered last, in order (for tests), bounded for long runs.
        self.delivered: collections.deque[Path] = collections.deque(maxlen=100)

    def open(self) -> None:
        self._files = sorted(p for p in self.folder.glob("*.jpg") if p.is_file())
        if not self._files:
            raise CameraError(f"replay camera: no .jpg files in {self.folder}")

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
