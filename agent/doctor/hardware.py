"""Doctor checks of the hardware: camera, flash, button, status LED, sensors."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from typing import Any

from agent import humanize
from agent.config import Config
from agent.doctor.checks import CAMERA_HINT, Check, _one_line, fail, ok, warn
from agent.doctor.local import _last_capture
from agent.errors import (
    StickyAgentError,
)


def check_camera(config: Config, agent_pid: int | None) -> Check:
    from agent.camera import make_camera

    if agent_pid is not None:
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
    return ok(
        "camera",
        f"{config.camera.type} ({frame.sensor}): test frame {frame.width}x{frame.height}, "
        f"{humanize.size(len(frame.jpeg))} in {time.monotonic() - started:.1f} s",
    )


def _gpio_hint(pin: int) -> str:
    return (
        f"add the agent's user to the gpio group, make sure nothing else holds GPIO {pin} "
        "(`gpioinfo` names the holder; stop other GPIO programs), and check the pin number; "
        'on a laptop use pin_factory = "mock"'
    )


def check_flash(config: Config, agent_pid: int | None) -> Check:
    from agent.flash import make_flash

    flash = config.flash
    if flash.type == "none":
        return ok("flash", "none configured")
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
    from agent.flash import _make_pin_factory

    try:
        factory = _make_pin_factory(pin_factory) if pin_factory else None
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
    from agent.sensors import make_sensors

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
