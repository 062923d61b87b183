"""The ``picamera2`` camera: a Raspberry Pi camera (HQ camera imx477, Camera Module 3 imx708...).

This module is the only place that imports ``picamera2`` and ``libcamera``, and only inside
methods: importing it has no side effects and works on any machine. Off a Pi (no picamera2),
constructing the camera works and :meth:`Picamera2Camera.open` raises a CameraError saying
how to install it.

A capture: open the camera (unless ``keep_open`` kept it open), configure a still at full
sensor resolution (or ``width`` x ``height``), set the configured controls, start it, focus;
then, with the flash on, drop ``settle_frames`` frames while anything is automatic and take
one request; with the flash off again, encode its
``main`` stream to JPEG with picamera2 (``options["quality"]``) into memory, and read the
frame's metadata (``ExposureTime``, ``AnalogueGain``, ``SensorTemperature``, ``Lux``). The
JPEG bytes are passed on as they are: the image writer replaces their EXIF without
re-encoding. Unless ``keep_open``, the camera is closed again, which saves power on long
intervals.

Every step that talks to the camera runs in a worker thread and is given until the
capture's deadline (``capture_timeout``): a camera that stops answering (a loose ribbon
cable, a brown-out) cannot hang the agent. On a timeout the camera is cancelled and closed,
counted in :attr:`Picamera2Camera.timeouts`, and the next capture opens it afresh. Every
picamera2/libcamera error comes out as a CameraError that says what was being done.

Tested off a Pi against a fake of picamera2's API (``tests/fake_picamera2``).
"""

from __future__ import annotations

import importlib
import io
import logging
import re
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from PIL import Image

from agent.errors import CameraError, FlashError
from agent.hardware.camera import Frame, Lighting, no_lighting
from agent.hardware.camera.picamera2_settings import Picamera2CameraConfig
from agent.registry import register

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Per-frame metadata passed on in ``Frame.extra`` when the camera reports it.
EXTRA_METADATA = ("SensorTemperature", "Lux", "LensPosition")

_LIST_CAMERAS = "rpicam-hello --list-cameras"
_NOT_INSTALLED = (
    "picamera2 camera: picamera2 is not installed in this Python ({error}). On the Pi: "
    "sudo apt install python3-picamera2, and run sticky-agent from a virtualenv made with "
    "python3 -m venv --system-site-packages (picamera2 and libcamera come from apt, not pip). "
    'Off a Pi use [camera] type = "synthetic" or "replay", or set STICKY_AGENT_CAMERA=synthetic'
)


class _Timeout(Exception):
    """A camera call did not return in time (internal: becomes a CameraError)."""


def _sensor_name(model: object) -> str:
    """Given libcamera's ``Model`` property (``"imx477"``), return a sensor name for EXIF Model."""
    name = re.sub(r"[^a-z0-9_]+", "_", str(model).lower()).strip("_")[:37]
    return name or "unknown"


def _remaining(deadline: float) -> float:
    """Seconds left until ``deadline`` (never 0: picamera2 reads ``wait=0`` as "do not wait")."""
    return max(deadline - time.monotonic(), 0.001)


