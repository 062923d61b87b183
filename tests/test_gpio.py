"""One pin factory for the whole process: a GPIO pin can be claimed once (gpiozero's pin
reservation), and a configuration that gives one pin to two devices is refused with both keys."""

from __future__ import annotations

import pytest
from gpiozero import Device

from agent.config import ButtonConfig, ConfigError, GpioFlashConfig, LedConfig, config_from_mapping
from agent.errors import FlashError, HardwareError
from agent.hardware.buttons import ManualButton, StatusLed
from agent.hardware.flash import make_flash
from agent.hardware.gpio import shared_pin_factory


def problems(**tables: dict[str, object]) -> list[str]:
    with pytest.raises(ConfigError) as e:
        config_from_mapping(tables, environ={})
    return e.value.problems


def test_one_pin_for_flash_led_and_button_is_a_config_error_naming_both_keys() -> None:
    assert problems(
        flash={"type": "gpio", "pin": 23},
        led={"enabled": True, "pin": 23},
        button={"enabled": True, "pin": 23},
    ) == [
        "button.pin: GPIO 23 is already used by flash.pin",
        "led.pin: GPIO 23 is already used by flash.pin",
    ]


def test_the_battery_adc_pins_count_and_disabled_devices_do_not() -> None:
    assert problems(sensors={"type": "hat", "battery": True}, led={"enabled": True, "pin": 8}) == [
        "led.pin: GPIO 8 is already used by sensors.battery_select_pin"
    ]
    # a disabled LED claims nothing; without the battery the ADC's pins are free
    config_from_mapping({"flash": {"type": "gpio", "pin": 23}, "led": {"pin": 23}}, environ={})
    config_from_mapping(
        {"sensors": {"type": "hat", "battery": False}, "led": {"enabled": True, "pin": 8}}, environ={}
    )


def test_two_pin_factories_are_a_config_error() -> None:
    assert problems(
        flash={"type": "gpio", "pin_factory": "mock"},
        led={"enabled": True, "pin_factory": "lgpio"},
    ) == [
        'led.pin_factory: "lgpio" differs from flash.pin_factory = "mock"; one pin factory drives '
        "every GPIO pin: set the same one (or none) everywhere"
    ]


def test_every_device_gets_the_one_shared_factory_and_a_pin_in_use_is_refused() -> None:
    """Even past the config check (two processes' worth of devices in one): the second claim of
    GPIO 23 fails, because flash, LED and button share gpiozero's one pin factory."""
    flash = make_flash(GpioFlashConfig(type="gpio", pin=23, pin_factory="mock"))
    led = StatusLed(LedConfig(enabled=True, pin=23, pin_factory="mock"))
    button = ManualButton(ButtonConfig(enabled=True, pin=23, pin_factory="mock"), lambda: None)
    assert led.device is None and led.error is not None and "GPIO 23" in led.error
    assert button.device is None and button.error is not None and "GPIO 23" in button.error
    with pytest.raises(FlashError, match="cannot drive the flash on GPIO 23"):
        make_flash(GpioFlashConfig(type="gpio", pin=23, pin_factory="mock"))
    other = StatusLed(LedConfig(enabled=True, pin=24, pin_factory="mock"))
    assert other.device is not None
    assert other.device.pin_factory is flash.device.pin_factory is Device.pin_factory  # type: ignore[union-attr]
    other.close()
    flash.close()


def test_a_second_factory_in_one_process_is_refused() -> None:
    shared = shared_pin_factory("mock")
    assert shared_pin_factory("mock") is shared and shared_pin_factory(None) is shared
    with pytest.raises(HardwareError, match='pin factory "native" asked for, but this process already'):
        shared_pin_factory("native")
