"""The live view for aiming and focusing: low-resolution frames, a sharpness score, the exposure.

A :class:`Preview` runs one thread while someone is aiming: it takes a frame every
``preview_interval`` seconds, scales it to ``preview_width``, scores its sharpness and hands
it to every open ``/preview.mjpg`` stream. It shares the camera with the schedule, and the
schedule always wins:

- it pauses ``preview_pause_before`` seconds before a scheduled capture, and while a manual
  capture is requested (the ``capture_due`` callback says so);
- it takes each frame under the capture lock without waiting for it: a capture in progress
  means no frame (paused), never a capture delayed by more than one preview frame;
- it stops by itself ``preview_timeout`` seconds after it was (re)started: nobody stops a
  preview in the field.

A camera with a ``preview(width)`` method (synthetic, replay) renders a preview without
advancing its sequence; any other camera takes an ordinary capture (the Pi camera: a full
still, about one a second). The flash, when switched on from the page, is lit around each
preview frame only, so it can never be left on.

The sharpness score is the variance of the Laplacian of the grey image over the centre of the
card (the middle 60 % of each side, where the card is), at the preview's resolution: higher is
sharper; compare values while turning the lens, not between traps.
"""

from __future__ import annotations

import io
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from agent.errors import CaptureBusyError, StickyAgentError
from agent.hardware.camera import Camera, Frame
from agent.hardware.flash import Flash
from agent.locks import capture_lock
from agent.web.settings import WebConfig

log = logging.getLogger(__name__)

#: Fraction of each side of the frame the sharpness is measured on (the card's centre).
CARD_CENTRE = 0.6


def sharpness(grey: np.ndarray[Any, Any]) -> float:
    """Given a 2-D grey image, return the variance of its Laplacian over the centre of the card."""
    import cv2

    h, w = grey.shape
    dy, dx = int(h * (1 - CARD_CENTRE) / 2), int(w * (1 - CARD_CENTRE) / 2)
    centre = grey[dy : h - dy, dx : w - dx]
    return float(cv2.Laplacian(centre, cv2.CV_64F).var())


@dataclass(frozen=True)
class PreviewFrame:
    seq: int
    jpeg: bytes
    sharpness: float
    exposure_us: float | None
    analogue_gain: float | None
    lens_position: float | None
    taken: float  # time.monotonic()


def scale_frame(frame: Frame, width: int, seq: int, lens: float | None) -> PreviewFrame:
    """Given a camera frame, return it as a preview frame of ``width`` pixels with its score."""
    with Image.open(io.BytesIO(frame.jpeg)) as im:
        height = max(1, round(width * im.height / im.width))
        im.draft("RGB", (width, height))  # decode at reduced scale: cheap on a 12 MP JPEG
        small = im.convert("RGB").resize((width, height), Image.Resampling.BILINEAR)
    buf = io.BytesIO()
    small.save(buf, "JPEG", quality=75)
    grey = np.asarray(small.convert("L"))
    return PreviewFrame(
        seq=seq,
        jpeg=buf.getvalue(),
        sharpness=round(sharpness(grey), 1),
        exposure_us=frame.exposure_us,
        analogue_gain=frame.analogue_gain,
        lens_position=frame.extra.get("LensPosition", lens),
        taken=time.monotonic(),
    )


