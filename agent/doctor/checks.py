"""The doctor's result type and its shared helpers."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from agent.config import SyncConfig

Status = Literal["OK", "WARN", "FAIL"]

SERVICE = "sticky-agent"
#: Where the systemd unit loads the API credentials from (LoadCredential=sticky-api:<this>).
UNIT_CREDENTIALS = Path("/etc/sticky-agent/api-credentials")
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


def with_unit_credentials(sync: SyncConfig, environ: Mapping[str, str] | None = None) -> SyncConfig:
    """Given ``[sync]``, return it with the credentials file the systemd unit loads
    (:data:`UNIT_CREDENTIALS`) when neither a ``credentials`` key nor ``$CREDENTIALS_DIRECTORY``
    names one (a command run outside the service, e.g. by a technician with sudo)."""
    env = os.environ if environ is None else environ
    if sync.credentials is None and not env.get("CREDENTIALS_DIRECTORY"):
        return sync.model_copy(update={"credentials": UNIT_CREDENTIALS})
    return sync


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
