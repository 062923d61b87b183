"""The doctor's result type and its shared helpers."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar

if TYPE_CHECKING:
    from agent.sinks.base import SinkSettings

    S = TypeVar("S", bound=SinkSettings)

Status = Literal["OK", "WARN", "FAIL"]

SERVICE = "sticky-agent"
#: Where the systemd unit loads the API credentials from (LoadCredential=sticky-api:<this>).
UNIT_CREDENTIALS = Path("/etc/sticky-agent/api-credentials")
#: Where the unit loads another sink's credentials from (LoadCredential=<name>:<this>/<name>).
UNIT_CREDENTIALS_DIR = UNIT_CREDENTIALS.parent
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


def unit_credentials(credential_name: str) -> Path:
    """Given a sink's ``credential_name``, return the file the systemd unit loads it from:
    :data:`UNIT_CREDENTIALS` for ``sticky-api``, else ``/etc/sticky-agent/<credential_name>``."""
    return UNIT_CREDENTIALS if credential_name == "sticky-api" else UNIT_CREDENTIALS_DIR / credential_name


def with_unit_credentials(settings: S, environ: Mapping[str, str] | None = None) -> S:
    """Given a sink's settings, return them with the credentials file the systemd unit loads
    (:func:`unit_credentials`) when neither a ``credentials`` key nor ``$CREDENTIALS_DIRECTORY``
    names one (a command run outside the service, e.g. by a technician with sudo)."""
    env = os.environ if environ is None else environ
    if settings.credentials is None and not env.get("CREDENTIALS_DIRECTORY"):
        return settings.model_copy(update={"credentials": unit_credentials(settings.credential_name)})
    return settings


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
