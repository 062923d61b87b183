"""Doctor checks of the hardware: camera, flash, button, status LED, sensors."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from typing import Any

from agent import humanize
from agent.config import Config, GpioFlashConfig, Picamera2CameraConfig
from agent.doctor.checks import CAMERA_HINT, Check, _one_line, fail, ok, warn
from agent.doctor.local import _last_capture
from agent.errors import (
    StickyAgentError,
)

#: Sensors with a focus motor: Camera Module 3 (imx708, and its _wide/_noir variants).
AUTOFOCUS_SENSORS = ("imx708",)
#: The card is 10-20 cm from the lens: in dioptres (1 / metres), 5 to 10; 15 cm is ~6.7.
CARD_DIOPTRES = (4.0, 12.0)
FOCUS_HINT = (
    'set [camera] af_mode = "manual" and lens_position = 6.7 (dioptres = 1 / distance in metres: '
    "6.7 focuses at 15 cm, 10 at 10 cm, 5 at 20 cm; measure the card's distance), as in "
    "config/pi.toml"
)


def focus_problem(config: Config, sensor: str | None) -> str | None:
    """Given the config and the camera's sensor name, return why a sticky card 10-20 cm away
    may be out of focus, or None (not an autofocus camera, or focus set for a card)."""
    cam = config.camera
    if not isinstance(cam, Picamera2CameraConfig) or sensor is None:
        return None
    if not sensor.lower().startswith(AUTOFOCUS_SENSORS):
        return None
    if cam.af_mode != "manual" or cam.lens_position is None:
        mode = f'af_mode = "{cam.af_mode}"' if cam.af_mode else "no af_mode (the camera's default)"
        return (
            f"{sensor} (Camera Module 3) has autofocus and {mode}: a card 10-20 cm away needs a manual focus"
        )
    low, high = CARD_DIOPTRES
    if not low <= cam.lens_position <= high:
        where = "infinity" if cam.lens_position == 0 else f"{100 / cam.lens_position:.0f} cm"
        return (
            f"lens_position = {cam.lens_position:g} dioptres focuses at {where}, "
            "not on a card 10-20 cm away (5 to 10 dioptres)"
        )
    return None


def _with_focus(config: Config, sensor: str | None, check: Check) -> Check:
    """Turn an OK camera check into a WARN if the focus is not set for the card."""
    problem = focus_problem(config, sensor)
    if problem is None or check.status != "OK":
        return check
    return warn(check.check, f"{check.detail}; {problem}", FOCUS_HINT)


def _last_sensor(config: Config) -> str | None:
    """The sensor named in the latest image's EXIF model (``RP_imx708``), if any."""
    import json

    from sqlalchemy import select

    from agent.queue import Image, Queue

    if config.storage.queue_path.exists():
        queue = Queue(config.storage.queue_path, create=False)
        try:
            with queue.session() as s:
                latest = s.scalars(select(Image).order_by(Image.datetime.desc()).limit(1)).first()
                model = json.loads(latest.image_metadata).get("model") if latest else None
        finally:
            queue.close()
        if isinstance(model, str):
            return model.removeprefix("RP_")
    return None


def check_camera(config: Config, agent_pid: int | None) -> Check:
    if agent_pid is None:
        return _test_frame(config)
    sensor = getattr(config.camera, "sensor", None)
    if sensor is None:
        with contextlib.suppress(StickyAgentError, OSError, ValueError):
            sensor = _last_sensor(config)
    return _with_focus(config, sensor, _held_camera(config, agent_pid))


def _held_camera(config: Config, agent_pid: int) -> Check:
    """The camera the running agent holds: judged by its last capture."""
    try:
        last = _last_capture(config)
    except (StickyAgentError, OSError) as e:
        return warn("camera", f"held by the running agent (pid {agent_pid}); its queue: {_one_line(e)}")
    if last is None:
        return ok("camera", f"held by the running agent (pid {agent_pid}); no capture yet")
    outcome, error, when = last
    if outcome == "ok":
        return ok("camera", f"held by the running agent (pid {agent_pid}); last capture {when} ok")
    return fail(
        "camera",
        f"held by the running agent (pid {agent_pid}); last capture {when} {outcome}: {error}",
        "see stickyctl status and journalctl -u sticky-agent; to test the camera here, stop the "
        "agent first (sudo systemctl stop sticky-agent). " + CAMERA_HINT,
    )


def _test_frame(config: Config) -> Check:
    from agent.hardware.camera import make_camera

    started = time.monotonic()
    try:
        camera = make_camera(config.camera)
    except StickyAgentError as e:
        return fail("camera", _one_line(e), CAMERA_HINT)
    try:
        camera.open()
        frame = camera.capture(config.capture.jpeg_quality)
    except Exception as e:  # a backend may raise anything; the doctor reports it
        return fail("camera", f"{config.camera.type}: {_one_line(e)}", CAMERA_HINT)
    finally:
        with contextlib.suppress(Exception):
            camera.close()
    if not frame.jpeg.startswith(b"\xff\xd8"):
        return fail("camera", f"{config.camera.type}: the frame is not a JPEG", CAMERA_HINT)
    detail = (
        f"{config.camera.type} ({frame.sensor}): test frame {frame.width}x{frame.height}, "
        f"{humanize.size(len(frame.jpeg))} in {time.monotonic() - started:.1f} s"
    )
    return _with_focus(config, frame.sensor, ok("camera", detail))