class Preview:
    """The live view of one agent's camera (see the module's docstring)."""

    def __init__(
        self,
        config: WebConfig,
        data_dir: Path,
        camera: Callable[[], Camera | None],
        flash: Callable[[], Flash | None],
        capture_due: Callable[[], str | None],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self.data_dir = data_dir
        self._camera = camera
        self._flash = flash
        self._capture_due = capture_due
        self._clock = clock
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._deadline = 0.0
        self._closed = False
        self.flash_on = False
        self.frame: PreviewFrame | None = None
        self.paused: str | None = None
        self.error: str | None = None
        self.frames = 0

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive() and self._clock() < self._deadline

    def start(self) -> None:
        """Start the preview, or extend a running one by ``preview_timeout`` from now."""
        with self._cond:
            if self._closed:
                return
            self._deadline = self._clock() + self.config.preview_timeout
            if self._thread is None or not self._thread.is_alive():
                self.error = None
                self._thread = threading.Thread(target=self._run, name="web-preview", daemon=True)
                self._thread.start()
            self._cond.notify_all()

    def stop(self) -> None:
        with self._cond:
            self._deadline = 0.0
            self._cond.notify_all()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=30)

    def close(self) -> None:
        self._closed = True
        self.stop()

    def set_flash(self, on: bool) -> None:
        self.flash_on = on

    def set_lens(self, dioptres: float) -> bool:
        """Move the lens (Camera Module 3, or the synthetic camera's simulated one); return False
        if this camera has no focus motor."""
        camera = self._camera()
        setter = getattr(camera, "set_lens_position", None)
        if setter is None:
            return False
        return setter(dioptres) is not False

    def state(self) -> dict[str, Any]:
        """Return the preview's state for the page (JSON-ready)."""
        f = self.frame
        camera = self._camera()
        return {
            "running": self.running,
            "remaining_s": max(0, round(self._deadline - self._clock())) if self.running else 0,
            "paused": self.paused if self.running else None,
            "error": self.error,
            "flash": self.flash_on,
            "frame": f.seq if f else None,
            "sharpness": f.sharpness if f else None,
            "exposure_us": f.exposure_us if f else None,
            "analogue_gain": f.analogue_gain if f else None,
            "lens_position": f.lens_position if f else getattr(camera, "lens_position", None),
            "focusable": hasattr(camera, "set_lens_position")
            and getattr(camera, "has_focus_motor", True) is not False,
        }

    def wait_frame(self, after: int, timeout: float) -> PreviewFrame | None:
        """Return the first frame newer than ``after``, waiting up to ``timeout`` seconds;
        None if none came (or the preview stopped)."""
        end = time.monotonic() + timeout
        with self._cond:
            while not (self.frame is not None and self.frame.seq > after):
                left = end - time.monotonic()
                if left <= 0 or not self.running:
                    return None
                self._cond.wait(min(left, 1.0))
            return self.frame

    def _run(self) -> None:
        log.info("preview started (stops by itself after %.0f s)", self.config.preview_timeout)
        while True:
            with self._cond:
                if self._clock() >= self._deadline or self._closed:
                    break
            started = time.monotonic()
            self.paused = self._capture_due()
            if self.paused is None:
                self._one_frame()
            with self._cond:
                wait = self.config.preview_interval - (time.monotonic() - started)
                if wait > 0:
                    self._cond.wait(wait)
        self.paused = None
        with self._cond:
            self._cond.notify_all()
        log.info("preview stopped")

    def _one_frame(self) -> None:
        camera = self._camera()
        if camera is None:
            self.paused = "the camera is not ready"
            return
        try:
            with capture_lock(self.data_dir, timeout=0):
                frame = self._grab(camera)
        except CaptureBusyError:
            self.paused = "a capture is in progress"
            return
        except StickyAgentError as e:
            self.error = str(e)
            return
        except Exception as e:  # a broken frame must not kill the preview thread
            log.exception("preview frame failed")
            self.error = f"{type(e).__name__}: {e}"
            return
        self.error = None
        with self._cond:
            self.frames += 1
            lens = getattr(camera, "lens_position", None)
            self.frame = scale_frame(frame, self.config.preview_width, self.frames, lens)
            self._cond.notify_all()

    def _grab(self, camera: Camera) -> Frame:
        flash = self._flash() if self.flash_on else None
        render = getattr(camera, "preview", None)
        if flash is not None:
            with flash.lit():
                return self._take(camera, render)
        return self._take(camera, render)

    def _take(self, camera: Camera, render: Callable[[int], Frame] | None) -> Frame:
        if render is not None:
            return render(self.config.preview_width)
        camera.open()  # idempotent for every backend; the capture pipeline reuses it
        return camera.capture(85)