def _number(value: object) -> float | None:
    """A numeric metadata value as a float (any sign: a sensor can be below 0 °C), else None."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return None


def _positive(value: object) -> float | None:
    number = _number(value)
    return number if number is not None and number > 0 else None


def _run_bounded(fn: Callable[[], T], timeout: float, name: str) -> T:
    """Run ``fn`` in a daemon thread; return its result or raise its exception.

    Raise _Timeout if it has not finished within ``timeout`` seconds (it is left to finish,
    or not, on its own).
    """
    done = threading.Event()
    result: list[T] = []
    error: list[BaseException] = []

    def run() -> None:
        try:
            result.append(fn())
        except BaseException as e:  # handed to the waiting thread
            error.append(e)
        finally:
            done.set()

    threading.Thread(target=run, name=name, daemon=True).start()
    if not done.wait(timeout):
        raise _Timeout(name)
    if error:
        raise error[0]
    return result[0]


@register("camera", Picamera2CameraConfig)
class Picamera2Camera:
    """Given a picamera2-camera config, deliver one JPEG per capture from a Raspberry Pi camera
    (``state_dir`` is unused: a real camera has no sequence to keep)."""

    def __init__(self, config: Picamera2CameraConfig, state_dir: Path | None = None) -> None:
        self.config = config
        self.index = config.camera_index
        #: Sensor name for EXIF Model; the camera's model once opened (or the configured one).
        self.sensor = config.sensor or "picamera2"
        #: The camera's libcamera ``Model`` once opened, e.g. ``"imx477"``.
        self.model: str | None = None
        #: Captures abandoned because the camera did not answer within ``capture_timeout``.
        self.timeouts = 0
        #: Times the camera hardware was opened (once per capture unless ``keep_open``).
        self.opens = 0
        #: Frames delivered.
        self.captures = 0
        #: The lens position (dioptres) set from the web page's focus control: manual focus
        #: at it from the next start on, until the agent restarts. None: the configuration's.
        self.lens_override: float | None = None
        #: Whether the camera has a focus motor (Camera Module 3); None until it was started.
        self.has_focus_motor: bool | None = None
        self._picamera2: Any = None  # the Picamera2 class, once imported
        self._cam: Any = None  # the open Picamera2 object, if any
        self._open = False
        self._generation = 0  # bumped on every release: a late-opening worker closes its camera
        self._lock = threading.Lock()
        self._focus_warned = False

    # -- the Camera protocol -------------------------------------------------------------

    def open(self) -> None:
        """Check that picamera2 is installed and the camera is detected; with ``keep_open``,
        also open and start it. Raise CameraError saying what to check if not."""
        if self._open:
            return
        picamera2_class = self._import()
        deadline = time.monotonic() + self.config.capture_timeout
        cameras = self._call("list the cameras", picamera2_class.global_camera_info, deadline)
        if not cameras:
            raise CameraError(self._no_camera())
        if self.index >= len(cameras):
            found = ", ".join(f"{i}: {c.get('Model', '?')}" for i, c in enumerate(cameras))
            raise CameraError(
                f"picamera2 camera: camera_index = {self.index} but only {len(cameras)} camera(s) "
                f"detected ({found}); set [camera] camera_index, or check the cables and "
                f"{_LIST_CAMERAS}"
            )
        self.model = str(cameras[self.index].get("Model", "unknown"))
        self.sensor = self.config.sensor or _sensor_name(self.model)
        self._open = True
        if self.config.keep_open:
            try:
                self._ensure_started(deadline)
            except CameraError:
                self._open = False
                self._release(failed=True)
                raise
        log.info("%s opened (%s)", self._label(), "kept open" if self.config.keep_open else "per capture")

    def capture(self, quality: int, flash: Lighting = no_lighting) -> Frame:
        """Given a JPEG quality (1-100), return one frame. Raise CameraError on any failure,
        including a camera that does not answer within ``capture_timeout``.

        ``flash`` is lit once the camera is open, configured, started and focused, for the
        settle frames (automatic exposure settles under the flash; none when exposure, gain
        and white balance are fixed) and the kept frame, and is off before the encode."""
        if not self._open:
            raise CameraError(f"{self._label()}: capture before open() (or after close())")
        if not 1 <= quality <= 100:
            raise CameraError(f"{self._label()}: JPEG quality must be 1-100, got {quality}")
        deadline = time.monotonic() + self.config.capture_timeout
        ok = False
        try:
            self._ensure_started(deadline)
            cam = self._cam
            frame = self._call("capture a frame", lambda: self._take(cam, quality, deadline, flash), deadline)
            ok = True
        finally:
            if not ok or not self.config.keep_open:
                self._release(failed=not ok)
        self.captures += 1
        return frame

    @property
    def lens_position(self) -> float | None:
        return self.lens_override if self.lens_override is not None else self.config.lens_position

    def set_lens_position(self, dioptres: float) -> bool:
        """Focus manually at ``dioptres`` (0 is infinity; Camera Module 3 reaches about 10):
        at once if the camera is running, else from its next start. Return False if the camera
        is known to have no focus motor."""
        if self.has_focus_motor is False:
            return False
        self.lens_override = float(dioptres)
        cam = self._cam
        if cam is not None and "AfMode" in cam.camera_controls:
            af_modes = importlib.import_module("libcamera").controls.AfModeEnum
            cam.set_controls({"AfMode": af_modes.Manual, "LensPosition": self.lens_override})
        return True

    def close(self) -> None:
        """Stop and release the camera; safe to call twice or after a failed ``open``."""
        self._open = False
        self._release(failed=False)

    # -- opening and closing the hardware ---------------------------------------------------

    def _import(self) -> Any:
        """Return the Picamera2 class, or raise CameraError saying how to install it."""
        if self._picamera2 is None:
            try:
                module = importlib.import_module("picamera2")
            except ImportError as e:
                raise CameraError(_NOT_INSTALLED.format(error=e)) from e
            except Exception as e:  # picamera2 runs code at import (platform, libcamera)
                raise CameraError(
                    f"picamera2 camera: picamera2 is installed but failed to load: {type(e).__name__}: {e}"
                ) from e
            self._picamera2 = module.Picamera2
        return self._picamera2

    def _no_camera(self) -> str:
        return (
            "picamera2 camera: no camera detected. Check the camera's ribbon cable (power off "
            "first; fully seated, contacts facing the right way, at both the camera and the Pi "
            "end) and that camera_auto_detect=1 is in /boot/firmware/config.txt, then run "
            f"{_LIST_CAMERAS}: it must list the camera"
        )

    def _ensure_started(self, deadline: float) -> None:
        if self._cam is None:
            generation = self._generation
            self._call("open the camera", lambda: self._start_camera(generation, deadline), deadline)

    def _start_camera(self, generation: int, deadline: float) -> None:
        """Open, configure and start the camera (runs in a worker thread)."""
        try:
            cam = self._import()(self.index)
        except IndexError as e:  # recent picamera2 indexes global_camera_info(): no such camera
            raise CameraError(self._no_camera()) from e
        except Exception as e:  # older picamera2: RuntimeError("Camera __init__ sequence did not complete.")
            raise CameraError(
                f"{self._label()}: could not open the camera ({type(e).__name__}: {e}). Is another "
                "program using it (a second sticky-agent, rpicam-still, a Python shell)? Check with "
                f"{_LIST_CAMERAS}"
            ) from e
        with self._lock:
            if generation != self._generation:  # the capture gave up on us meanwhile
                abandoned = True
            else:
                abandoned = False
                self._cam = cam
        if abandoned:
            cam.close()
            return
        self.opens += 1
        model = cam.camera_properties.get("Model")
        if model:
            self.model = str(model)
            self.sensor = self.config.sensor or _sensor_name(model)
        if self.config.width is not None and self.config.height is not None:
            size = (self.config.width, self.config.height)
        else:
            size = tuple(cam.sensor_resolution)
        # One buffer and no raw stream: a 12 MP still must fit in a Pi Zero 2's memory.
        still = cam.create_still_configuration(
            main={"size": size, "format": "BGR888"}, raw=None, buffer_count=1
        )
        cam.configure(still)
        controls = self._controls(cam)
        if controls:
            cam.set_controls(controls)
        cam.start()
        log.debug("%s started, still %dx%d", self._label(), *size)
        autofocus = self.config.af_mode == "auto" and "AfMode" in cam.camera_controls
        if autofocus and not cam.autofocus_cycle(wait=_remaining(deadline)):
            log.warning("%s: autofocus did not find a focus; capturing anyway", self._label())

    def _controls(self, cam: Any) -> dict[str, Any]:
        """Return the controls to set for this config, checked against what the camera offers."""
        cfg = self.config
        available = cam.camera_controls
        controls: dict[str, Any] = {}
        if cfg.exposure != "auto":
            controls["ExposureTime"] = cfg.exposure
        if cfg.analogue_gain != "auto":
            controls["AnalogueGain"] = float(cfg.analogue_gain)
        if cfg.exposure != "auto" and cfg.analogue_gain != "auto" and "AeEnable" in available:
            controls["AeEnable"] = False
        if cfg.awb == "fixed" and cfg.colour_gains is not None:
            controls["ColourGains"] = tuple(cfg.colour_gains)
            if "AwbEnable" in available:
                controls["AwbEnable"] = False
        missing = [name for name in controls if name not in available]
        if missing:
            raise CameraError(
                f"{self._label()}: this camera has no {', '.join(missing)} control, which the "
                'configuration asks for (exposure, analogue_gain or awb); set them to "auto"'
            )
        self.has_focus_motor = "AfMode" in available
        if self.lens_override is not None and "AfMode" in available:
            af_modes = importlib.import_module("libcamera").controls.AfModeEnum
            controls["AfMode"] = af_modes.Manual
            controls["LensPosition"] = self.lens_override
        elif cfg.af_mode is not None:
            if "AfMode" not in available:
                if not self._focus_warned:  # once: pi.toml sets a focus for Camera Module 3
                    self._focus_warned = True
                    log.warning(
                        "%s has no focus motor (Camera Module 3 has); af_mode = %r ignored",
                        self._label(),
                        cfg.af_mode,
                    )
            else:
                af_modes = importlib.import_module("libcamera").controls.AfModeEnum
                if cfg.af_mode == "manual":
                    controls["AfMode"] = af_modes.Manual
                    controls["LensPosition"] = cfg.lens_position
                elif cfg.af_mode == "continuous":
                    controls["AfMode"] = af_modes.Continuous
                else:
                    controls["AfMode"] = af_modes.Auto
        return controls

    def _release(self, failed: bool) -> None:
        """Close the camera if it is open (bounded in time; errors are logged, not raised)."""
        with self._lock:
            cam, self._cam = self._cam, None
            self._generation += 1
        if cam is None:
            return

        def shut() -> None:
            if failed:  # drop jobs waiting for frames that will never come
                cancel = getattr(cam, "cancel_all_and_flush", None)
                if cancel is not None:
                    cancel()
            cam.close()

        try:
            _run_bounded(shut, self.config.capture_timeout, "picamera2-close")
        except _Timeout:
            log.error(
                "%s did not close within %gs; abandoned it (if it cannot be opened again, "
                "restart the agent or reboot)",
                self._label(),
                self.config.capture_timeout,
            )
        except Exception as e:
            log.warning("%s: closing the camera failed: %s: %s", self._label(), type(e).__name__, e)

    # -- one frame --------------------------------------------------------------------------

    def _settle_frames(self) -> int:
        cfg = self.config
        automatic = cfg.exposure == "auto" or cfg.analogue_gain == "auto" or cfg.awb == "auto"
        frames = cfg.settle_frames if automatic else 0
        # A running camera may deliver a frame exposed before the flash came on: drop it.
        return max(frames, 1) if cfg.keep_open else frames

    def _take(self, cam: Any, quality: int, deadline: float, flash: Lighting) -> Frame:
        """Take one frame under the flash, then encode it (runs in a worker thread)."""
        cam.options["quality"] = quality
        request = None
        try:
            with flash():
                for _ in range(self._settle_frames()):
                    cam.capture_request(wait=_remaining(deadline)).release()
                request = cam.capture_request(wait=_remaining(deadline))
            # The flash is off: the encode (a second or more at 12 MP on a Pi Zero) is dark.
            metadata = request.get_metadata()
            buf = io.BytesIO()
            request.save("main", buf, format="jpeg")
        finally:
            if request is not None:
                request.release()
        return self._frame(buf.getvalue(), metadata)

    def _frame(self, jpeg: bytes, metadata: dict[str, Any]) -> Frame:
        try:
            with Image.open(io.BytesIO(jpeg)) as im:
                if im.format != "JPEG":
                    raise CameraError(f"{self._label()}: the camera delivered {im.format}, not a JPEG")
                width, height = im.size
        except OSError as e:
            raise CameraError(f"{self._label()}: the encoded frame is not a readable JPEG: {e}") from e
        extra = {k: v for k in EXTRA_METADATA if (v := _number(metadata.get(k))) is not None}
        return Frame(
            jpeg=jpeg,
            width=width,
            height=height,
            sensor=self.sensor,
            exposure_us=_positive(metadata.get("ExposureTime")),
            analogue_gain=_positive(metadata.get("AnalogueGain")),
            extra=extra,
        )

    # -- helpers -------------------------------------------------------------------------

    def _label(self) -> str:
        model = f" ({self.model})" if self.model else ""
        return f"picamera2 camera {self.index}{model}"

    def _call(self, what: str, fn: Callable[[], T], deadline: float) -> T:
        """Run one step against the camera until ``deadline``; turn every failure into a CameraError."""
        try:
            return _run_bounded(fn, _remaining(deadline), f"picamera2-{what.replace(' ', '-')}")
        except (CameraError, FlashError):
            raise
        except (_Timeout, TimeoutError):
            self.timeouts += 1
            raise CameraError(
                f"{self._label()}: camera did not answer within {self.config.capture_timeout:g}s "
                f"(capture_timeout) trying to {what}; it is closed and the next capture reopens it. "
                "If this repeats, check the ribbon cable and the power supply, and run "
                f"{_LIST_CAMERAS}"
            ) from None
        except Exception as e:  # picamera2/libcamera raise RuntimeError, ValueError, OSError...
            raise CameraError(f"{self._label()}: could not {what}: {type(e).__name__}: {e}") from e
