"""``stickyctl doctor``: is this trap ready to work unattended? One line per check.

Each check prints ``OK|WARN|FAIL <check>: <detail>``, and a failure a ``fix:`` line. The
checks: the configuration, the device id, the data folder (writable, free space against
``retention.min_free_disk_mb``), the camera (open it, take one frame, close it; no flash),
the flash pin (claimed and released, not lit), the button and status LED pins when enabled,
each sensor, the clock, the API credentials and the API itself (when ``[sync]`` is set), and
the systemd service. Hardware the running agent holds is not touched: its state comes from
the agent's own record instead. WARN is fine to leave; any FAIL makes the exit code 1.

Every check catches its own errors: a check that crashes is a FAIL, never a traceback.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from agent.config import Config, load_config
from agent.errors import (
    ConfigError,
    CredentialsError,
    SinkAuthError,
    SinkForbidden,
    SinkUnreachable,
    StickyAgentError,
    SyncError,
)

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


def check_config(path: Path, environ: Mapping[str, str] | None) -> tuple[Check, Config | None]:
    try:
        config = load_config(path, environ=environ)
    except ConfigError as e:
        if e.problems:
            detail = f"{path}: " + "; ".join(e.problems)
            hint = "fix the keys named above (`stickyctl config check` lists them; examples in config/)"
        else:
            detail = _one_line(e)
            hint = (
                "pass --config FILE, or install one: sudo install -m 644 config/pi.toml "
                "/etc/sticky-agent/agent.toml (hardware/install.sh does)"
            )
        return fail("config", detail, hint), None
    detail = (
        f"{path} valid (camera {config.camera.type}, flash {config.flash.type}, "
        f"sensors {config.sensors.type}, sync {'on' if config.sync else 'off'})"
    )
    return ok("config", detail), config


def check_device(config: Config) -> Check:
    from agent.device import device_id

    try:
        return ok("device id", device_id(config.device.id))
    except StickyAgentError as e:
        return fail("device id", _one_line(e), 'set [device] id = "<8 lower-case hex digits>"')


def check_data_dir(config: Config) -> list[Check]:
    try:
        return _check_data_dir(config)
    except PermissionError as e:
        return [
            fail(
                "data dir",
                f"cannot look into {config.storage.data_dir}: {e.strerror or e}",
                f"run the doctor as root (sudo stickyctl doctor) or as the agent's user ({SERVICE})",
            )
        ]


def _check_data_dir(config: Config) -> list[Check]:
    from agent.sync.retention import free_mb

    data_dir = config.storage.data_dir
    out: list[Check] = []
    if data_dir.exists():
        if not data_dir.is_dir():
            return [
                fail(
                    "data dir",
                    f"{data_dir} exists but is not a folder",
                    "move it away or fix storage.data_dir",
                )
            ]
        try:
            with tempfile.NamedTemporaryFile(dir=data_dir, prefix=".doctor-"):
                pass
            out.append(ok("data dir", f"{data_dir} writable"))
        except OSError as e:
            out.append(
                fail(
                    "data dir",
                    f"cannot write in {data_dir}: {e.strerror or e}",
                    f"run stickyctl as the agent's user (sudo -u {SERVICE} stickyctl doctor), or give "
                    f"that user the folder: sudo chown -R {SERVICE}: {data_dir}",
                )
            )
    else:
        parent = data_dir.parent
        while not parent.exists() and parent != parent.parent:
            parent = parent.parent
        if parent.is_dir() and os.access(parent, os.W_OK | os.X_OK):
            out.append(ok("data dir", f"{data_dir} does not exist yet; the agent will create it"))
        else:
            why = "is not a folder" if not parent.is_dir() else "is not writable"
            out.append(
                fail(
                    "data dir",
                    f"{data_dir} does not exist and cannot be created: {parent} {why}",
                    f"create it for the agent's user: sudo install -d -o {SERVICE} -g {SERVICE} {data_dir}"
                    if parent.is_dir()
                    else "fix storage.data_dir",
                )
            )
    try:
        free = free_mb(data_dir)
    except OSError as e:
        out.append(fail("free space", f"cannot measure: {e}", "check the file system of storage.data_dir"))
        return out
    minimum = config.retention.min_free_disk_mb
    detail = f"{free:,.0f} MB free (retention.min_free_disk_mb = {minimum:g})"
    hint = (
        "get the trap online so synced images can be deleted (retention), delete old data, or use a "
        "larger SD card"
    )
    if free < minimum:
        out.append(fail("free space", detail + ": captures are refused", hint))
    elif free < 2 * minimum:
        out.append(warn("free space", detail + ": less than twice the minimum", hint))
    else:
        out.append(ok("free space", detail))
    return out


def _agent_pid(config: Config) -> int | None:
    from agent.locks import running_agent_pid

    try:
        pid = running_agent_pid(config.storage.data_dir)
    except OSError:
        return None
    return pid if pid and pid > 0 else None


def _last_capture(config: Config) -> tuple[str, str | None, str] | None:
    """Return the running agent's last capture attempt (outcome, error, time), if recorded."""
    from agent.queue import Queue

    if not config.storage.queue_path.exists():
        return None
    queue = Queue(config.storage.queue_path, create=False)
    try:
        attempts = queue.attempts(limit=1)
    finally:
        queue.close()
    if not attempts:
        return None
    a = attempts[0]
    return a.outcome, a.error, a.started_at.isoformat(timespec="seconds")


