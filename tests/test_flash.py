"""The flash is on for the exposure and off afterwards, even when the capture fails
(gpiozero MockFactory pins record every state with its time)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from gpiozero.pins.mock import MockFactory

from agent.camera import Frame
from agent.capture import Capturer
from agent.config import GpioFlashConfig, load_config
from agent.errors import CameraError
from agent.flash import GpioFlash
from agent.queue import Queue
from agent.sensors import FakeSensors


class RecordingCamera:
    """A camera fake that records the flash pin's state at the moment of exposure."""

    sensor = "fake"

    def __init__(self, pin: object, fail: bool = False) -> None:
        self.pin = pin
        self.fail = fail
        self.pin_state_at_exposure: list[bool] = []
        self.opened = 0
        self.closed = 0

    def open(self) -> None:
        self.opened += 1

    def capture(self, quality: int) -> Frame:
        self.pin_state_at_exposure.append(bool(self.pin.state))  # type: ignore[attr-defined]
        if self.fail:
            raise CameraError("camera timed out")
        from test_image_format import tiny_jpeg

        return Frame(jpeg=tiny_jpeg(), width=64, height=48, sensor=self.sensor, exposure_us=20000)

    def close(self) -> None:
        self.closed += 1


@pytest.fixture
def factory() -> MockFactory:
    return MockFactory()


def make_capturer(
    write_config: Callable[..., Path], factory: MockFactory, fail: bool
) -> tuple[Capturer, object, RecordingCamera]:
    config = load_config(write_config(), environ={})
    flash = GpioFlash(GpioFlashConfig(type="gpio", pin=23), pin_factory=factory)
    pin = factory.pin(23)
    camera = RecordingCamera(pin, fail=fail)
    queue = Queue(config.storage.queue_path)
    return Capturer(config, "0a1b2c3d", camera, flash, FakeSensors(), queue), pin, camera


def test_flash_is_on_for_the_exposure_only(write_config: Callable[..., Path], factory: MockFactory) -> None:
    capturer, pin, camera = make_capturer(write_config, factory, fail=False)
    pin.clear_states()  # type: ignore[attr-defined]
    assert capturer.capture().ok
    assert camera.pin_state_at_exposure == [True]
    pin.assert_states([False, True, False])  # type: ignore[attr-defined]


def test_flash_goes_off_when_the_camera_fails(
    write_config: Callable[..., Path], factory: MockFactory
) -> None:
    capturer, pin, camera = make_capturer(write_config, factory, fail=True)
    pin.clear_states()  # type: ignore[attr-defined]
    result = capturer.capture()
    assert result.outcome == "failed" and "camera timed out" in (result.error or "")
    assert camera.pin_state_at_exposure == [True]
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
