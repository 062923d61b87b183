"""The hardware and detector seams on one registry (agent/registry.py): every backend's settings
load without numpy, OpenCV or picamera2 (the trap's core install), the missing library is named
only when such a backend is made, every backend module can be imported first, and errors keep
their key paths."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from stickypi_spec import REAL_IMAGES

from agent import registry
from agent.config import ConfigError, MemoryCameraConfig, config_from_mapping, load_config
from agent.hardware.camera import CameraSettings
from agent.hardware.flash import FlashSettings
from agent.hardware.sensors import SensorsSettings

REPO = Path(__file__).resolve().parents[1]
HELPER = REPO / "tests" / "helpers" / "seam_imports.py"
SEAMS = ("camera", "flash", "sensors", "detector")


def every_backend(*missing: str) -> dict[str, object]:
    args = [sys.executable, str(HELPER), str(REAL_IMAGES)] + ([",".join(missing)] if missing else [])
    env = {**os.environ, "GPIOZERO_PIN_FACTORY": "mock"}
    res = subprocess.run(args, capture_output=True, text=True, timeout=120, cwd=REPO, env=env)
    assert res.returncode == 0, res.stderr
    result: dict[str, object] = json.loads(res.stdout)
    return result


def test_loading_a_config_with_every_backend_imports_no_heavy_library() -> None:
    result = every_backend()
    assert result["imported"] == []  # numpy, cv2, picamera2, libcamera, onnxruntime, torch
    assert result["loaded"] == [f"{seam}/{name}" for seam in SEAMS for name in registry.backends(seam)]
    assert set(result["made"].values()) == {"ok"}  # type: ignore[attr-defined]


def test_the_core_install_loads_every_config_and_names_the_missing_library_when_made() -> None:
    result = every_backend("numpy", "cv2")
    made = result["made"]
    assert isinstance(made, dict)
    assert result["imported"] == []
    assert len(result["loaded"]) == sum(len(registry.backends(seam)) for seam in SEAMS)  # type: ignore[arg-type]
    assert made.pop("camera/synthetic").startswith("CameraError: camera type 'synthetic' needs numpy")
    for name in ("builtin", "learned", "memory"):
        message = made.pop(f"detector/{name}")
        assert message.startswith(f"DetectorError: detector type '{name}' needs OpenCV and NumPy")
        assert "sudo apt install python3-opencv python3-numpy" in message
    assert set(made.values()) == {"ok"}  # replay, memory camera, every flash and sensors


@pytest.mark.parametrize("module", [m for seam in (*SEAMS, "sink") for m in registry.BUILTIN[seam]])
def test_every_backend_module_can_be_imported_before_the_config(module: str) -> None:
    """A backend imported first (a test, a plugin) must not catch the config half-built."""
    code = f"import {module}, agent.config; agent.config.Config()"
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=REPO)
    assert res.returncode == 0, res.stderr


@pytest.mark.parametrize(
    ("seam", "base"), [("camera", CameraSettings), ("flash", FlashSettings), ("sensors", SensorsSettings)]
)
def test_each_backends_settings_build_on_its_seams_base(seam: str, base: type) -> None:
    for backend in registry.backends(seam).values():
        assert issubclass(backend.settings, base), backend.name


@pytest.mark.parametrize(
    ("data", "error"),
    [
        (
            {"camera": {"type": "synthetic", "width": 1}},
            "camera.width: Input should be greater than or equal",
        ),
        ({"camera": {"type": "memory", "lens": 1}}, "camera.lens: unknown key"),
        ({"camera": {"type": "polaroid"}}, "camera: unknown type 'polaroid'; expected one of"),
        ({"flash": {"type": "gpio", "pin": 40}}, "flash.pin: Input should be less than or equal to 27"),
        ({"sensors": {"type": "hat", "battery_vref": 9}}, "sensors.battery_vref: Input should be less"),
        ({"detector": {"type": "builtin", "max_side": 10}}, "detector.max_side: Input should be greater"),
        ({"detector": {"type": "memory", "outlines": [[[1, 1]]]}}, "detector.outlines: an outline needs 3"),
        (
            {"flash": {"type": "gpio", "pin": 22}, "button": {"enabled": True}},
            "button.pin: GPIO 22 is already",
        ),
    ],
)
def test_errors_name_their_key_path(data: dict[str, object], error: str) -> None:
    with pytest.raises(ConfigError) as e:
        config_from_mapping(data, environ={})
    assert error in str(e.value)


def test_the_environment_chooses_any_registered_backend() -> None:
    config = config_from_mapping({}, environ={"STICKY_AGENT_CAMERA": "memory"})
    assert config.camera == MemoryCameraConfig(type="memory")
    defaults = config_from_mapping({}, environ={})
    assert (defaults.camera.type, defaults.flash.type, defaults.sensors.type, defaults.detector.type) == (
        "synthetic",
        "none",
        "none",
        "none",
    )


def test_a_capture_through_the_pipeline_with_the_in_memory_backends(
    write_config: Callable[..., Path],
) -> None:
    """The in-memory backends make a whole trap: the camera's film, the flash's record and the
    sensors' readings meet in one capture, and closing the pipeline closes each."""
    from agent.hardware.camera import memory as memory_camera
    from agent.hardware.flash import RecordingFlash
    from agent.hardware.sensors import FakeSensors
    from agent.service import Pipeline

    config = load_config(
        write_config(
            camera={"type": "memory", "film": "pipeline", "width": 320, "height": 240},
            flash={"type": "memory"},
            sensors={"type": "fake", "temperature": 19.5, "battery": 64},
        ),
        environ={},
    )
    pipeline = Pipeline.build(config)
    result = pipeline.capturer.capture(manual=True)
    assert result.ok
    flash, sensors = pipeline.capturer.flash, pipeline.capturer.sensors
    assert isinstance(flash, RecordingFlash) and isinstance(sensors, FakeSensors)
    flash.assert_states([False, True, False])  # lit once, around the exposure
    assert sensors.reads == 1
    pipeline.close()
    assert flash.closed and sensors.closed
    assert memory_camera.film("pipeline").events == ["open", "capture 90", "close"]
    memory_camera.forget("pipeline")


def test_loading_the_config_does_not_load_the_http_stack() -> None:
    """``stickyctl status`` loads the config on a Pi Zero: requests and urllib3 load only when a
    sink is made."""
    code = (
        "import sys, agent.config\n"
        "assert 'requests' not in sys.modules and 'urllib3' not in sys.modules, 'http stack loaded'\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
