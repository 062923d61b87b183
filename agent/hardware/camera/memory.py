"""The ``memory`` camera: delivers the JPEGs a test hands it, and records what it was asked.

``[camera] type = "memory"`` reads from a :class:`Film` shared by every memory camera of the same
``film`` name in the process (:func:`film`): a test puts JPEGs in (``film("x").frames.append``)
or errors to raise (``film("x").failures``), and reads back what the camera did
(``film("x").events``: ``"open"``, ``"capture 85"``, ``"close"``). With no frame waiting it
encodes a plain frame of ``width`` x ``height`` (a different grey each capture) with Pillow, so it
runs anywhere, with neither numpy nor a camera.
"""

from __future__ import annotations

import collections
import io
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from PIL import Image
from pydantic import Field

from agent.errors import CameraError
from agent.hardware.camera import CameraSettings, Frame, Lighting, no_lighting
from agent.registry import register


class MemoryCameraConfig(CameraSettings):
    """``[camera] type = "memory"``: frames handed over in this process (tests, demos)."""

    type: Literal["memory"]
    #: Cameras naming the same film share its frames and its record (default: ``"memory"``).
    film: str = "memory"
    #: Size of the plain frames encoded when no frame is waiting.
    width: int = Field(default=64, ge=16, le=10000)
    height: int = Field(default=48, ge=16, le=10000)
    sensor: str = "memory"


@dataclass
class Film:
    """What memory cameras deliver (``frames``, then plain ones), raise (``failures``, first
    before frames) and did (``events``)."""

    frames: collections.deque[bytes] = field(default_factory=collections.deque)
    failures: collections.deque[Exception] = field(default_factory=collections.deque)
    events: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)


_films: dict[str, Film] = {}
_films_lock = threading.Lock()


def film(name: str = "memory") -> Film:
    """Given a film name, return its (process-wide) film, made if new."""
    with _films_lock:
        return _films.setdefault(name, Film())


def forget(name: str = "memory") -> None:
    """Drop a film, its frames and its record (tests)."""
    with _films_lock:
        _films.pop(name, None)


@register("camera", MemoryCameraConfig)
class MemoryCamera:
    """Given a memory-camera config, deliver its film's frames (``state_dir`` is unused)."""

    def __init__(self, config: MemoryCameraConfig, state_dir: Path | None = None) -> None:
        self.config = config
        self.sensor = config.sensor
        self.film = film(config.film)
        self.captures = 0
        self._open = False

    def open(self) -> None:
        self.film.events.append("open")
        self._open = True

    def capture(self, quality: int, flash: Lighting = no_lighting) -> Frame:
        """Return the film's next frame, or a plain one encoded at ``quality`` (``flash`` lit
        around taking it). Raise CameraError if not open, or the film's next failure."""
        if not self._open:
            raise CameraError("memory camera: capture before open()")
        with self.film.lock:
            self.film.events.append(f"capture {quality}")
            failure = self.film.failures.popleft() if self.film.failures else None
            given = self.film.frames.popleft() if failure is None and self.film.frames else None
        if failure is not None:
            raise failure
        index = self.captures
        self.captures += 1
        with flash():
            pass  # the exposure
        if given is not None:
            try:
                with Image.open(io.BytesIO(given)) as im:
                    width, height = im.size
            except (OSError, ValueError) as e:
                raise CameraError(f"memory camera: a frame handed over is not an image: {e}") from e
            return Frame(given, width, height, self.sensor)
        size = (self.config.width, self.config.height)
        grey = 40 + (index * 37) % 180
        out = io.BytesIO()
        Image.new("RGB", size, (grey, grey, grey)).save(out, "JPEG", quality=quality)
        return Frame(out.getvalue(), size[0], size[1], self.sensor)

    def close(self) -> None:
        if self._open:
            self.film.events.append("close")
        self._open = False
