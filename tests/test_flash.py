"""The flash is on for the exposure only (not while the camera opens, starts, settles or
encodes) and off afterwards, even when the capture fails; the capture log says how long it was
on (gpiozero MockFactory pins record every state with its time)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from gpiozero.pins.mock import MockFactory
from helpers.lighting import StepCamera

from agent.capture.pipeline import Capturer
from agent.config import GpioFlashConfig, load_config
from agent.errors import FlashError
from agent.hardware.flash import Exposure, GpioFlash, NoFlash
from agent.hardware.sensors import FakeSensors
from agent.queue import Queue


@pytest.fixture
def factory() -> MockFactory:
    return MockFactory()


def make_capturer(
    write_config: Callable[..., Path], factory: MockFactory, fail: bool
) -> tuple[Capturer, object, StepCamera]:
    config = load_config(write_config(), environ={})
    flash = GpioFlash(GpioFlashConfig(type="gpio", pin=23), pin_factory=factory)
    pin = factory.pin(23)
    camera = StepCamera(pin, fail=fail)
    queue = Queue(config.storage.queue_path)
    return Capturer(config, "0a1b2c3d", camera, flash, FakeSensors(), queue), pin, camera


def test_flash_is_on_for_the_exposure_only(
    write_config: Callable[..., Path], factory: MockFactory, caplog: pytest.LogCaptureFixture
) -> None:
    capturer, pin, camera = make_capturer(write_config, factory, fail=False)
    pin.clear_states()  # type: ignore[attr-defined]
    caplog.set_level("INFO", logger="agent.capture.pipeline")
    result = capturer.capture()
    assert result.ok and result.image is not None
    # open, configure, start, focus, settle in the dark; lit for the exposure; dark to encode
    assert camera.steps == [
        ("open", False),
        ("configure", False),
        ("start", False),
        ("focus", False),
        ("settle", False),
        ("expose", True),
        ("encode", False),
    ]
    pin.assert_states([False, True, False])  # type: ignore[attr-defined]
    # the capture log says how long the flash was on: the time between the pin's two switches
    on_s = pin.states[2].timestamp  # type: ignore[attr-defined]
    assert result.flash_on_s is not None and result.flash_on_s == pytest.approx(on_s, abs=0.05)
    assert json.loads(result.image.image_metadata)["flash_on_s"] == pytest.approx(result.flash_on_s, abs=1e-3)
    assert f"flash on {result.flash_on_s:.3f} s" in caplog.text


def test_flash_goes_off_when_the_camera_fails(
    write_config: Callable[..., Path], factory: MockFactory
) -> None:
    capturer, pin, camera = make_capturer(write_config, factory, fail=True)
    pin.clear_states()  # type: ignore[attr-defined]
    result = capturer.capture()
    assert result.outcome == "failed" and "camera timed out" in (result.error or "")
    assert ("expose", True) in camera.steps and ("encode", False) not in camera.steps
    pin.assert_states([False, True, False])  # type: ignore[attr-defined]
    # the camera is closed after a failure and reopened for the next capture
    assert camera.closed == 1
    capturer.capture()
    assert camera.opened == 2
    # the failure is recorded with its cause
    attempts = capturer.queue.attempts(limit=5)
    assert [a.outcome for a in attempts] == ["failed", "failed"]
    assert attempts[0].error == "camera timed out"


def test_flash_times_show_warmup_before_exposure(factory: MockFactory) -> None:
    flash = GpioFlash(GpioFlashConfig(type="gpio", pin=23, warmup=0.05), pin_factory=factory)
    pin = factory.pin(23)
    pin.clear_states()
    with flash.lit():
        pass
    # off -> on at ~0 -> off after the 50 ms warm-up (gpiozero records times since the last state)
    pin.assert_states_and_times([(0.0, False), (0.0, True), (0.05, False)])


def test_a_pin_in_use_is_a_clear_flash_error(factory: MockFactory) -> None:
    from agent.errors import FlashError

    first = GpioFlash(GpioFlashConfig(type="gpio", pin=23), pin_factory=factory)
    with pytest.raises(FlashError, match="cannot drive the flash on GPIO 23"):
        GpioFlash(GpioFlashConfig(type="gpio", pin=23), pin_factory=factory)
    first.close()


def test_no_flash_reports_no_on_time(write_config: Callable[..., Path]) -> None:
    config = load_config(write_config(), environ={})
    camera = StepCamera(pin=NoPin())
    capturer = Capturer(
        config, "0a1b2c3d", camera, NoFlash(), FakeSensors(), Queue(config.storage.queue_path)
    )
    result = capturer.capture()
    assert result.ok and result.flash_on_s is None
    assert result.image is not None and "flash_on_s" not in json.loads(result.image.image_metadata)


class NoPin:
    state = False


def test_an_abandoned_exposure_cannot_leave_the_flash_on_or_light_it_again(factory: MockFactory) -> None:
    """A camera thread given up on (timed out) mid-exposure: the capture ends, the flash goes off,
    and the thread cannot switch it on again when it wakes."""
    flash = GpioFlash(GpioFlashConfig(type="gpio", pin=23), pin_factory=factory)
    pin = factory.pin(23)
    pin.clear_states()
    exposure = Exposure(flash)
    stuck = exposure.lit()
    stuck.__enter__()  # the camera thread is inside the exposure and never comes back
    assert pin.state
    exposure.end()  # the capture gives up on it
    assert not pin.state
    with pytest.raises(FlashError, match="after its capture ended"), exposure.lit():
        pass
    stuck.__exit__(None, None, None)  # the thread wakes up late: nothing changes
    pin.assert_states([False, True, False])
    assert exposure.times_lit == 1
    flash.close()