def check_camera(config: Config, agent_pid: int | None) -> Check:
    from agent.camera import make_camera

    if agent_pid is not None:
        try:
            last = _last_capture(config)
        except (StickyAgentError, OSError) as e:
            return warn("camera", f"held by the running agent (pid {agent_pid}); its queue: {_one_line(e)}")
        if last is None:
            return ok("camera", f"held by the running agent (pid {agent_pid}); no capture yet")
        outcome, error, when = last
        if outcome == "ok":
            return ok("camera", f"held by the running agent (pid {agent_pid}); last capture {when} ok")
        return fail(
            "camera",
            f"held by the running agent (pid {agent_pid}); last capture {when} {outcome}: {error}",
            "see stickyctl status and journalctl -u sticky-agent; to test the camera here, stop the "
            "agent first (sudo systemctl stop sticky-agent). " + CAMERA_HINT,
        )
    started = time.monotonic()
    try:
        camera = make_camera(config.camera)
    except StickyAgentError as e:
        return fail("camera", _one_line(e), CAMERA_HINT)
    try:
        camera.open()
        frame = camera.capture(config.capture.jpeg_quality)
    except Exception as e:  # a backend may raise anything; the doctor reports it
        return fail("camera", f"{config.camera.type}: {_one_line(e)}", CAMERA_HINT)
    finally:
        with contextlib.suppress(Exception):
            camera.close()
    if not frame.jpeg.startswith(b"\xff\xd8"):
        return fail("camera", f"{config.camera.type}: the frame is not a JPEG", CAMERA_HINT)
    return ok(
        "camera",
        f"{config.camera.type} ({frame.sensor}): test frame {frame.width}x{frame.height}, "
        f"{len(frame.jpeg) / 1024:,.0f} KB in {time.monotonic() - started:.1f} s",
    )


def _gpio_hint(pin: int) -> str:
    return (
        f"add the agent's user to the gpio group, make sure nothing else holds GPIO {pin} "
        "(`gpioinfo` names the holder; stop other GPIO programs), and check the pin number; "
        'on a laptop use pin_factory = "mock"'
    )


def check_flash(config: Config, agent_pid: int | None) -> Check:
    from agent.flash import make_flash

    flash = config.flash
    if flash.type == "none":
        return ok("flash", "none configured")
    if agent_pid is not None:
        return ok("flash", f"GPIO {flash.pin} held by the running agent (pid {agent_pid})")
    try:
        device = make_flash(flash)
    except StickyAgentError as e:
        return fail("flash", _one_line(e), _gpio_hint(flash.pin))
    with contextlib.suppress(Exception):
        device.close()
    factory = f", pin factory {flash.pin_factory}" if flash.pin_factory else ""
    return ok("flash", f"GPIO {flash.pin} claimed and released (not lit){factory}")


