"""The systemd unit: well-formed for ``systemd-analyze verify``, hardened (exposure <= 3.0),
a notify service with a watchdog the agent's heartbeat can keep."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import REPO

from agent.service import HEARTBEAT_S

UNIT = REPO / "systemd" / "sticky-agent.service"
MAX_EXPOSURE = 3.0


def unit_settings(text: str) -> dict[str, list[str]]:
    """Return every ``Key=value`` of a unit file, by key (comments and sections left out)."""
    out: dict[str, list[str]] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";", "[")):
            continue
        key, _, value = line.partition("=")
        out.setdefault(key.strip(), []).append(value.strip())
    return out


def systemd_analyze() -> str:
    path = shutil.which("systemd-analyze")
    if path is None:
        pytest.skip("systemd-analyze is not installed here (it comes with systemd); unit not analysed")
    return path


def runnable_copy(tmp_path: Path) -> Path:
    """Return a copy of the unit whose ExecStart binary exists on this machine: verify checks that
    the command is executable, and /opt/sticky-agent exists only on an installed trap."""
    text = UNIT.read_text()
    text, n = re.subn(r"^ExecStart=\S+", "ExecStart=/bin/true", text, flags=re.MULTILINE)
    assert n == 1
    copy = tmp_path / UNIT.name
    copy.write_text(text)
    return copy


def test_unit_is_a_notify_service_with_a_watchdog_and_a_restart_policy() -> None:
    s = unit_settings(UNIT.read_text())
    assert s["Type"] == ["notify"] and s["NotifyAccess"] == ["main"]
    watchdog = float(s["WatchdogSec"][0])
    # the agent pings from its heartbeat loop: it must wake at least twice per period
    assert watchdog / 2 > HEARTBEAT_S
    assert s["Restart"] == ["on-failure"]
    assert "StartLimitIntervalSec" in s and "StartLimitBurst" in s
    assert s["User"] == ["sticky-agent"]
    assert s["SupplementaryGroups"] == ["video gpio i2c spi"]
    assert s["StateDirectory"] == ["sticky-agent"] and s["ConfigurationDirectory"] == ["sticky-agent"]
    assert s["LoadCredential"] == ["sticky-api:/etc/sticky-agent/api-credentials"]
    assert s["DevicePolicy"] == ["closed"] and s["PrivateDevices"] == ["no"]
    allowed = " ".join(s["DeviceAllow"])
    for device in ("video4linux", "media", "dma_heap", "vchiq", "gpiochip", "i2c", "spi"):
        assert f"char-{device} rw" in allowed
    assert s["MemoryDenyWriteExecute"] == ["no"]
    assert s["ExecStart"][0].endswith("stickyctl --config /etc/sticky-agent/agent.toml run")


def test_unit_exposure_is_at_most_3(tmp_path: Path) -> None:
    result = subprocess.run(
        [systemd_analyze(), "security", "--offline=yes", "--no-pager", str(UNIT)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    if "--offline" in result.stderr and result.returncode != 0:
        pytest.skip(f"this systemd-analyze cannot analyse a unit offline (systemd < 250): {result.stderr}")
    m = re.search(r"Overall exposure level for \S+: (\d+(?:\.\d+)?)", result.stdout)
    assert m, f"no overall exposure in the output:\n{result.stdout}\n{result.stderr}"
    exposure = float(m.group(1))
    assert exposure <= MAX_EXPOSURE, f"exposure {exposure} > {MAX_EXPOSURE}:\n{result.stdout}"


def test_unit_verifies_cleanly(tmp_path: Path) -> None:
    unit = runnable_copy(tmp_path)
    result = subprocess.run(
        [systemd_analyze(), "verify", str(unit)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    output = (result.stdout + result.stderr).strip()
    assert result.returncode == 0, output
    assert output == "", output
