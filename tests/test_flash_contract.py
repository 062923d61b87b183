"""One contract, every flash backend (huey's StorageTests idea): none, gpiozero on MockFactory
pins (active high and low) and the recording flash behave the same way where the capture
relies on them (``tests/helpers/flash_contract.py``)."""

from __future__ import annotations

import re
from typing import Any

import pytest
from gpiozero.pins.mock import MockFactory
from helpers.contracts import untested_backends
from helpers.flash_contract import FlashContract

from agent.config import GpioFlashConfig, MemoryFlashConfig, NoFlashConfig
from agent.errors import FlashError
from agent.hardware.flash import RecordingFlash, make_flash


def test_every_flash_backend_has_a_contract_class() -> None:
    """A new backend is one module, one line in registry.BUILTIN and one class here."""
    assert untested_backends("flash", FlashContract) == set()


class TestNoFlash(FlashContract):
    backend = "none"

    def make(self) -> Any:
        return make_flash(NoFlashConfig(type="none"))


class TestGpioFlash(FlashContract):
    backend = "gpio"

    def make(self) -> Any:
        self.factory = MockFactory()
        return make_flash(GpioFlashConfig(type="gpio", pin=23), pin_factory=self.factory)

    def is_lit(self, flash: Any) -> bool | None:
        return bool(self.factory.pin(23).state)


class TestGpioFlashActiveLow(TestGpioFlash):
    def make(self) -> Any:
        self.factory = MockFactory()
        return make_flash(GpioFlashConfig(type="gpio", pin=23, active_high=False), pin_factory=self.factory)

    def is_lit(self, flash: Any) -> bool | None:
        return not bool(self.factory.pin(23).state)  # the pin is low while lit


class TestRecordingFlash(FlashContract):
    backend = "memory"

    def make(self) -> Any:
        return make_flash(MemoryFlashConfig(type="memory"))

    def is_lit(self, flash: Any) -> bool | None:
        assert isinstance(flash, RecordingFlash)
        return flash.is_on

    def test_it_records_states_and_times_like_gpiozeros_mock_pin(self) -> None:
        now = [100.0]
        flash = RecordingFlash(MemoryFlashConfig(type="memory"), clock=lambda: now[0])
        with flash.lit():
            now[0] += 0.25
        now[0] += 1.0
        with flash.lit():
            now[0] += 0.5
        flash.assert_states([False, True, False, True, False])
        flash.assert_states_and_times([(0, False), (0, True), (0.25, False), (1.0, True), (0.5, False)])
        with pytest.raises(AssertionError, match=re.escape("after 0.25s, expected 0.3s")):
            flash.assert_states_and_times([(0, False), (0, True), (0.3, False), (1.0, True), (0.5, False)])

    def test_switching_after_close_is_a_flash_error(self) -> None:
        flash = self.make()
        flash.close()
        with pytest.raises(FlashError, match="after close"):
            flash.on()
