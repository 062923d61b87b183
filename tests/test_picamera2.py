"""The ``picamera2`` backend against a recording fake of picamera2 0.3.25 (``tests/fake_picamera2``).

The fake is put on ``sys.path`` by the ``rig`` fixture only, and taken out of ``sys.modules``
afterwards, so every other test still sees a machine without picamera2. Nothing sleeps: a
hung camera is a Future that never completes, and the backend's own timeout ends the wait.
"""

from __future__ import annotations

import importlib
import io
import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from gpiozero.pins.mock import MockFactory
from helpers.camera_contract import CameraContract
from PIL import Image

from agent.capture.exif import read_exif
from agent.capture.pipeline import Capturer
from agent.config import ConfigError, GpioFlashConfig, Picamera2CameraConfig, config_from_mapping, load_config
from agent.errors import CameraError
from agent.hardware.camera import Camera, make_camera
from agent.hardware.camera.picamera2 import Picamera2Camera
from agent.hardware.flash import GpioFlash
from agent.hardware.sensors import FakeSensors
from agent.queue import Queue

FAKE = Path(__file__).parent / "fake_picamera2"
_FAKE_MODULES = ("picamera2", "libcamera")


def _forget_fake_modules() -> None:
    for name in [n for n in sys.modules if n.split(".")[0] in _FAKE_MODULES]:
        del sys.modules[name]


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """Install the fake picamera2 and libcamera; return the fake ``picamera2`` module."""
    _forget_fake_modules()
    monkeypatch.syspath_prepend(str(FAKE))
    module = importlib.import_module("picamera2")
    assert Path(module.__file__).is_relative_to(FAKE)
    module.reset()
    yield module
    module.rig.unhang()  # lets any worker thread still waiting for a frame finish
    _forget_fake_modules()


@pytest.fixture
def rig(fake: Any) -> Any:
    return fake.rig


def picam(**keys: Any) -> Picamera2Camera:
    """A picamera2 camera for the given config keys (small frames unless told otherwise)."""
    keys = {"width": 320, "height": 240} | keys
    camera = make_camera(Picamera2CameraConfig(type="picamera2", **keys))
    assert isinstance(camera, Picamera2Camera)
    return camera


def jpeg_size(data: bytes) -> tuple[int, int]:
    with Image.open(io.BytesIO(data)) as im:
        assert im.format == "JPEG"
        return im.size


class TestPicamera2Camera(CameraContract):
    """The shared camera contract, against the fake (camera opened for each capture)."""

    backend = "picamera2"

    @pytest.fixture(autouse=True)
    def _fake(self, rig: Any) -> None:
        self.rig = rig

    def make(self, tmp_path: Path) -> Camera:
        return picam()


class TestPicamera2CameraKeptOpen(CameraContract):
    """The shared camera contract, with the camera kept open between captures."""

    backend = "picamera2"

    @pytest.fixture(autouse=True)
    def _fake(self, rig: Any) -> None:
        self.rig = rig

    def make(self, tmp_path: Path) -> Camera:
        return picam(keep_open=True)


# -- configuration and controls ------------------------------------------------------------


def test_full_sensor_resolution_by_default(rig: Any) -> None:
    cam = make_camera(Picamera2CameraConfig(type="picamera2"))
    cam.open()
    frame = cam.capture(90)
    cam.close()
    (instance,) = rig.instances
    (still,) = instance.configurations
    assert still["main"]["size"] == (4056, 3040) and still["main"]["format"] == "BGR888"
    assert still["buffer_count"] == 1 and still["raw"] is None and still["use_case"] == "still"
    assert (frame.width, frame.height) == (4056, 3040) == jpeg_size(frame.jpeg)


def test_the_configured_size_is_used(rig: Any) -> None:
    cam = picam(width=640, height=480)
    cam.open()
    frame = cam.capture(90)
    assert rig.instances[0].configurations[0]["main"]["size"] == (640, 480)
    assert (frame.width, frame.height) == (640, 480) == jpeg_size(frame.jpeg)
    cam.close()


def test_the_jpeg_quality_goes_to_picamera2(rig: Any) -> None:
    cam = picam()
    cam.open()
    low, high = cam.capture(55), cam.capture(95)
    cam.close()
    assert [c[2] for c in rig.calls if c[0] == "save"] == [55, 95]
    assert len(low.jpeg) < len(high.jpeg)


