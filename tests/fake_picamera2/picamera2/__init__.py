"""A fake ``picamera2`` for tests off a Pi: a recording stand-in for the real camera.

It mirrors the API surface of **picamera2 0.3.25** (raspberrypi/picamera2,
``picamera2/picamera2.py``, ``request.py`` and ``job.py``; Raspberry Pi OS Bookworm's
``python3-picamera2``) that ``agent.hardware.camera.picamera2`` uses, with the same signatures, defaults,
return values and exceptions:

- ``Picamera2.global_camera_info()``: one dict per camera (``Model``, ``Location``,
  ``Rotation``, ``Id``, ``Num``); ``[]`` when none is plugged in.
- ``Picamera2(camera_num=0, verbose_console=None, tuning=None, allocator=None)``: like 0.3.25
  it looks ``global_camera_info()[camera_num]["Num"]`` up first, so with no camera it raises
  **IndexError**; picamera2 before that raised ``RuntimeError("Camera __init__ sequence did not
  complete.")`` (set ``rig.legacy_no_camera_error``), as it still does when the camera cannot
  be acquired (``rig.busy``).
- ``camera_properties`` (``Model``, ``PixelArraySize``...), ``camera_controls`` (name ->
  ``(min, max, default)``; ``AfMode``/``LensPosition`` only on a camera with a focus motor),
  ``sensor_resolution``, ``options`` (``"quality"`` is the JPEG quality ``save`` uses).
- ``create_still_configuration(main={}, lores=None, raw={}, ..., buffer_count=1, controls={},
  ...)`` -> dict (main defaults to ``BGR888`` at ``sensor_resolution``; bad keys raise
  ValueError), ``configure`` (RuntimeError while started, for odd sizes or bad formats),
  ``set_controls`` (RuntimeError ``Control X is not advertised by libcamera``), ``start``,
  ``stop``, ``close`` (both idempotent), ``cancel_all_and_flush``, ``autofocus_cycle``.
- ``capture_request(wait=None, signal_function=None, flush=None)``: the job is a
  ``concurrent.futures.Future``, waited for as ``dispatch_functions`` does: ``wait=None``/``True``
  forever, a number of seconds then ``TimeoutError``, ``False`` returns the job;
  ``cancel_all_and_flush`` makes a waiting one raise ``CancelledError``.
- ``CompletedRequest.get_metadata()`` (``ExposureTime``, ``AnalogueGain``, ``DigitalGain``,
  ``ColourGains``, ``SensorTemperature``, ``Lux``, ``SensorTimestamp``, ``FrameDuration``; ``AfState`` and
  ``LensPosition`` with a focus motor; fixed controls are honoured), ``save(name, file_output,
  format=None, exif_data=None)`` (a real JPEG made by Pillow at the stream's size, at
  ``options["quality"]``, with the EXIF picamera2 writes), ``release()``.

Like gpiozero's MockPin it **records** what happened: ``rig.calls`` lists every call on every
instance in order (``("init", 0)``, ``("configure", {...})``, ``("set_controls", {...})``,
``("start",)``, ``("capture_request",)``, ``("save", "main", 90)``, ``("close",)``...), and each
instance keeps ``configurations``, ``controls_set``, ``controls`` (current), ``requests``,
``closed``. ``rig.instances`` holds every ``Picamera2`` made.

It **simulates** the hardware through ``rig`` (reset with ``reset()``):

- ``rig.cameras``: the cameras plugged in (:class:`FakeSensor`); ``[]`` is none.
- ``rig.hang(n=1)``: the next ``n`` frames never come (a loose ribbon cable) until
  ``rig.unhang()``; nothing sleeps, the waits are on Futures.
- ``rig.fail(method, error)``: the next call of ``method`` (``"__init__"``, ``"configure"``,
  ``"set_controls"``, ``"start"``, ``"capture_request"``, ``"get_metadata"``, ``"save"``,
  ``"close"``) raises ``error``.
- ``rig.busy``: the camera is held by another process.
- ``rig.on_frame``: callables run with the instance as each frame is exposed (e.g. to look at
  the flash pin).
- ``rig.on_call``: callables run with each call as it is recorded (e.g. to put the flash pin's
  state beside every camera step).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import CancelledError, Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import libcamera
import piexif
from libcamera import controls as lc_controls
from PIL import Image, ImageDraw

__version__ = "0.3.25 (fake)"

_VALID_STREAM_KEYS = ("format", "size", "stride", "preserve_ar")
_RGB_FORMATS = ("BGR888", "RGB888", "XBGR8888", "XRGB8888")
_YUV_FORMATS = ("YUV420", "YVU420")


@dataclass
class FakeSensor:
    """One camera plugged into the fake Pi."""

    model: str = "imx477"
    resolution: tuple[int, int] = (4056, 3040)
    autofocus: bool = False
    id: str = "/base/soc/i2c0mux/i2c@1/imx477@1a"
    #: What the camera's algorithms settle on when exposure, gain and AWB are automatic.
    auto_exposure_us: int = 15000
    auto_gain: float = 1.5
    auto_colour_gains: tuple[float, float] = (2.1, 1.7)
    temperature: float | None = 31.0
    lux: float | None = 420.0


def imx477() -> FakeSensor:
    """The HQ camera (fixed focus)."""
    return FakeSensor()


def imx708() -> FakeSensor:
    """Camera Module 3 (focus motor)."""
    return FakeSensor(
        model="imx708",
        resolution=(4608, 2592),
        autofocus=True,
        id="/base/soc/i2c0mux/i2c@1/imx708@1a",
    )


@dataclass
class Rig:
    """The fake hardware and the record of what was done to it."""

    cameras: list[FakeSensor] = field(default_factory=lambda: [imx477()])
    calls: list[tuple[Any, ...]] = field(default_factory=list)
    instances: list[Picamera2] = field(default_factory=list)
    legacy_no_camera_error: bool = False
    busy: bool = False
    af_focuses: bool = True
    on_frame: list[Callable[[Picamera2], None]] = field(default_factory=list)
    on_call: list[Callable[[tuple[Any, ...]], None]] = field(default_factory=list)
    _hangs: int = 0
    _failures: dict[str, list[BaseException]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, *call: Any) -> None:
        with self._lock:
            self.calls.append(call)
        for hook in self.on_call:
            hook(call)

    def count(self, name: str) -> int:
        """How many calls named ``name`` were recorded."""
        return sum(1 for c in self.calls if c[0] == name)

    def names(self) -> list[str]:
        """The recorded calls' names, in order."""
        return [c[0] for c in self.calls]

    def hang(self, frames: int = 1) -> None:
        """Make the next ``frames`` frames never arrive (until ``unhang``)."""
        self._hangs += frames

    def unhang(self) -> None:
        """Let every frame that is being waited for arrive, and stop hanging."""
        self._hangs = 0
        for cam in self.instances:
            cam._complete_pending()

    def fail(self, method: str, error: BaseException) -> None:
        """Make the next call of ``method`` raise ``error``."""
        self._failures.setdefault(method, []).append(error)

    def _maybe_fail(self, method: str) -> None:
        errors = self._failures.get(method)
        if errors:
            raise errors.pop(0)

    def _take_hang(self) -> bool:
        with self._lock:
            if self._hangs > 0:
                self._hangs -= 1
                return True
            return False