def _claim_pin(name: str, pin: int, pin_factory: str | None, make: Callable[..., Any]) -> Check:
    """Claim a GPIO with gpiozero (``make(pin, pin_factory=...)``), release it, report."""
    from agent.flash import _make_pin_factory

    try:
        factory = _make_pin_factory(pin_factory) if pin_factory else None
        device = make(pin, pin_factory=factory)
    except Exception as e:  # gpiozero raises a family of its own errors
        return fail(name, f"cannot claim GPIO {pin}: {_one_line(e)}", _gpio_hint(pin))
    with contextlib.suppress(Exception):
        device.close()
    return ok(name, f"GPIO {pin} claimed and released")


def check_button_and_led(config: Config, agent_pid: int | None) -> list[Check]:
    out: list[Check] = []
    for name, section in (("button", config.button), ("status led", config.led)):
        if not section.enabled:
            continue
        if agent_pid is not None:
            out.append(ok(name, f"GPIO {section.pin} held by the running agent (pid {agent_pid})"))
            continue
        from gpiozero import LED, Button

        make = (lambda pin, **kw: Button(pin, pull_up=True, **kw)) if name == "button" else LED
        out.append(_claim_pin(name, section.pin, section.pin_factory, make))
    return out


SENSOR_HINTS = {
    "temperature": (
        "check the DHT22 wiring (data on GPIO 27 with a 10 kOhm pull-up to 3.3 V) and "
        "dtoverlay=dht11,gpiopin=27 in /boot/firmware/config.txt (hardware/sensors.md)"
    ),
    "bme280": (
        "check the BME280 wiring (SDA GPIO 2, SCL GPIO 3, 3.3 V), dtparam=i2c_arm=on and "
        "dtoverlay=i2c-sensor,bme280,addr=0x76 in /boot/firmware/config.txt (hardware/sensors.md)"
    ),
    "battery": (
        "enable SPI (dtparam=spi=on), check the MCP3001 wiring (hardware/wiring.md) and that the "
        "agent's user is in the spi and gpio groups"
    ),
}
SENSOR_HINTS["humidity"] = SENSOR_HINTS["temperature"]
UNITS = {"temperature": "°C", "humidity": "%", "battery": "%"}


def expected_quantities(config: Config) -> list[str]:
    """Return the readings the configured sensors should give (``temperature``, ...)."""
    sensors = config.sensors
    if sensors.type == "fake":
        return [q for q in ("temperature", "humidity", "battery") if getattr(sensors, q) is not None]
    if sensors.type == "hat":
        expected = [] if sensors.climate == "none" else ["temperature", "humidity"]
        return expected + (["battery"] if sensors.battery else [])
    return []


def check_sensors(config: Config, agent_pid: int | None) -> list[Check]:
    from agent.sensors import make_sensors

    expected = expected_quantities(config)
    if not expected:
        return [ok("sensors", f"none configured ({config.sensors.type}): images record unknown values")]
    if agent_pid is not None and config.sensors.type == "hat":
        return [ok("sensors", f"read by the running agent (pid {agent_pid}); see stickyctl status")]
    try:
        sensors = make_sensors(config.sensors)
        try:
            readings = sensors.read()
        finally:
            close = getattr(sensors, "close", None)
            if callable(close):
                with contextlib.suppress(Exception):
                    close()
    except Exception as e:  # any sensor fault
        return [fail("sensors", f"{config.sensors.type}: {_one_line(e)}", SENSOR_HINTS["temperature"])]
    errors = "; ".join(getattr(readings, "errors", ()) or ())
    out: list[Check] = []
    for quantity in expected:
        value = getattr(readings, quantity)
        name = f"sensor {quantity}"
        if value is None:
            why = f": {errors}" if errors else ""
            bme280 = quantity != "battery" and getattr(config.sensors, "climate", None) == "bme280"
            out.append(fail(name, f"no reading{why}", SENSOR_HINTS["bme280" if bme280 else quantity]))
        else:
            out.append(ok(name, f"{value:g} {UNITS[quantity]} ({config.sensors.type})"))
    return out


