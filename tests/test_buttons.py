"""The manual button (debounced, one callback per press) and the status LED's blink patterns,
on gpiozero's mock pins (which record every state with its time)."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

import pytest
from gpiozero.pins.mock import MockFactory

from agent.config import ButtonConfig, Config, LedConfig, config_from_mapping
from agent.hardware.buttons import CAPTURED, PATTERNS, PLAYED_KEPT, Blink, ManualButton, StatusLed


class FakeClock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def factory() -> Iterator[MockFactory]:
    f = MockFactory()
    yield f
    f.reset()


def states(pin: Any) -> list[bool]:
    return [s.state for s in pin.states]


def test_one_callback_per_press_despite_contact_bounce(factory: MockFactory) -> None:
    calls: list[int] = []
    clock = FakeClock()
    button = ManualButton(
        ButtonConfig(enabled=True, pin=22, bounce=0.05),
        lambda: calls.append(1),
        pin_factory=factory,
        clock=clock,
    )
    pin = factory.pin(22)
    assert pin.state  # pulled up: released
    # a press that bounces: low, high, low within a millisecond
    pin.drive_low()
    clock.t += 0.001
    pin.drive_high()
    pin.drive_low()
    assert len(calls) == 1
    # held for a second, then released with bounce
    clock.t += 1.0
    pin.drive_high()
    clock.t += 0.002
    pin.drive_low()  # a bounce on release is not a press
    pin.drive_high()
    assert len(calls) == 1
    # a real second press, after the button was still
    clock.t += 0.5
    pin.drive_low()
    clock.t += 0.2
    pin.drive_high()
    assert len(calls) == 2 and button.presses == 2
    button.close()
    assert button.device is None


def test_a_failing_callback_does_not_break_the_button(factory: MockFactory) -> None:
    clock = FakeClock()

    def boom() -> None:
        raise RuntimeError("agent gone")

    button = ManualButton(ButtonConfig(enabled=True), boom, pin_factory=factory, clock=clock)
    pin = factory.pin(22)
    pin.drive_low()
    clock.t += 1
    pin.drive_high()
    clock.t += 1
    pin.drive_low()
    assert button.presses == 2
    button.close()


def test_a_disabled_or_unusable_button_is_inert(factory: MockFactory) -> None:
    assert ManualButton(ButtonConfig(), lambda: None, pin_factory=factory).device is None
    held = ManualButton(ButtonConfig(enabled=True, pin=22), lambda: None, pin_factory=factory)
    clash = ManualButton(ButtonConfig(enabled=True, pin=22), lambda: None, pin_factory=factory)
    assert clash.device is None and clash.error and "GPIO 22" in clash.error
    clash.close()
    held.close()


def test_button_and_led_config() -> None:
    config = config_from_mapping(
        {"button": {"enabled": True, "bounce": "50ms"}, "led": {"enabled": True, "pin": 25}}, environ={}
    )
    assert (config.button.enabled, config.button.pin, config.button.bounce) == (True, 22, 0.05)
    assert (config.led.enabled, config.led.pin) == (True, 25)
    assert config_from_mapping({"button": {"bounce": "0.2s"}}, environ={}).button.bounce == 0.2
    defaults = Config()
    assert not defaults.button.enabled and not defaults.led.enabled


def led(factory: MockFactory, timescale: float = 1.0) -> tuple[StatusLed, Any]:
    status = StatusLed(LedConfig(enabled=True, pin=24), pin_factory=factory, timescale=timescale)
    pin = factory.pin(24)
    return status, pin


def expected(blink: Blink) -> list[tuple[float, bool]]:
    """The mock pin's (time since previous change, state) records for one burst from dark."""
    out: list[tuple[float, bool]] = [(0.0, False)]
    for i in range(blink.n):
        out.append((0.0 if i == 0 else blink.off_time, True))
        out.append((blink.on_time, False))
    return out


def test_offline_is_a_slow_double_blink(factory: MockFactory) -> None:
    status, pin = led(factory)  # real time: 0.8 s
    pattern = PATTERNS["offline"]
    assert pattern is not None and pattern.pause > 2
    pin.clear_states()
    status.set_state("offline")
    assert status.wait_played(1)
    status.set_state("ok")  # ends the pause after the burst
    status.close()
    assert states(pin) == [False, True, False, True, False]
    pin.assert_states_and_times(expected(pattern))
    assert list(status.played) == ["offline"]


def test_error_is_a_fast_blink(factory: MockFactory) -> None:
    status, pin = led(factory, timescale=0.01)
    pin.clear_states()
    status.set_state("error")
    assert status.wait_played(2)
    status.close()
    seen = states(pin)
    assert seen[0] is False and seen[-1] is False
    assert all(a != b for a, b in itertools.pairwise(seen))  # every record is a switch
    assert seen.count(True) >= 2 * 5  # two bursts of five blinks
    assert list(status.played)[:2] == ["error", "error"]


def test_one_blink_per_capture_then_dark(factory: MockFactory) -> None:
    status, pin = led(factory, timescale=0.01)
    pin.clear_states()
    status.captured()
    status.close()  # finishes the blink already asked for
    assert states(pin) == [False, True, False]
    assert list(status.played) == ["captured"]
    assert CAPTURED.n == 1


def test_a_capture_blink_interrupts_a_state_and_the_state_resumes(factory: MockFactory) -> None:
    status, pin = led(factory, timescale=0.01)
    status.set_state("offline")
    assert status.wait_played(1)
    status.captured()
    assert status.wait_for(lambda played: "captured" in played and played[-1] != "captured")
    status.set_state("ok")
    status.close()
    played = list(status.played)
    assert played[0] == "offline"
    assert "captured" in played
    assert played[played.index("captured") + 1] == "offline"
    assert pin.state is False


def test_led_states_are_checked_and_a_disabled_led_does_nothing(factory: MockFactory) -> None:
    status, _ = led(factory, timescale=0.01)
    with pytest.raises(ValueError, match="unknown LED state 'broken'"):
        status.set_state("broken")
    status.close()
    status.close()  # idempotent
    off = StatusLed(LedConfig(), pin_factory=factory)
    off.captured()
    off.set_state("error")
    off.close()
    assert off.device is None and not off.played and off.bursts == 0


def test_the_led_keeps_a_bounded_history_of_its_bursts(factory: MockFactory) -> None:
    """An error pattern plays ~72,000 bursts a day: only the newest are kept, all are counted."""
    status, pin = led(factory, timescale=0.0001)
    status.set_state("error")
    assert status.wait_played(PLAYED_KEPT + 30, timeout=60)
    status.close()
    assert status.bursts >= PLAYED_KEPT + 30
    assert len(status.played) == PLAYED_KEPT
    assert set(status.played) == {"error"}
    assert pin.state is False
