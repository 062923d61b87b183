"""The flash contract (huey's StorageTests idea): behaviour every flash backend must have. A
backend's test class (``tests/test_flash_contract.py``) says how to make one and, if it has a
light, how to tell whether it is on."""

from __future__ import annotations

from typing import Any

import pytest

from agent import registry


class FlashContract:
    """Behaviour every flash backend must have."""

    #: The ``type`` name of the backend the test class runs against.
    backend = ""

    def make(self) -> Any:
        raise NotImplementedError

    def is_lit(self, flash: Any) -> bool | None:
        """Return whether the light is on, or None for a backend without a light."""
        return None

    def test_the_backend_is_registered(self) -> None:
        assert self.backend in registry.backends("flash")

    def test_off_when_made(self) -> None:
        flash = self.make()
        assert self.is_lit(flash) in (False, None)
        flash.close()

    def test_lit_for_the_body_and_off_after(self) -> None:
        flash = self.make()
        seen = []
        with flash.lit():
            seen.append(self.is_lit(flash))
        assert seen[0] in (True, None)
        assert self.is_lit(flash) in (False, None)
        flash.close()

    def test_off_after_the_body_raised(self) -> None:
        flash = self.make()
        with pytest.raises(RuntimeError), flash.lit():
            raise RuntimeError("camera failed")
        assert self.is_lit(flash) in (False, None)
        flash.close()

    def test_many_exposures(self) -> None:
        flash = self.make()
        for _ in range(5):
            with flash.lit():
                pass
        assert self.is_lit(flash) in (False, None)
        flash.close()

    def test_close_switches_off_and_is_safe_twice(self) -> None:
        flash = self.make()
        flash.on()
        flash.close()
        flash.close()
        assert self.is_lit(flash) in (False, None)