def test_automatic_by_default_and_frames_dropped_to_settle(rig: Any) -> None:
    cam = picam(settle_frames=3)
    cam.open()
    cam.capture(90)
    cam.close()
    assert rig.count("set_controls") == 0  # nothing fixed: the camera's own AE/AWB
    assert rig.count("capture_request") == 4  # 3 settling frames, then the kept one
    assert all(r.released for r in rig.instances[0].requests)


def test_fixed_exposure_gain_and_white_balance_are_set_before_start(rig: Any) -> None:
    cam = picam(exposure=20000, analogue_gain=2.0, awb="fixed", colour_gains=[2.2, 1.6], settle_frames=5)
    cam.open()
    frame = cam.capture(90)
    cam.close()
    (instance,) = rig.instances
    assert instance.controls_set == [
        {
            "ExposureTime": 20000,
            "AnalogueGain": 2.0,
            "AeEnable": False,
            "ColourGains": (2.2, 1.6),
            "AwbEnable": False,
        }
    ]
    names = rig.names()
    assert names.index("configure") < names.index("set_controls") < names.index("start")
    assert rig.count("capture_request") == 1  # nothing automatic: nothing to settle
    assert frame.exposure_us == 20000 and frame.analogue_gain == 2.0  # as the camera reports them


def test_only_the_exposure_fixed_keeps_automatic_gain(rig: Any) -> None:
    cam = picam(exposure=8000)
    cam.open()
    frame = cam.capture(90)
    cam.close()
    assert rig.instances[0].controls_set == [{"ExposureTime": 8000}]
    assert frame.exposure_us == 8000 and frame.analogue_gain == 1.5


def test_manual_focus_sets_af_mode_and_lens_position(fake: Any, rig: Any) -> None:
    rig.cameras = [fake.imx708()]
    cam = picam(af_mode="manual", lens_position=4.5)
    cam.open()
    frame = cam.capture(90)
    cam.close()
    af_modes = importlib.import_module("libcamera").controls.AfModeEnum
    assert rig.instances[0].controls_set == [{"AfMode": af_modes.Manual, "LensPosition": 4.5}]
    assert frame.sensor == "imx708" and frame.extra["LensPosition"] == 4.5


def test_continuous_focus(fake: Any, rig: Any) -> None:
    rig.cameras = [fake.imx708()]
    cam = picam(af_mode="continuous")
    cam.open()
    cam.capture(90)
    cam.close()
    af_modes = importlib.import_module("libcamera").controls.AfModeEnum
    assert rig.instances[0].controls_set == [{"AfMode": af_modes.Continuous}]


def test_auto_focus_scans_once_each_time_the_camera_opens(
    fake: Any, rig: Any, caplog: pytest.LogCaptureFixture
) -> None:
    rig.cameras = [fake.imx708()]
    cam = picam(af_mode="auto")
    cam.open()
    cam.capture(90)
    cam.capture(90)
    assert rig.count("autofocus_cycle") == 2  # opened for each capture
    rig.af_focuses = False
    with caplog.at_level(logging.WARNING, "agent.hardware.camera.picamera2"):
        assert cam.capture(90).jpeg
    assert "autofocus did not find a focus" in caplog.text
    cam.close()


def test_focus_settings_are_ignored_with_a_warning_on_a_fixed_focus_camera(
    rig: Any, caplog: pytest.LogCaptureFixture
) -> None:
    cam = picam(af_mode="manual", lens_position=2.0)
    cam.open()
    with caplog.at_level(logging.WARNING, "agent.hardware.camera.picamera2"):
        frame = cam.capture(90)
        cam.capture(90)  # the camera is reopened for each capture: the warning comes once
    cam.close()
    assert frame.jpeg and rig.instances[0].controls_set == []
    assert "no focus motor" in caplog.text and "imx477" in caplog.text
    assert caplog.text.count("no focus motor") == 1