rig = Rig()


def reset() -> Rig:
    """Forget everything: one HQ camera plugged in, nothing recorded. Return ``rig``."""
    rig.unhang()
    rig.__init__()
    return rig


class CompletedRequest:
    """A frame the camera delivered, held until ``release()``."""

    def __init__(self, picam2: Picamera2, metadata: dict[str, Any], frame: int) -> None:
        self.picam2 = picam2
        self.config = {k: (dict(v) if isinstance(v, dict) else v) for k, v in picam2.camera_config.items()}
        self.metadata = metadata
        self.frame = frame
        self.released = False

    def get_metadata(self) -> dict[str, Any]:
        rig._maybe_fail("get_metadata")
        return dict(self.metadata)

    def make_image(self, name: str, width: int | None = None, height: int | None = None) -> Image.Image:
        if self.released:
            raise RuntimeError("Request has been released")  # the buffer is back with libcamera
        stream = self.config.get(name)
        if stream is None:
            raise RuntimeError(f'Stream "{name}" is not defined')
        w, h = stream["size"]
        img = Image.new("RGB", (w, h), (225, 205, 45))  # a yellow card
        draw = ImageDraw.Draw(img)
        x, y = (self.frame * 37) % max(1, w - 8), (self.frame * 23) % max(1, h - 8)
        draw.ellipse((x, y, x + max(4, w // 40), y + max(2, h // 60)), fill=(40, 30, 20))  # an insect
        if (width, height) != (None, None):
            img = img.resize((width or w, height or h))
        return img

    def save(self, name: str, file_output: Any, format: str | None = None, exif_data: Any = None) -> None:
        rig._maybe_fail("save")
        img = self.make_image(name)
        if isinstance(format, str):
            format_str = format.lower()
        elif isinstance(file_output, str):
            format_str = file_output.split(".")[-1].lower()
        elif isinstance(file_output, Path):
            format_str = file_output.suffix.lower()
        else:
            raise RuntimeError("Cannot determine format to save")
        quality = self.picam2.options.get("quality", 90)
        keywords: dict[str, Any] = {"compress_level": 1, "quality": quality, "format": format}
        if (
            format_str in ("jpg", "jpeg")
            and "AnalogueGain" in self.metadata
            and "DigitalGain" in self.metadata
        ):
            zero = {
                piexif.ImageIFD.Make: "Raspberry Pi",
                piexif.ImageIFD.Model: self.picam2.camera.id,
                piexif.ImageIFD.Software: "Picamera2",
            }
            total_gain = self.metadata["AnalogueGain"] * self.metadata["DigitalGain"]
            exif = {
                piexif.ExifIFD.ExposureTime: (self.metadata["ExposureTime"], 1000000),
                piexif.ExifIFD.ISOSpeedRatings: int(total_gain * 100),
            }
            keywords["exif"] = piexif.dump({"0th": zero, "Exif": exif} | (exif_data or {}))
        img.save(file_output, **keywords)
        rig.record("save", name, quality)

    def release(self) -> None:
        self.released = True
        rig.record("release")


class Picamera2:
    """The fake camera: see the module docstring."""

    @staticmethod
    def global_camera_info() -> list[dict[str, Any]]:
        rig.record("global_camera_info")
        return [
            {"Model": s.model, "Location": 2, "Rotation": 180, "Id": s.id, "Num": i}
            for i, s in enumerate(rig.cameras)
        ]

    def __init__(
        self, camera_num: int = 0, verbose_console: Any = None, tuning: Any = None, allocator: Any = None
    ) -> None:
        self._preview = None
        self.is_open = False
        self.started = False
        self.closed = False
        rig.record("init", camera_num)
        if rig.legacy_no_camera_error and not rig.cameras:
            raise RuntimeError("Camera __init__ sequence did not complete.")
        camera_num = self.global_camera_info()[camera_num]["Num"]  # IndexError: no such camera
        rig._maybe_fail("__init__")
        if rig.busy:  # camera.acquire() failed: picamera2 wraps it
            raise RuntimeError("Camera __init__ sequence did not complete.")
        self.camera_idx = camera_num
        self.camera = rig.cameras[camera_num]
        sensor = self.camera
        self.is_open = True
        self.sensor_resolution = sensor.resolution
        self.sensor_format = "SRGGB12_CSI2P"
        self.camera_properties: dict[str, Any] = {
            "Model": sensor.model,
            "PixelArraySize": sensor.resolution,
            "ColorFilterArrangement": 0,
            "Location": 2,
            "Rotation": 180,
        }
        self.camera_controls: dict[str, tuple[Any, Any, Any]] = {
            "AeEnable": (False, True, None),
            "ExposureTime": (1, 694_422_939, None),
            "AnalogueGain": (1.0, 22.26, None),
            "AwbEnable": (False, True, None),
            "ColourGains": (0.0, 32.0, None),
            "FrameDurationLimits": (100, 1_000_000_000, None),
            "NoiseReductionMode": (0, 4, 0),
            "ScalerCrop": ((0, 0, 64, 64), (0, 0, *sensor.resolution), (0, 0, *sensor.resolution)),
        }
        if sensor.autofocus:
            self.camera_controls |= {
                "AfMode": (0, 2, 0),
                "AfTrigger": (0, 1, 0),
                "LensPosition": (0.0, 15.0, 1.0),
            }
        self.camera_config: dict[str, Any] | None = None
        self.options: dict[str, Any] = {}
        #: Recorded: every configuration applied, every set_controls dict, the current controls.
        self.configurations: list[dict[str, Any]] = []
        self.controls_set: list[dict[str, Any]] = []
        self.controls: dict[str, Any] = {}
        self.requests: list[CompletedRequest] = []
        self._pending: list[Future[CompletedRequest]] = []
        self._frames = 0
        self._lock = threading.Lock()
        rig.instances.append(self)

    def __enter__(self) -> Picamera2:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @staticmethod
    def _make_initial_stream_config(
        stream_config: dict[str, Any], updates: dict[str, Any] | None
    ) -> dict[str, Any] | None:
        if updates is None:
            return None
        for key, value in updates.items():
            if key not in _VALID_STREAM_KEYS:
                raise ValueError(f"Bad key {key!r}: valid stream configuration keys are {_VALID_STREAM_KEYS}")
            stream_config[key] = value
        return stream_config

    def create_still_configuration(
        self,
        main: dict[str, Any] = {},  # noqa: B006 (picamera2's signature)
        lores: dict[str, Any] | None = None,
        raw: dict[str, Any] | None = {},  # noqa: B006
        transform: Any = libcamera.Transform(),  # noqa: B008
        colour_space: Any = libcamera.ColorSpace.Sycc(),  # noqa: B008
        buffer_count: int = 1,
        controls: dict[str, Any] = {},  # noqa: B006
        display: str | None = None,
        encode: str | None = None,
        queue: bool = True,
        sensor: dict[str, Any] | None = {},  # noqa: B006
        use_case: str = "still",
    ) -> dict[str, Any]:
        if not self.is_open:
            raise RuntimeError("Camera not opened")
        main_cfg = self._make_initial_stream_config(
            {"format": "BGR888", "size": self.sensor_resolution, "preserve_ar": True}, main
        )
        assert main_cfg is not None
        w, h = main_cfg["size"]
        main_cfg["size"] = (w - w % 2, h - h % 2)  # align_stream(optimal=False)
        lores_cfg = self._make_initial_stream_config(
            {"format": "YUV420", "size": main_cfg["size"], "preserve_ar": False}, lores
        )
        raw_cfg = self._make_initial_stream_config(
            {"format": self.sensor_format, "size": main_cfg["size"]}, raw
        )
        controls = {
            "NoiseReductionMode": lc_controls.draft.NoiseReductionModeEnum.HighQuality,
            "FrameDurationLimits": (100, 1000000 * 1000),
        } | controls
        return {
            "use_case": use_case,
            "transform": transform,
            "colour_space": colour_space,
            "buffer_count": buffer_count,
            "queue": queue,
            "main": main_cfg,
            "lores": lores_cfg,
            "raw": raw_cfg,
            "controls": controls,
            "sensor": sensor,
            "display": display,
            "encode": encode,
        }

    def configure(self, camera_config: Any = None) -> None:
        rig.record("configure", camera_config)
        rig._maybe_fail("configure")
        if self.started:
            raise RuntimeError("Camera must be stopped before configuring")
        if not isinstance(camera_config, dict):
            raise RuntimeError("the fake picamera2 only takes configuration dicts")
        for name in ("main", "lores", "raw"):
            stream = camera_config.get(name)
            if stream is None:
                continue
            size = stream["size"]
            if not isinstance(size, tuple) or len(size) != 2:
                raise RuntimeError(f"size in {name} stream should be (width, height)")
            if size[0] % 2 or size[1] % 2:
                raise RuntimeError("width and height should be even")
            if name != "raw" and stream["format"] not in _RGB_FORMATS + _YUV_FORMATS:
                raise RuntimeError(f"Bad format {stream['format']} in stream {name}")
        config = {k: (dict(v) if isinstance(v, dict) else v) for k, v in camera_config.items()}
        w, _ = config["main"]["size"]
        config["main"]["stride"] = w * 3
        self.camera_config = config
        self.configurations.append(config)
        self.controls = dict(config["controls"])

    def set_controls(self, controls: dict[str, Any]) -> None:
        rig.record("set_controls", dict(controls))
        rig._maybe_fail("set_controls")
        for name in controls:
            if name not in self.camera_controls:
                raise RuntimeError(f"Control {name} is not advertised by libcamera")
        self.controls_set.append(dict(controls))
        self.controls.update(controls)

    def start(self, config: Any = None, show_preview: Any = False) -> None:
        rig.record("start")
        rig._maybe_fail("start")
        if config is not None:
            self.configure(config)
        if self.camera_config is None:
            raise RuntimeError("Camera has not been configured")
        self.started = True

    def stop(self) -> None:
        if not self.started:
            return
        rig.record("stop")
        self.started = False

    def close(self) -> None:
        if not self.is_open:
            return
        rig._maybe_fail("close")
        self.stop()
        rig.record("close")
        self.is_open = False
        self.closed = True
        self.camera_config = None

    def cancel_all_and_flush(self) -> None:
        rig.record("cancel_all_and_flush")
        with self._lock:
            pending, self._pending = self._pending, []
        for job in pending:
            if not job.done():
                job.set_exception(CancelledError())

    def _next_request(self) -> CompletedRequest:
        """Expose and deliver one frame."""
        self._frames += 1
        for hook in rig.on_frame:
            hook(self)
        sensor, c = self.camera, self.controls
        metadata: dict[str, Any] = {
            "SensorTimestamp": 1_700_000_000_000_000_000 + self._frames * 100_000_000,
            "ExposureTime": int(c.get("ExposureTime") or sensor.auto_exposure_us),
            "AnalogueGain": float(c.get("AnalogueGain") or sensor.auto_gain),
            "DigitalGain": 1.0,
            "ColourGains": tuple(c.get("ColourGains") or sensor.auto_colour_gains),
            "FrameDuration": 100_000,
        }
        if sensor.temperature is not None:
            metadata["SensorTemperature"] = sensor.temperature
        if sensor.lux is not None:
            metadata["Lux"] = sensor.lux
        if sensor.autofocus:
            metadata["AfState"] = lc_controls.AfStateEnum.Focused
            metadata["LensPosition"] = float(c.get("LensPosition", 1.0))
        request = CompletedRequest(self, metadata, self._frames)
        self.requests.append(request)
        return request

    def _complete_pending(self) -> None:
        with self._lock:
            pending, self._pending = self._pending, []
        for job in pending:
            if job.done():
                continue
            if self.is_open and self.camera_config is not None:
                job.set_result(self._next_request())
            else:
                job.set_exception(CancelledError())

    def _dispatch(self, job: Future[Any], wait: Any, signal_function: Any) -> Any:
        """Wait for ``job`` as picamera2's ``dispatch_functions`` does."""
        if wait is None:
            wait = signal_function is None
        timeout = None if wait is True else wait
        return job.result(timeout=timeout) if wait else job

    def capture_request(self, wait: Any = None, signal_function: Any = None, flush: Any = None) -> Any:
        rig.record("capture_request")
        rig._maybe_fail("capture_request")
        job: Future[CompletedRequest] = Future()
        job.set_running_or_notify_cancel()
        if not self.started or rig._take_hang():  # no frames: the job waits in the queue
            with self._lock:
                self._pending.append(job)
        else:
            job.set_result(self._next_request())
        return self._dispatch(job, wait, signal_function)

    def autofocus_cycle(self, wait: Any = None, signal_function: Any = None) -> Any:
        self.set_controls(
            {"AfMode": lc_controls.AfModeEnum.Auto, "AfTrigger": lc_controls.AfTriggerEnum.Start}
        )
        rig.record("autofocus_cycle")
        job: Future[bool] = Future()
        job.set_running_or_notify_cancel()
        job.set_result(rig.af_focuses)
        return self._dispatch(job, wait, signal_function)
