"""Doctor checks of the world around the agent: clock, systemd service (the sinks: agent.doctor.sinks)."""

from __future__ import annotations

import datetime as dt
import shutil
import subprocess

from agent import humanize
from agent.doctor.checks import (
    SERVICE,
    SYSTEMCTL_TIMEOUT_S,
    Check,
    Probes,
    fail,
    ok,
    warn,
)


def check_clock(probes: Probes) -> Check:
    from agent.capture import clock as clock_module
    from agent.capture.naming import EARLIEST_VALID_TIME

    hint = (
        "give the trap network time (NTP: `timedatectl set-ntp true`) or fit an RTC "
        "(dtoverlay=i2c-rtc,ds3231, then `sudo hwclock -w` once the time is right); see hardware/rtc.md"
    )
    state_fn = probes.clock or getattr(clock_module, "clock_state", None)
    if state_fn is not None:
        state = state_fn()
        if state.trusted:
            return ok("clock", state.detail)
        if probes.now() < EARLIEST_VALID_TIME:
            return fail("clock", f"{state.detail}: captures are refused", hint)
        return warn("clock", f"{state.detail}; the time looks plausible, captures go on", hint)
    # Without clock_state(): timesyncd's marker and the 2019-11-01 bound.
    now = probes.now()
    if now < EARLIEST_VALID_TIME:
        return fail("clock", f"reads {humanize.when(now)}, before 2019-11-01: captures are refused", hint)
    synced = clock_module.last_sync_time()
    if synced is None:
        return warn("clock", "not NTP synchronised (no timesyncd marker); the time looks plausible", hint)
    return ok(
        "clock", f"NTP synchronised, last sync {humanize.when(dt.datetime.fromtimestamp(synced, dt.UTC))}"
    )


def _systemctl(args: list[str]) -> subprocess.CompletedProcess[str] | None:
    exe = shutil.which("systemctl")
    if exe is None:
        return None
    try:
        return subprocess.run(
            [exe, *args], capture_output=True, text=True, timeout=SYSTEMCTL_TIMEOUT_S, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None


def check_service(probes: Probes, agent_pid: int | None) -> Check:
    outside = f"; an agent runs outside systemd (pid {agent_pid})" if agent_pid else ""
    run = probes.systemctl or _systemctl
    if probes.systemctl is None and shutil.which("systemctl") is None:
        return warn("service", "no systemctl here: cannot check the sticky-agent service" + outside)
    if not probes.systemd_running():
        return warn("service", "systemd is not running here (a container?): no service to check" + outside)
    active = run(["is-active", SERVICE])
    if active is None:
        return warn("service", "systemctl did not answer" + outside)
    state = active.stdout.strip() or active.stderr.strip()
    if state == "active":
        return ok("service", f"{SERVICE} is active")
    shown = run(["show", SERVICE, "-p", "LoadState", "-p", "Result", "-p", "UnitFileState"])
    props = dict(line.split("=", 1) for line in (shown.stdout.splitlines() if shown else []) if "=" in line)
    if props.get("LoadState") == "not-found":
        return warn(
            "service",
            f"{SERVICE}.service is not installed" + outside,
            "on a trap, install it: sudo hardware/install.sh",
        )
    result = props.get("Result", "")
    why = f" (result: {result})" if result and result != "success" else ""
    enabled = props.get("UnitFileState", "")
    hint = (
        f"see why: journalctl -u {SERVICE} -b; then sudo systemctl reset-failed {SERVICE} && "
        f"sudo systemctl enable --now {SERVICE}"
    )
    if result == "start-limit-hit":
        hint = f"it crashed repeatedly and systemd gave up; {hint}"
    return fail("service", f"{SERVICE} is {state}{why}, {enabled or 'unknown'} at boot" + outside, hint)


# -- running them --------------------------------------------------------------------------