def test_a_control_the_camera_lacks_is_a_clear_error(fake: Any, rig: Any) -> None:
    init = fake.Picamera2.__init__

    def init_like_a_usb_camera(self: Any, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **kwargs)
        del self.camera_controls["ExposureTime"]

    cam = picam(exposure=20000)
    cam.open()
    fake.Picamera2.__init__ = init_like_a_usb_camera
    try:
        with pytest.raises(CameraError, match=r'has no ExposureTime control.*set them to "auto"'):
            cam.capture(90)
    finally:
        fake.Picamera2.__init__ = init
    assert rig.instances[-1].closed and rig.count("start") == 0
    cam.close()


# -- sensor name and metadata --------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "sensor"),
    [
        ("imx477", "imx477"),
        ("imx708_wide_noir", "imx708_wide_noir"),
        ("OV5647", "ov5647"),
        ("HD USB Cam", "hd_usb_cam"),
    ],
)
def test_the_model_names_the_sensor(fake: Any, rig: Any, model: str, sensor: str) -> None:
    rig.cameras = [fake.FakeSensor(model=model)]
    cam = picam()
    cam.open()
    assert cam.sensor == sensor
    frame = cam.capture(90)
    cam.close()
    assert frame.sensor == sensor


def test_a_configured_sensor_name_wins(rig: Any) -> None:
    cam = picam(sensor="hq_trap")
    cam.open()
    assert cam.capture(90).sensor == "hq_trap" == cam.sensor
    cam.close()


def test_metadata_fills_the_exposure_facts_and_extra(fake: Any, rig: Any) -> None:
    rig.cameras = [fake.FakeSensor(auto_exposure_us=12345, auto_gain=3.25, temperature=-4.5, lux=80.0)]
    cam = picam()
    cam.open()
    frame = cam.capture(90)
    cam.close()
    assert frame.exposure_us == 12345.0 and frame.analogue_gain == 3.25
    assert frame.extra == {"SensorTemperature": -4.5, "Lux": 80.0}


def test_missing_metadata_is_unknown(fake: Any, rig: Any) -> None:
    rig.cameras = [fake.FakeSensor(temperature=None, lux=None)]
    cam = picam()
    cam.open()
    frame = cam.capture(90)
    cam.close()
    assert frame.extra == {}


# -- opening and closing -------------------------------------------------------------------


def test_camera_opened_for_each_capture_by_default(rig: Any) -> None:
    cam = picam()
    cam.open()
    assert rig.count("init") == 0  # open() only checks the camera is there
    for _ in range(3):
        cam.capture(90)
        assert not rig.instances[-1].is_open  # released after each capture
    cam.close()
    assert rig.count("init") == rig.count("start") == rig.count("close") == 3
    assert cam.opens == 3 and cam.captures == 3


def test_keep_open_opens_once(rig: Any) -> None:
    cam = picam(keep_open=True, exposure=20000, analogue_gain=1.0, awb="fixed", colour_gains=[2, 1.5])
    cam.open()
    assert rig.count("init") == rig.count("start") == 1  # opened by open()
    for _ in range(3):
        cam.capture(90)
    assert rig.count("init") == 1 and rig.count("close") == 0 and rig.instances[0].started
    # one frame dropped per capture: it may have been exposed before the flash came on
    assert rig.count("capture_request") == 6
    cam.close()
    cam.close()
    assert rig.count("close") == 1 and rig.instances[0].closed


def test_capture_after_close_is_an_error(rig: Any) -> None:
    cam = picam()
    cam.open()
    cam.close()
    with pytest.raises(CameraError, match="capture before open"):
        cam.capture(90)


def test_a_bad_quality_is_an_error(rig: Any) -> None:
    cam = picam()
    cam.open()
    with pytest.raises(CameraError, match="quality must be 1-100"):
        cam.capture(0)
    cam.close()


# -- failures ------------------------------------------------------------------------------


@pytest.mark.parametrize("keep_open", [False, True])
def test_a_camera_that_stops_answering_times_out_and_is_reopened(rig: Any, keep_open: bool) -> None:
    cam = picam(capture_timeout=0.5, keep_open=keep_open)
    cam.open()
    cam.capture(90)
    rig.hang()
    started = time.monotonic()
    with pytest.raises(CameraError, match=r"camera did not answer within 0\.5s") as e:
        cam.capture(90)
    assert time.monotonic() - started < 5
    assert "rpicam-hello --list-cameras" in str(e.value)
    assert cam.timeouts == 1
    hung = rig.instances[-1]
    assert hung.closed and rig.count("cancel_all_and_flush") == 1
    # the next capture opens the camera afresh and works
    frame = cam.capture(90)
    assert frame.jpeg and rig.instances[-1] is not hung and cam.timeouts == 1
    cam.close()