def _gpio_hint(pin: int) -> str:
    return (
        f"add the agent's user to the gpio group, make sure nothing else holds GPIO {pin} "
        "(`gpioinfo` names the holder; stop other GPIO programs), and check the pin number; "
        'on a laptop use pin_factory = "mock"'
    )


def check_flash(config: Config, agent_pid: int | None) -> Check:
    from agent.hardware.flash import make_flash

    flash = config.flash
    if flash.type == "none":
        return ok("flash", "none configured")
    if not isinstance(flash, GpioFlashConfig):
        return ok("flash", f"{flash.type}: no GPIO pin to check")
    if agent_pid is not None:
        return ok("flash", f"GPIO {flash.pin} held by the running agent (pid {agent_pid})")
    try:
        device = make_flash(flash)
    except StickyAgentError as e:
        return fail("flash", _one_line(e), _gpio_hint(flash.pin))
    with contextlib.suppress(Exception):
        device.close()
    factory = f", pin factory {flash.pin_factory}" if flash.pin_factory else ""
    return ok("flash", f"GPIO {flash.pin} claimed and released (not lit){factory}")


def _claim_pin(name: str, pin: int, pin_factory: str | None, make: Callable[..., Any]) -> Check:
    """Claim a GPIO with gpiozero (``make(pin, pin_factory=...)``), release it, report."""
    from agent.hardware.gpio import shared_pin_factory

    try:
        factory = shared_pin_factory(pin_factory)
        device = make(pin, pin_factory=factory)
    except Exception as e:  # gpiozero raises a family of its own errors
        return fail(name, f"cannot claim GPIO {pin}: {_one_line(e)}", _gpio_hint(pin))
    with contextlib.suppress(Exception):
        device.close()
    return ok(name, f"GPIO {pin} claimed and released")


def check_button_and_led(config: Config, agent_pid: int | None) -> list[Check]:
    out: list[Check] = []
    for name, section in (("button", config.button), ("status led", config.led)):
        if not section.enabled:
            continue
        if agent_pid is not None:
            out.append(ok(name, f"GPIO {section.pin} held by the running agent (pid {agent_pid})"))
            continue
        from gpiozero import LED, Button

        make = (lambda pin, **kw: Button(pin, pull_up=True, **kw)) if name == "button" else LED
        out.append(_claim_pin(name, section.pin, section.pin_factory, make))
    return out


SENSOR_HINTS = {
    "temperature": (
        "check the DHT22 wiring (data on GPIO 27 with a 10 kOhm pull-up to 3.3 V) and "
        "dtoverlay=dht11,gpiopin=27 in /boot/firmware/config.txt (hardware/sensors.md)"
    ),
    "bme280": (
        "check the BME280 wiring (SDA GPIO 2, SCL GPIO 3, 3.3 V), dtparam=i2c_arm=on and "
        "dtoverlay=i2c-sensor,bme280,addr=0x76 in /boot/firmware/config.txt (hardware/sensors.md)"
    ),
    "battery": (
        "enable SPI (dtparam=spi=on), check the MCP3001 wiring (hardware/wiring.md) and that the "
        "agent's user is in the spi and gpio groups"
    ),
}
SENSOR_HINTS["humidity"] = SENSOR_HINTS["temperature"]
UNITS = {"temperature": "°C", "humidity": "%", "battery": "%"}


def expected_quantities(config: Config) -> list[str]:
    """Return the readings the configured sensors should give (``temperature``, ...)."""
    sensors = config.sensors
    if sensors.type == "fake":
        return [q for q in ("temperature", "humidity", "battery") if getattr(sensors, q) is not None]
    if sensors.type == "hat":
        expected = [] if sensors.climate == "none" else ["temperature", "humidity"]
        return expected + (["battery"] if sensors.battery else [])
    return []


def check_sensors(config: Config, agent_pid: int | None) -> list[Check]:
    from agent.hardware.sensors import make_sensors

    expected = expected_quantities(config)
    if not expected:
        return [ok("sensors", f"none configured ({config.sensors.type}): images record unknown values")]
    if agent_pid is not None and config.sensors.type == "hat":
        return [ok("sensors", f"read by the running agent (pid {agent_pid}); see stickyctl status")]
    try:
        sensors = make_sensors(config.sensors)
        try:
            readings = sensors.read()
        finally:
            close = getattr(sensors, "close", None)
            if callable(close):
                with contextlib.suppress(Exception):
                    close()
    except Exception as e:  # any sensor fault
        return [fail("sensors", f"{config.sensors.type}: {_one_line(e)}", SENSOR_HINTS["temperature"])]
    errors = "; ".join(getattr(readings, "errors", ()) or ())
    out: list[Check] = []
    for quantity in expected:
        value = getattr(readings, quantity)
        name = f"sensor {quantity}"
        if value is None:
            why = f": {errors}" if errors else ""
            bme280 = quantity != "battery" and getattr(config.sensors, "climate", None) == "bme280"
            out.append(fail(name, f"no reading{why}", SENSOR_HINTS["bme280" if bme280 else quantity]))
        else:
            out.append(ok(name, f"{value:g} {UNITS[quantity]} ({config.sensors.type})"))
    return out
