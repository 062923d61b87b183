"""Recording stand-ins for the flash side of a capture: what was lit, when, and what the camera
did meanwhile (shared by the camera contract tests and the flash tests)."""

from __future__ import annotations

import contextlib
import io
from collections.abc import Iterator
from typing import Any

from PIL import Image

from agent.hardware.camera import Frame, Lighting, no_lighting


class RecordingLight:
    """A ``Lighting`` that records ``"on"``/``"off"`` in ``events``; anything else may add its
    own events to the same list (e.g. ``"encode"``) and read ``lit_now``."""

    def __init__(self, fail: Exception | None = None) -> None:
        self.events: list[str] = []
        self.lit_now = False
        self.fail = fail

    @contextlib.contextmanager
    def __call__(self) -> Iterator[None]:
        if self.fail is not None:
            raise self.fail
        self.events.append("on")
        self.lit_now = True
        try:
            yield
        finally:
            self.lit_now = False
            self.events.append("off")


def tiny_jpeg(size: tuple[int, int] = (64, 48)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, (220, 200, 40)).save(buf, "JPEG")
    return buf.getvalue()


class StepCamera:
    """A camera fake that goes through a real camera's steps and records each one with the
    flash pin's state at that moment: ``steps`` is ``[(step, pin_on), ...]``."""

    sensor = "fake"

    def __init__(self, pin: Any, fail: bool = False) -> None:
        self.pin = pin
        self.fail = fail
        self.steps: list[tuple[str, bool]] = []
        self.opened = 0
        self.closed = 0

    def _step(self, name: str) -> None:
        self.steps.append((name, bool(self.pin.state)))

    def open(self) -> None:
        self.opened += 1
        self._step("open")

    def capture(self, quality: int, flash: Lighting = no_lighting) -> Frame:
        for step in ("configure", "start", "focus", "settle"):
            self._step(step)
        with flash():
            self._step("expose")
            if self.fail:
                raise_camera_error("camera timed out")
        self._step("encode")
        return Frame(jpeg=tiny_jpeg(), width=64, height=48, sensor=self.sensor, exposure_us=20000)

    def close(self) -> None:
        self.closed += 1


def raise_camera_error(message: str) -> None:
    from agent.errors import CameraError

    raise CameraError(message)