def test_a_camera_that_hangs_while_opening_times_out(fake: Any, rig: Any) -> None:
    cam = picam(capture_timeout=0.5)
    cam.open()
    gate, closed = threading.Event(), threading.Event()
    init, close = fake.Picamera2.__init__, fake.Picamera2.close

    def stuck_init(self: Any, *args: Any, **kwargs: Any) -> None:
        gate.wait()
        init(self, *args, **kwargs)

    def close_and_tell(self: Any) -> None:
        close(self)
        closed.set()

    fake.Picamera2.__init__, fake.Picamera2.close = stuck_init, close_and_tell
    try:
        with pytest.raises(CameraError, match=r"did not answer within 0\.5s .*trying to open the camera"):
            cam.capture(90)
    finally:
        fake.Picamera2.__init__ = init
    assert cam.timeouts == 1
    gate.set()  # the camera opens late: its worker closes it rather than hold the hardware
    assert closed.wait(5)
    assert rig.instances[-1].closed
    fake.Picamera2.close = close
    assert cam.capture(90).jpeg
    cam.close()


def test_no_camera_is_a_clear_error(rig: Any) -> None:
    rig.cameras = []
    cam = picam()
    with pytest.raises(CameraError, match=r"no camera detected.*ribbon cable") as e:
        cam.open()
    assert "rpicam-hello --list-cameras" in str(e.value)
    assert rig.count("init") == 0
    with pytest.raises(CameraError, match="capture before open"):
        cam.capture(90)
    cam.close()


@pytest.mark.parametrize("legacy", [False, True])
def test_a_camera_gone_after_open_is_a_clear_error(rig: Any, legacy: bool) -> None:
    """picamera2 0.3.25 raises IndexError for a camera that is not there, older ones RuntimeError."""
    cam = picam()
    cam.open()
    rig.cameras = []
    rig.legacy_no_camera_error = legacy
    with pytest.raises(CameraError) as e:
        cam.capture(90)
    assert "rpicam-hello --list-cameras" in str(e.value)
    assert not isinstance(e.value, IndexError | RuntimeError)
    cam.close()


def test_a_camera_index_beyond_the_cameras_is_a_clear_error(rig: Any) -> None:
    cam = picam(camera_index=1)
    with pytest.raises(CameraError, match=r"camera_index = 1 but only 1 camera\(s\) detected \(0: imx477\)"):
        cam.open()


def test_a_busy_camera_is_a_clear_error(rig: Any) -> None:
    rig.busy = True
    cam = picam(keep_open=True)
    with pytest.raises(CameraError, match="another program using it") as e:
        cam.open()
    assert isinstance(e.value.__cause__, RuntimeError)
    rig.busy = False
    cam.open()
    assert cam.capture(90).jpeg
    cam.close()


@pytest.mark.parametrize(
    ("method", "error", "doing"),
    [
        ("configure", RuntimeError("Configuration failed"), "open the camera"),
        ("set_controls", RuntimeError("Control x"), "open the camera"),
        ("start", RuntimeError("Failed to start camera: Device or resource busy"), "open the camera"),
        ("capture_request", RuntimeError("Camera frontend has timed out!"), "capture a frame"),
        ("get_metadata", KeyError("ExposureTime"), "capture a frame"),
        ("save", OSError(28, "No space left on device"), "capture a frame"),
    ],
)
def test_picamera2_errors_become_camera_errors(rig: Any, method: str, error: Exception, doing: str) -> None:
    cam = picam(exposure=20000)
    cam.open()
    rig.fail(method, error)
    with pytest.raises(CameraError, match=f"picamera2 camera 0 \\(imx477\\): could not {doing}: ") as e:
        cam.capture(90)
    assert e.value.__cause__ is error
    assert rig.instances[-1].closed  # released, so the next capture can open it
    assert cam.capture(90).jpeg
    cam.close()


