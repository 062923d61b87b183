"""Doctor checks of the world around the agent: clock, API, systemd service."""

from __future__ import annotations

import datetime as dt
import os
import shutil
import subprocess
from collections.abc import Mapping
from urllib.parse import urlsplit

from agent import humanize
from agent.config import Config
from agent.doctor.checks import (
    PROBE_CONNECT_TIMEOUT_S,
    PROBE_READ_TIMEOUT_S,
    SERVICE,
    SYSTEMCTL_TIMEOUT_S,
    Check,
    Probes,
    _one_line,
    fail,
    ok,
    warn,
    with_unit_credentials,
)
from agent.errors import (
    CredentialsError,
    SinkAuthError,
    SinkForbidden,
    SinkProtocolError,
    SinkUnreachable,
    StickyAgentError,
    SyncError,
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


def check_api(config: Config, environ: Mapping[str, str] | None) -> list[Check]:
    from agent.sinks.credentials import credentials_path, load_credentials
    from agent.sinks.stickypi import make_sink

    sync = config.sync
    if sync is None:
        return [ok("api", "no [sync] table: this trap only captures")]
    env = os.environ if environ is None else environ
    # Outside systemd: read the file the unit loads (LoadCredential=sticky-api:<file>).
    sync = with_unit_credentials(sync, env)
    sync = sync.model_copy(
        update={
            "connect_timeout": min(sync.connect_timeout, PROBE_CONNECT_TIMEOUT_S),
            "read_timeout": min(sync.read_timeout, PROBE_READ_TIMEOUT_S),
        }
    )
    try:
        where = credentials_path(sync, env)
        creds = load_credentials(sync, env)
    except CredentialsError as e:
        message = _one_line(e)
        if "Permission denied" in message:
            hint = "run the doctor as root (sudo stickyctl doctor): the credentials file is root-only"
        elif "readable or writable by every user" in message:
            hint = (
                f"chmod 600 {where}; chown root:root {where} (and change the password: others could read it)"
            )
        else:
            hint = (
                f"write one line username:password to {where} (root:root, mode 600); "
                "hardware/install.sh --api-user NAME --api-password-file FILE does it"
            )
        return [fail("credentials", message, hint)]
    out = [ok("credentials", f"{where}: user {creds.username}")]
    try:
        sink = make_sink(sync, env)
    except StickyAgentError as e:
        return [*out, fail("api", _one_line(e), "check [sync] in the configuration")]
    try:
        sink.probe()
    except SinkProtocolError as e:  # something answered, not the API (a captive portal, a proxy?)
        hint = f"check the [sync] url: is {sync.url} the Sticky Pi API (not a login page or proxy)?"
        detail = f"{sync.url} answered, but not as the Sticky Pi API does: {_one_line(e)}"
        out.append(fail("api", detail, hint))
    except SinkUnreachable as e:
        host = urlsplit(sync.url).hostname or ""
        if host in ("127.0.0.1", "localhost", "::1"):
            hint = (
                f"nothing answers at {sync.url}: the demo's API runs only while `stickyctl demo` runs "
                "(or start one: stickyctl devserver --port <port> --data-dir <dir> --user NAME:PASSWORD)"
            )
        else:
            hint = (
                f"check the network (ping, `curl -I {sync.url}`), the [sync] url and the server; "
                "images wait in the queue meanwhile"
            )
        out.append(fail("api", f"{sync.url} unreachable: {_one_line(e)}", hint))
    except SinkAuthError as e:
        out.append(
            fail(
                "api",
                f"{sync.url}: {_one_line(e)}",
                f"the server refused user {creds.username!r}: fix {where}",
            )
        )
    except SinkForbidden as e:
        out.append(fail("api", f"{sync.url}: {_one_line(e)}", "ask for a read-write (uploading) account"))
    except SyncError as e:  # the server answered, with an error (a 500 is an answer, not the network)
        hint = "the server is up but answers with an error: see the server's logs; check the [sync] url"
        out.append(fail("api", f"{sync.url} answered with an error: {_one_line(e)}", hint))
    else:
        out.append(ok("api", f"{sync.url} reachable, credentials accepted"))
    finally:
        sink.close()
    return out


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