def check_clock(probes: Probes) -> Check:
    from agent import clock as clock_module
    from agent.naming import EARLIEST_VALID_TIME

    hint = (
        "give the trap network time (NTP: `timedatectl set-ntp true`) or fit an RTC "
        "(dtoverlay=i2c-rtc,ds3231, then `sudo hwclock -w` once the time is right); see hardware/"
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
        return fail("clock", f"reads {now:%Y-%m-%d %H:%M} UTC, before 2019-11-01: captures are refused", hint)
    synced = clock_module.last_sync_time()
    if synced is None:
        return warn("clock", "not NTP synchronised (no timesyncd marker); the time looks plausible", hint)
    return ok(
        "clock", f"NTP synchronised, last sync {dt.datetime.fromtimestamp(synced, dt.UTC):%Y-%m-%d %H:%M} UTC"
    )


def check_api(config: Config, environ: Mapping[str, str] | None) -> list[Check]:
    from agent.sync.credentials import credentials_path, load_credentials
    from agent.sync.stickypi import make_sink

    sync = config.sync
    if sync is None:
        return [ok("api", "no [sync] table: this trap only captures")]
    env = os.environ if environ is None else environ
    if sync.credentials is None and not env.get("CREDENTIALS_DIRECTORY"):
        # Outside systemd: read the file the unit loads (LoadCredential=sticky-api:<file>).
        sync = sync.model_copy(update={"credentials": UNIT_CREDENTIALS})
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
    except SyncError as e:
        out.append(fail("api", f"{sync.url}: {_one_line(e)}", "see the server's logs; check the [sync] url"))
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


def _guarded(name: str, fn: Callable[[], Check | list[Check]]) -> Iterator[Check]:
    try:
        result = fn()
    except Exception as e:  # a check must never crash the doctor
        yield fail(name, f"the check itself failed: {type(e).__name__}: {_one_line(e)}", "run with --debug")
        return
    yield from (result if isinstance(result, list) else [result])


def run_checks(config_path: Path, probes: Probes | None = None) -> list[Check]:
    """Given the configuration file, run every check and return their outcomes, in order."""
    probes = probes or Probes()
    # lgpio (gpiozero's pin factory on Pi OS) makes its notification pipes in the working
    # folder, which may be read-only or someone's home: use the temporary folder instead.
    os.environ.setdefault("LG_WD", tempfile.gettempdir())
    first, config = check_config(config_path, probes.environ)
    results = [first]
    agent_pid = _agent_pid(config) if config is not None else None
    if config is not None:
        cfg = config
        results += _guarded("device id", lambda: check_device(cfg))
        results += _guarded("data dir", lambda: check_data_dir(cfg))
        results += _guarded("camera", lambda: check_camera(cfg, agent_pid))
        results += _guarded("flash", lambda: check_flash(cfg, agent_pid))
        results += _guarded("button", lambda: check_button_and_led(cfg, agent_pid))
        results += _guarded("sensors", lambda: check_sensors(cfg, agent_pid))
    results += _guarded("clock", lambda: check_clock(probes))
    if config is not None:
        cfg = config
        results += _guarded("api", lambda: check_api(cfg, probes.environ))
    results += _guarded("service", lambda: check_service(probes, agent_pid))
    return results


def format_results(results: list[Check]) -> str:
    counts = {s: sum(r.status == s for r in results) for s in ("OK", "WARN", "FAIL")}
    summary = ", ".join(f"{n} {s}" for s, n in counts.items() if n)
    verdict = "not ready: fix the FAIL lines" if counts["FAIL"] else "ready"
    return "\n".join([*(r.line() for r in results), f"doctor: {summary}: {verdict}"])


def as_json(results: list[Check]) -> str:
    return json.dumps(
        {"ok": not any(r.status == "FAIL" for r in results), "checks": [asdict(r) for r in results]},
        indent=2,
        ensure_ascii=False,
    )


def failed(results: list[Check]) -> list[Check]:
    """Return the failed checks: the doctor exits 1 if there is one (WARN is allowed)."""
    return [r for r in results if r.status == "FAIL"]