def test_an_error_while_closing_is_logged_not_raised(rig: Any, caplog: pytest.LogCaptureFixture) -> None:
    cam = picam(keep_open=True)
    cam.open()
    rig.fail("close", RuntimeError("release failed"))
    with caplog.at_level(logging.WARNING, "agent.hardware.camera.picamera2"):
        cam.close()
    assert "closing the camera failed: RuntimeError: release failed" in caplog.text
    cam.close()


def test_importing_the_backend_imports_neither_picamera2_nor_libcamera() -> None:
    code = (
        "import sys; import agent.hardware.camera.picamera2; "
        "print(sorted(n for n in sys.modules if n.split('.')[0] in ('picamera2', 'libcamera')))"
    )
    env = {**os.environ, "PYTHONPATH": str(FAKE)}  # even with them importable
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert out.stdout.strip() == "[]"


# -- through the capture pipeline ----------------------------------------------------------


def test_the_flash_is_on_for_the_exposure_through_the_capturer(
    rig: Any, write_config: Callable[..., Path]
) -> None:
    factory = MockFactory()
    config = load_config(write_config(), environ={})
    flash = GpioFlash(GpioFlashConfig(type="gpio", pin=23), pin_factory=factory)
    pin = factory.pin(23)
    at_exposure: list[bool] = []
    rig.on_frame.append(lambda _: at_exposure.append(bool(pin.state)))
    camera = picam(capture_timeout=0.5, settle_frames=1)
    capturer = Capturer(config, "0a1b2c3d", camera, flash, FakeSensors(), Queue(config.storage.queue_path))
    pin.clear_states()
    first = capturer.capture()
    assert first.ok and first.image is not None
    exif = read_exif((config.storage.data_dir / first.image.path).read_bytes())
    assert exif.model == "RP_imx477" and exif.exposure_us == 15000  # picamera2's own EXIF replaced
    assert at_exposure == [True, True]  # the settling frame and the kept one
    pin.assert_states([False, True, False])
    # a hung camera: the capture fails, the flash goes off, and the next capture reopens it
    rig.hang()
    pin.clear_states()
    failed = capturer.capture()
    assert failed.outcome == "failed" and "did not answer within" in (failed.error or "")
    pin.assert_states([False, True, False])
    assert capturer.capture().ok
    assert camera.timeouts == 1
    capturer.close()
    flash.close()


def test_the_flash_is_lit_after_the_camera_started_and_off_before_the_encode(
    fake: Any, rig: Any, write_config: Callable[..., Path]
) -> None:
    """With keep_open = false a capture opens, configures, starts and (Camera Module 3) focuses
    the camera, then takes the frame and encodes it: the flash is on for the frame only."""
    rig.cameras = [fake.imx708()]
    factory = MockFactory()
    config = load_config(write_config(), environ={})
    flash = GpioFlash(GpioFlashConfig(type="gpio", pin=23), pin_factory=factory)
    pin = factory.pin(23)
    timeline: list[tuple[str, bool]] = []
    rig.on_call.append(lambda call: timeline.append((call[0], bool(pin.state))))
    # a flash trap's settings: exposure, gain and white balance fixed, so no frame to settle
    camera = picam(exposure=20000, analogue_gain=1.0, awb="fixed", colour_gains=[2.0, 1.6], af_mode="auto")
    capturer = Capturer(config, "0a1b2c3d", camera, flash, FakeSensors(), Queue(config.storage.queue_path))
    pin.clear_states()
    result = capturer.capture()
    assert result.ok and result.flash_on_s is not None
    assert timeline == [
        ("global_camera_info", False),  # open(): is the camera there?
        ("init", False),
        ("global_camera_info", False),
        ("configure", False),
        ("set_controls", False),
        ("start", False),
        ("set_controls", False),  # the autofocus trigger
        ("autofocus_cycle", False),
        ("capture_request", True),  # the one frame, under the flash
        ("save", False),  # the JPEG encode, in the dark
        ("release", False),
        ("stop", False),
        ("close", False),
    ]
    pin.assert_states([False, True, False])
    capturer.close()
    flash.close()


# -- configuration -------------------------------------------------------------------------


def _problems(**camera: Any) -> list[str]:
    with pytest.raises(ConfigError) as e:
        config_from_mapping({"camera": {"type": "picamera2", **camera}}, environ={})
    return e.value.problems


