"""The doctor's result type and its shared helpers."""

from __future__ import annotations

import datetime as dt
import subprocess
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from agent.sinks.credentials import unit_credentials, with_unit_credentials

Status = Literal["OK", "WARN", "FAIL"]

SERVICE = "sticky-agent"
#: Where the systemd unit loads the Sticky Pi API credentials from (LoadCredential=sticky-api:<this>);
#: every sink's: :func:`agent.sinks.credentials.unit_credentials`.
UNIT_CREDENTIALS = unit_credentials("sticky-api")

__all__ = ["UNIT_CREDENTIALS", "Check", "Probes", "fail", "ok", "warn", "with_unit_credentials"]
#: Seconds a doctor's API probe may take (the agent's own timeouts are longer).
PROBE_CONNECT_TIMEOUT_S = 5.0
PROBE_READ_TIMEOUT_S = 20.0
SYSTEMCTL_TIMEOUT_S = 10.0

CAMERA_HINT = (
    "check the ribbon cable (contacts toward the board on a Pi 4, the connector latch), that "
    "`rpicam-hello --list-cameras` lists the camera, and camera_auto_detect=1 (or "
    "dtoverlay=imx477) in /boot/firmware/config.txt; see hardware/pi-os-setup.md"
)


@dataclass(frozen=True)
class Check:
    """One check's outcome."""

    status: Status
    check: str
    detail: str
    hint: str | None = None

    def line(self) -> str:
        text = f"{self.status:<4} {self.check}: {self.detail}"
        if self.hint and self.status != "OK":
            text += f"\n     fix: {self.hint}"
        return text


def ok(check: str, detail: str) -> Check:
    return Check("OK", check, detail)


def warn(check: str, detail: str, hint: str | None = None) -> Check:
    return Check("WARN", check, detail, hint)


def fail(check: str, detail: str, hint: str) -> Check:
    return Check("FAIL", check, detail, hint)


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split()) or type(e).__name__


@dataclass
class Probes:
    """What the checks ask of the machine; tests replace parts."""

    clock: Callable[[], Any] | None = None  # returns an agent.clock.ClockState
    systemctl: Callable[[list[str]], subprocess.CompletedProcess[str] | None] | None = None
    systemd_running: Callable[[], bool] = lambda: Path("/run/systemd/system").is_dir()
    now: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC)
    environ: Mapping[str, str] | None = None


# -- the checks ---------------------------------------------------------------------------
