#!/usr/bin/env python3
"""Bench test of a trap's hardware, through the agent's own modules and configuration.

Run it on the Pi with the agent stopped (it holds the camera and the pins):

    sudo systemctl stop sticky-agent
    sudo -u sticky-agent /opt/sticky-agent/venv/bin/python /opt/sticky-agent/bench.py \\
        --config /etc/sticky-agent/agent.toml --button-wait 20
    sudo systemctl start sticky-agent

It opens the configured camera and takes a frame without, then with the flash (comparing
their brightness), toggles the flash pin, waits for a press of the button, blinks the status
LED, reads every sensor, and reports the clock and the I2C/SPI interfaces. One line per test:
``OK``, ``WARN``, ``FAIL`` or ``SKIP``; the exit code is 1 if anything failed.

On a laptop, ``--config config/demo.toml`` runs it against the synthetic camera and mock
pins (the button press is then simulated).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

try:
    from agent.config import Config, load_config
except ImportError:  # run from a checkout without the package installed
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from agent.config import Config, load_config

from agent.errors import StickyAgentError

#: A frame lit by the flash should be at least this much brighter than one without it.
MIN_FLASH_GAIN = 1.15


@dataclass
class Result:
    status: str  # OK, WARN, FAIL, SKIP
    test: str
    detail: str


class Bench:
    def __init__(self, config: Config, out: Path, button_wait: float) -> None:
        self.config = config
        self.out = out
        self.button_wait = button_wait
        self.results: list[Result] = []

    def report(self, status: str, test: str, detail: str) -> None:
        result = Result(status, test, detail)
        self.results.append(result)
        print(f"{status:<4} {test}: {detail}", flush=True)

    @contextlib.contextmanager
    def step(self, test: str) -> Iterator[None]:
        """Report an unexpected exception in a test as its FAIL line and go on with the next."""
        try:
            yield
        except Exception as e:
            self.report("FAIL", test, f"{type(e).__name__}: {e}")

    # -- the tests ----------------------------------------------------------------------

    def button_factory(self) -> str | None:
        """The button's pin factory: its own, else the flash's (mock pins in the demo)."""
        flash = self.config.flash
        return self.config.button.pin_factory or (flash.pin_factory if flash.type == "gpio" else None)

    def real_hardware(self) -> bool:
        c = self.config
        pins = [c.flash.pin_factory if c.flash.type == "gpio" else "mock", self.button_factory()]
        return c.camera.type == "picamera2" or any(p != "mock" for p in pins)

    def agent_holds_hardware(self) -> bool:
        from agent.locks import running_agent_pid

        try:
            pid = running_agent_pid(self.config.storage.data_dir)
        except OSError:
            return False
        if pid and self.real_hardware():
            self.report(
                "FAIL",
                "agent",
                f"the agent runs (pid {pid}) and holds the camera and pins: "
                "sudo systemctl stop sticky-agent, run the bench, then start it again",
            )
            return True
        return False

    def camera_and_flash(self) -> None:
        from agent.hardware.camera import make_camera
        from agent.hardware.flash import GpioFlash, make_flash

        try:
            flash = make_flash(self.config.flash)
        except StickyAgentError as e:
            self.report("FAIL", "flash", str(e))
            flash = None
        if flash is not None and isinstance(flash, GpioFlash):
            with self.step("flash"):
                states = []
                for _ in range(3):
                    flash.on()
                    states.append(flash.device.value)
                    time.sleep(0.2)
                    flash.off()
                    states.append(flash.device.value)
                    time.sleep(0.2)
                if states == [1, 0] * 3:
                    self.report(
                        "OK", "flash", f"GPIO {flash.pin} switched on and off 3 times (did it light?)"
                    )
                else:
                    self.report("FAIL", "flash", f"GPIO {flash.pin} read back {states}, not on/off")
        elif flash is not None:
            self.report("SKIP", "flash", "none configured ([flash] type = none)")

        camera = make_camera(self.config.camera)
        quality = self.config.capture.jpeg_quality
        try:
            started = time.monotonic()
            try:
                camera.open()
            except Exception as e:
                self.report("FAIL", "camera", f"{self.config.camera.type} did not open: {e}")
                return
            self.report(
                "OK", "camera", f"{self.config.camera.type} opened in {time.monotonic() - started:.1f} s"
            )
            dark = self._frame(camera, quality, None, "frame (no flash)")
            if flash is None:
                return
            lit = self._frame(camera, quality, flash, "frame (flash)")
            if dark is not None and lit is not None and isinstance(flash, GpioFlash):
                self._compare(dark, lit)
        finally:
            with contextlib.suppress(Exception):
                camera.close()
            if flash is not None:
                with contextlib.suppress(Exception):
                    flash.close()

    def _frame(self, camera: Any, quality: int, flash: Any, test: str) -> float | None:
        started = time.monotonic()
        try:
            if flash is not None:
                with flash.lit():
                    frame = camera.capture(quality)
            else:
                frame = camera.capture(quality)
        except Exception as e:
            self.report("FAIL", f"camera {test}", f"{type(e).__name__}: {e}")
            return None
        took = time.monotonic() - started
        path = self.out.with_name(f"{self.out.stem}-{'flash' if flash else 'dark'}{self.out.suffix}")
        path.write_bytes(frame.jpeg)
        brightness = mean_brightness(frame.jpeg)
        self.report(
            "OK",
            f"camera {test}",
            f"{frame.sensor} {frame.width}x{frame.height}, {len(frame.jpeg) / 1024:,.0f} KB in {took:.1f} s, "
            f"mean brightness {brightness:.0f}/255, saved as {path}",
        )
        return brightness

    def _compare(self, dark: float, lit: float) -> None:
        if self.config.camera.type != "picamera2":
            self.report("SKIP", "flash brightness", f"{self.config.camera.type} camera: nothing to light")
            return
        gain = lit / max(dark, 1.0)
        if gain >= MIN_FLASH_GAIN:
            self.report("OK", "flash brightness", f"the flash made the frame {gain:.1f}x brighter")
        else:
            self.report(
                "WARN",
                "flash brightness",
                f"the flash made the frame only {gain:.2f}x brighter: check the flash wiring and driver, "
                "and [flash] warmup (or the room is bright)",
            )

    def button(self) -> None:
        from agent.hardware.buttons import ManualButton

        cfg = self.config.button
        factory = self.button_factory()
        if self.button_wait <= 0:
            self.report("SKIP", "button", f"GPIO {cfg.pin}: not waited for (--button-wait 0)")
            return
        pressed = threading.Event()
        button = ManualButton(
            cfg.model_copy(update={"enabled": True, "pin_factory": factory}), on_press=pressed.set
        )
        try:
            if button.error:
                self.report("FAIL", "button", button.error)
                return
            simulated = factory == "mock"
            if simulated:
                pin = button.device.pin

                def press() -> None:
                    pin.drive_low()
                    time.sleep(0.1)
                    pin.drive_high()

                threading.Timer(0.2, press).start()
            else:
                print(
                    f"     press the button on GPIO {cfg.pin} within {self.button_wait:g} s ...", flush=True
                )
            started = time.monotonic()
            if pressed.wait(self.button_wait):
                how = " (mock pin: press simulated)" if simulated else ""
                self.report(
                    "OK", "button", f"GPIO {cfg.pin} press seen after {time.monotonic() - started:.1f} s{how}"
                )
            else:
                self.report(
                    "FAIL",
                    "button",
                    f"no press on GPIO {cfg.pin} within {self.button_wait:g} s: check the wiring "
                    "(button between the pin and GND; internal pull-up)",
                )
        finally:
            button.close()

    def led(self) -> None:
        cfg = self.config.led
        if not cfg.enabled:
            self.report("SKIP", "status led", "not enabled ([led] enabled = false)")
            return
        from gpiozero import LED

        from agent.hardware.flash import _make_pin_factory

        led = LED(
            cfg.pin,
            active_high=cfg.active_high,
            pin_factory=_make_pin_factory(cfg.pin_factory) if cfg.pin_factory else None,
        )
        try:
            led.blink(on_time=0.3, off_time=0.3, n=3, background=False)
        finally:
            led.close()
        self.report("OK", "status led", f"GPIO {cfg.pin} blinked 3 times (did you see it?)")

    def sensors(self) -> None:
        from agent.doctor import UNITS, expected_quantities
        from agent.hardware.sensors import make_sensors

        expected = expected_quantities(self.config)
        if not expected:
            self.report("SKIP", "sensors", f"none configured ([sensors] type = {self.config.sensors.type})")
            return
        sensors = make_sensors(self.config.sensors)
        started = time.monotonic()
        try:
            readings = sensors.read()
        finally:
            close = getattr(sensors, "close", None)
            if callable(close):
                close()
        took = time.monotonic() - started
        errors = "; ".join(getattr(readings, "errors", ()) or ())
        for quantity in expected:
            value = getattr(readings, quantity)
            if value is None:
                self.report("FAIL", f"sensor {quantity}", f"no reading{': ' + errors if errors else ''}")
            else:
                self.report("OK", f"sensor {quantity}", f"{value:g} {UNITS[quantity]} (read in {took:.1f} s)")

    def clock(self) -> None:
        from agent.capture.clock import clock_state

        state = clock_state()
        self.report("OK" if state.trusted else "WARN", "clock", state.detail)

    def interfaces(self) -> None:
        model = read_text(Path("/proc/device-tree/model")).rstrip("\0")
        if not model.startswith("Raspberry Pi"):
            self.report("SKIP", "interfaces", "not a Raspberry Pi: no I2C/SPI to check")
            return
        self.report("OK", "board", model)
        i2c = sorted(str(p) for p in Path("/dev").glob("i2c-*"))
        self.report(
            "OK" if i2c else "FAIL",
            "i2c",
            ", ".join(i2c) if i2c else "no /dev/i2c-*: dtparam=i2c_arm=on (hardware/pi-os-setup.md)",
        )
        spi = sorted(str(p) for p in Path("/dev").glob("spidev*"))
        needs_spi = self.config.sensors.type == "hat" and self.config.sensors.battery
        status = "OK" if spi else ("FAIL" if needs_spi else "WARN")
        self.report(status, "spi", ", ".join(spi) if spi else "no /dev/spidev*: dtparam=spi=on")

    def run(self) -> int:
        if self.agent_holds_hardware():
            return 1
        for name, test in (
            ("camera", self.camera_and_flash),
            ("button", self.button),
            ("status led", self.led),
            ("sensors", self.sensors),
            ("clock", self.clock),
            ("interfaces", self.interfaces),
        ):
            with self.step(name):
                test()
        counts = {s: sum(r.status == s for r in self.results) for s in ("OK", "WARN", "FAIL", "SKIP")}
        print("bench: " + ", ".join(f"{n} {s}" for s, n in counts.items() if n))
        return 1 if counts["FAIL"] else 0


def read_text(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""


def mean_brightness(jpeg: bytes) -> float:
    """Return the mean grey level (0-255) of a JPEG, decoded at reduced size (fast on a Pi)."""
    from PIL import Image, ImageStat

    with Image.open(io.BytesIO(jpeg)) as img:
        img.draft("L", (img.width // 8, img.height // 8))
        return float(ImageStat.Stat(img.convert("L")).mean[0])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--config", type=Path, default=Path("/etc/sticky-agent/agent.toml"), help="agent config"
    )
    parser.add_argument(
        "--button-wait", type=float, default=10.0, help="seconds to wait for a button press (0: skip)"
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=Path(tempfile.gettempdir()) / "sticky-bench.jpg",
        help="test frames are saved next to this name (-dark.jpg, -flash.jpg)",
    )
    args = parser.parse_args(argv)
    # lgpio makes its notification pipes in the working folder (or $LG_WD): under sudo -u that
    # is often someone else's private home, so use the temporary folder.
    os.environ.setdefault("LG_WD", tempfile.gettempdir())
    try:
        config = load_config(args.config)
    except StickyAgentError as e:
        print(f"FAIL config: {e}")
        return 1
    print(
        f"OK   config: {args.config} (camera {config.camera.type}, flash {config.flash.type}, "
        f"sensors {config.sensors.type})",
        flush=True,
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    return Bench(config, args.out, args.button_wait).run()


if __name__ == "__main__":
    sys.exit(main())