def test_config_defaults() -> None:
    cfg = config_from_mapping({"camera": {"type": "picamera2"}}, environ={}).camera
    assert isinstance(cfg, Picamera2CameraConfig)
    assert (cfg.exposure, cfg.analogue_gain, cfg.awb, cfg.af_mode) == ("auto", "auto", "auto", None)
    assert (cfg.keep_open, cfg.capture_timeout, cfg.width, cfg.sensor) == (False, 10.0, None, None)


def test_config_fixed_values() -> None:
    cfg = config_from_mapping(
        {
            "camera": {
                "type": "picamera2",
                "exposure": 20000,
                "analogue_gain": 2,
                "awb": "fixed",
                "colour_gains": [2.0, 1.5],
                "af_mode": "manual",
                "lens_position": 3.0,
                "capture_timeout": "30s",
                "keep_open": True,
            }
        },
        environ={},
    ).camera
    assert isinstance(cfg, Picamera2CameraConfig)
    assert cfg.exposure == 20000 and cfg.analogue_gain == 2.0 and cfg.colour_gains == (2.0, 1.5)
    assert cfg.capture_timeout == 30.0 and cfg.keep_open


@pytest.mark.parametrize(
    ("keys", "problem"),
    [
        ({"exposure": "fast"}, 'camera.exposure: must be "auto" or a fixed exposure time in microseconds'),
        ({"exposure": 0}, "camera.exposure: a fixed exposure must be 1 to 700000000 microseconds"),
        ({"exposure": True}, 'camera.exposure: must be "auto" or'),
        ({"analogue_gain": 0.5}, "camera.analogue_gain: a fixed analogue gain must be 1.0 to 64.0, got 0.5"),
        ({"awb": "fixed"}, 'camera: awb = "fixed" needs colour_gains = [red, blue]'),
        ({"colour_gains": [2, 1.5]}, 'camera: colour_gains needs awb = "fixed"'),
        ({"awb": "fixed", "colour_gains": [0, 1]}, "camera.colour_gains: must be [red, blue] gains"),
        ({"af_mode": "manual"}, 'camera: af_mode = "manual" needs lens_position'),
        ({"lens_position": 2.0}, 'camera: lens_position needs af_mode = "manual"'),
        ({"af_mode": "manual", "lens_position": 40}, "camera.lens_position: must be 0 to 32 dioptres"),
        ({"af_mode": "sharp"}, "camera.af_mode: Input should be 'manual', 'auto' or 'continuous'"),
        ({"width": 641, "height": 480}, "camera.width: must be an even number of pixels"),
        ({"width": 640}, "camera: width and height go together"),
        ({"capture_timeout": "soon"}, "camera.capture_timeout: must be a duration like 30s"),
        ({"capture_timeout": 0}, "camera.capture_timeout: must be a duration above zero"),
        ({"exposure": 12_000_000}, "camera: a fixed exposure of 12s does not fit in capture_timeout (10s)"),
        ({"sensor": "HQ cam!"}, "camera.sensor: must be 1-37 letters, digits or _"),
        ({"flash": 1}, "camera.flash: unknown key"),
    ],
)
def test_config_errors_are_clear(keys: dict[str, Any], problem: str) -> None:
    problems = _problems(**keys)
    assert any(p.startswith(problem) for p in problems), problems


def test_the_web_pages_lens_position_focuses_a_camera_module_3(fake: Any, rig: Any) -> None:
    rig.cameras = [fake.imx708()]
    cam = picam(af_mode="continuous")
    cam.open()
    assert cam.set_lens_position(7.25)  # before any start: from the next one on
    frame = cam.capture(90)
    af_modes = importlib.import_module("libcamera").controls.AfModeEnum
    assert rig.instances[0].controls_set == [{"AfMode": af_modes.Manual, "LensPosition": 7.25}]
    assert frame.extra["LensPosition"] == 7.25 and cam.lens_position == 7.25
    cam.close()


def test_a_fixed_focus_camera_refuses_a_lens_position(rig: Any) -> None:
    cam = picam()
    cam.open()
    cam.capture(90)
    assert cam.has_focus_motor is False and cam.set_lens_position(3.0) is False
    cam.close()
