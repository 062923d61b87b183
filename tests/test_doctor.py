"""``stickyctl doctor``: one OK/WARN/FAIL line per check, a fix for each failure, exit 1 on a FAIL."""

from __future__ import annotations

import datetime as dt
import json
import socket
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import run_stickyctl
from helpers.sickserver import answer_500

from agent.capture.clock import ClockState
from agent.config import load_config
from agent.devserver import parse_user
from agent.devserver.app import DevServer
from agent.doctor import Check, Probes, failed, format_results, run_checks
from agent.errors import CameraError
from agent.hardware import camera as camera_module
from agent.hardware.camera import Frame
from agent.service import Agent

TRUSTED = ClockState("ntp", True, None, None, True, "NTP synchronised")


def systemctl_says(active: str, **props: str) -> Callable[[list[str]], subprocess.CompletedProcess[str]]:
    def run(args: list[str]) -> subprocess.CompletedProcess[str]:
        if args[0] == "is-active":
            return subprocess.CompletedProcess(args, 0 if active == "active" else 3, active + "\n", "")
        out = "".join(f"{k}={v}\n" for k, v in props.items())
        return subprocess.CompletedProcess(args, 0, out, "")

    return run


def healthy_probes(**kw: Any) -> Probes:
    """A machine whose clock is NTP-synchronised and whose service is active."""
    defaults: dict[str, Any] = {
        "clock": lambda: TRUSTED,
        "systemctl": systemctl_says("active"),
        "systemd_running": lambda: True,
        "environ": {},
    }
    return Probes(**{**defaults, **kw})


def by_name(results: list[Check]) -> dict[str, Check]:
    return {r.check: r for r in results}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def test_a_healthy_trap_passes_every_check(write_config: Callable[..., Path]) -> None:
    results = run_checks(write_config(), healthy_probes())
    checks = by_name(results)
    assert failed(results) == [], format_results(results)
    assert all(r.status == "OK" for r in results), format_results(results)
    for name in (
        "config",
        "device id",
        "data dir",
        "free space",
        "camera",
        "flash",
        "clock",
        "sinks",
        "service",
    ):
        assert name in checks, name
    assert "test frame 320x240" in checks["camera"].detail
    assert "GPIO 23 claimed and released" in checks["flash"].detail
    assert checks["sensor temperature"].detail.startswith("20.6")
    assert checks["sensor battery"].status == "OK"
    assert "only captures" in checks["sinks"].detail
    # the doctor wrote nothing: no image, no queue, no leftover probe file
    data = Path(load_config(write_config(), environ={}).storage.data_dir)
    assert not data.exists() or list(data.iterdir()) == []
    text = format_results(results)
    assert text.splitlines()[0].startswith("OK   config: ") and text.endswith("ready")


def test_api_reachable_and_credentials_accepted(write_config: Callable[..., Path], tmp_path: Path) -> None:
    creds = tmp_path / "api-credentials"
    creds.write_text("demo:demo-password\n")
    creds.chmod(0o600)
    with DevServer(tmp_path / "srv", [parse_user("demo:demo-password")]) as srv:
        cfg = write_config(sync={"url": srv.url, "credentials": str(creds)})
        checks = by_name(run_checks(cfg, healthy_probes()))
    creds_check = checks["credentials stickypi"]
    assert creds_check.status == "OK" and f"{creds}: username:password read" == creds_check.detail
    expected = Check("OK", "sink stickypi", f"{srv.url} reachable, credentials accepted")
    assert checks["sink stickypi"] == expected


def test_wrong_password_and_unreachable_api_fail_with_hints(
    write_config: Callable[..., Path], tmp_path: Path
) -> None:
    creds = tmp_path / "api-credentials"
    creds.write_text("demo:wrong-password\n")
    creds.chmod(0o600)
    with DevServer(tmp_path / "srv", [parse_user("demo:demo-password")]) as srv:
        cfg = write_config(sync={"url": srv.url, "credentials": str(creds)})
        api = by_name(run_checks(cfg, healthy_probes()))["sink stickypi"]
    assert api.status == "FAIL" and "401" in api.detail
    assert api.hint and f"refused our credentials: fix {creds}" in api.hint
    cfg = write_config(sync={"url": f"http://127.0.0.1:{free_port()}", "credentials": str(creds)})
    api = by_name(run_checks(cfg, healthy_probes()))["sink stickypi"]
    assert api.status == "FAIL" and "unreachable" in api.detail
    assert api.hint and "stickyctl demo" in api.hint


def test_a_500_is_reported_as_the_servers_answer_not_unreachable(
    write_config: Callable[..., Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    creds = tmp_path / "api-credentials"
    creds.write_text("demo:demo-password\n")
    creds.chmod(0o600)
    with DevServer(tmp_path / "srv", [parse_user("demo:demo-password")]) as srv:
        answer_500(monkeypatch, srv.app, "get_token", "database down")
        cfg = write_config(sync={"url": srv.url, "credentials": str(creds)})
        api = by_name(run_checks(cfg, healthy_probes()))["sink stickypi"]
    assert api.status == "FAIL" and "unreachable" not in api.detail
    assert f"{srv.url} answered with an error: /get_token: the API answered 500" in api.detail
    assert api.hint and "the server is up but answers with an error" in api.hint


def test_credentials_readable_by_others_fail(write_config: Callable[..., Path], tmp_path: Path) -> None:
    creds = tmp_path / "api-credentials"
    creds.write_text("demo:demo-password\n")
    creds.chmod(0o644)
    cfg = write_config(sync={"url": f"http://127.0.0.1:{free_port()}", "credentials": str(creds)})
    results = run_checks(cfg, healthy_probes())
    check = by_name(results)["credentials stickypi"]
    assert check.status == "FAIL" and "mode 644" in check.detail
    assert check.hint and f"chmod 600 {creds}" in check.hint
    assert "sink stickypi" not in by_name(results)  # no probe with credentials that were refused
    assert "demo-password" not in format_results(results)


def test_unwritable_data_dir_fails(write_config: Callable[..., Path], tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where a folder should be")
    cfg = write_config(storage={"data_dir": str(blocker / "data")})
    results = run_checks(cfg, healthy_probes())
    check = by_name(results)["data dir"]
    assert check.status == "FAIL" and "cannot be created" in check.detail and check.hint
    assert failed(results) == [check]


def test_full_disk_fails(write_config: Callable[..., Path]) -> None:
    cfg = write_config(retention={"min_free_disk_mb": 1e12})
    check = by_name(run_checks(cfg, healthy_probes()))["free space"]
    assert check.status == "FAIL" and "captures are refused" in check.detail and check.hint


class BrokenCamera:
    sensor = "imx477"

    def __init__(self) -> None:
        self.closed = False

    def open(self) -> None:
        pass

    def capture(self, quality: int, flash: object = None) -> Frame:
        raise CameraError("picamera2: camera did not answer within 10s (timeout)")

    def close(self) -> None:
        self.closed = True


def test_a_failing_camera_fails_and_is_closed(
    write_config: Callable[..., Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    cam = BrokenCamera()
    monkeypatch.setattr(camera_module, "make_camera", lambda _config: cam)
    results = run_checks(write_config(), healthy_probes())
    check = by_name(results)["camera"]
    assert check.status == "FAIL" and "did not answer" in check.detail
    assert check.hint and "rpicam-hello --list-cameras" in check.hint
    assert cam.closed
    assert "FAIL camera: synthetic: picamera2: camera did not answer" in format_results(results)


def test_a_sensor_that_does_not_read_fails(write_config: Callable[..., Path], tmp_path: Path) -> None:
    (tmp_path / "iio").mkdir()
    cfg = write_config(
        sensors={
            "type": "hat",
            "climate": "dht22",
            "iio_root": str(tmp_path / "iio"),
            "climate_attempts": 1,
            "climate_retry_delay": 0,
            "battery": False,
        }
    )
    checks = by_name(run_checks(cfg, healthy_probes()))
    for quantity in ("temperature", "humidity"):
        check = checks[f"sensor {quantity}"]
        assert check.status == "FAIL" and check.hint and "dtoverlay=dht11,gpiopin=27" in check.hint
    assert "sensor battery" not in checks


def test_clock_before_2019_fails_and_untrusted_clock_warns(write_config: Callable[..., Path]) -> None:
    untrusted = ClockState("none", False, None, None, False, "no NTP synchronisation and no RTC")
    check = by_name(run_checks(write_config(), healthy_probes(clock=lambda: untrusted)))["clock"]
    assert check.status == "WARN" and check.hint and "hwclock -w" in check.hint
    in_1970 = healthy_probes(clock=lambda: untrusted, now=lambda: dt.datetime(1970, 1, 1, tzinfo=dt.UTC))
    check = by_name(run_checks(write_config(), in_1970))["clock"]
    assert check.status == "FAIL" and "captures are refused" in check.detail


def test_service_states(write_config: Callable[..., Path]) -> None:
    cfg = write_config()
    failed_unit = systemctl_says(
        "failed", LoadState="loaded", Result="start-limit-hit", UnitFileState="enabled"
    )
    check = by_name(run_checks(cfg, healthy_probes(systemctl=failed_unit)))["service"]
    assert check.status == "FAIL" and "start-limit-hit" in check.detail
    assert check.hint and "reset-failed" in check.hint
    absent = systemctl_says("inactive", LoadState="not-found")
    check = by_name(run_checks(cfg, healthy_probes(systemctl=absent)))["service"]
    assert check.status == "WARN" and "not installed" in check.detail
    check = by_name(run_checks(cfg, healthy_probes(systemd_running=lambda: False)))["service"]
    assert check.status == "WARN"


def test_hardware_held_by_the_running_agent_is_not_touched(write_config: Callable[..., Path]) -> None:
    cfg = write_config()
    agent = Agent(load_config(cfg, environ={}))
    agent.start()
    try:
        checks = by_name(run_checks(cfg, healthy_probes()))
    finally:
        agent.stop()
    assert "held by the running agent" in checks["camera"].detail and checks["camera"].status == "OK"
    assert "held by the running agent" in checks["flash"].detail


def test_invalid_config_fails_first(write_config: Callable[..., Path]) -> None:
    cfg = write_config(capture={"interval": "1s"})
    results = run_checks(cfg, healthy_probes())
    assert results[0].status == "FAIL" and "capture.interval" in results[0].detail
    assert [r.check for r in results] == ["config", "clock", "service"]


def test_cli_exit_codes_and_json(write_config: Callable[..., Path], tmp_path: Path) -> None:
    # Capture only: every check passes or warns on this machine (clock, service), exit 0.
    cfg = write_config()
    result = run_stickyctl("--config", str(cfg), "doctor")
    lines = result.stdout.splitlines()
    fails = [line for line in lines if line.startswith("FAIL")]
    assert all(line.startswith("FAIL service") for line in fails), result.stdout
    assert result.returncode == (1 if fails else 0), result.stdout + result.stderr
    assert any(line.startswith("OK   camera: synthetic") for line in lines)
    # The demo's API is down: the api check fails, with its fix; exit 1.
    creds = tmp_path / "api-credentials"
    creds.write_text("demo:demo-password\n")
    creds.chmod(0o600)
    cfg = write_config(sync={"url": f"http://127.0.0.1:{free_port()}", "credentials": str(creds)})
    result = run_stickyctl("--config", str(cfg), "doctor")
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    api = next(i for i, line in enumerate(lines) if line.startswith("FAIL sink stickypi:"))
    fix = next(line for line in lines[api + 1 :] if not line.startswith("     ") or "fix:" in line)
    assert fix.startswith("     fix: nothing answers at")  # after the FAIL line and its continuations
    assert all(len(line) <= 99 for line in lines)
    assert "check(s) failed" in result.stderr
    data = json.loads(run_stickyctl("--config", str(cfg), "doctor", "--json").stdout)
    assert data["ok"] is False
    assert {c["check"] for c in data["checks"]} >= {"config", "camera", "sink stickypi", "service"}
    assert data["sinks"]["stickypi"]["status"] == "FAIL" and data["sinks"]["stickypi"]["credentials"] == "OK"


class CameraModule3:
    """What the picamera2 backend reports for a Camera Module 3 (imx708) after a test frame."""

    sensor = "imx708_wide"

    def open(self) -> None:
        pass

    def capture(self, quality: int, flash: object = None) -> Frame:
        from helpers.lighting import tiny_jpeg

        return Frame(jpeg=tiny_jpeg(), width=64, height=48, sensor=self.sensor)

    def close(self) -> None:
        pass


@pytest.mark.parametrize(
    ("focus", "status", "says"),
    [
        ({}, "WARN", "imx708_wide (Camera Module 3) has autofocus and no af_mode"),
        ({"af_mode": "auto"}, "WARN", 'has autofocus and af_mode = "auto"'),
        ({"af_mode": "manual", "lens_position": 0.5}, "WARN", "focuses at 200 cm"),
        ({"af_mode": "manual", "lens_position": 6.7}, "OK", "test frame 64x48"),
    ],
)
def test_a_camera_module_3_without_a_manual_focus_for_the_card_is_a_warning(
    write_config: Callable[..., Path],
    monkeypatch: pytest.MonkeyPatch,
    focus: dict[str, Any],
    status: str,
    says: str,
) -> None:
    monkeypatch.setattr(camera_module, "make_camera", lambda _config: CameraModule3())
    cfg = write_config(camera={"type": "picamera2", **focus})
    check = by_name(run_checks(cfg, healthy_probes()))["camera"]
    assert check.status == status and says in check.detail, check
    if status == "WARN":
        assert check.hint is not None and 'af_mode = "manual" and lens_position = 6.7' in check.hint


def test_the_focus_of_a_camera_held_by_the_agent_is_judged_from_its_last_image(
    write_config: Callable[..., Path],
) -> None:
    from agent.doctor.hardware import check_camera
    from agent.queue import Queue

    config = load_config(write_config(camera={"type": "picamera2"}), environ={})
    config.storage.data_dir.mkdir(parents=True)
    queue = Queue(config.storage.queue_path)
    when = dt.datetime(2026, 6, 1, 12, 0, tzinfo=dt.UTC)
    queue.add_image(
        device="0a1b2c3d", when=when, path="x.jpg", md5="0" * 32, size=1, width=1, height=1,
        metadata={"model": "RP_imx708"}, manual=False,
    )  # fmt: skip
    queue.record_attempt(started_at=when, outcome="ok", manual=False)
    queue.close()
    check = check_camera(config, agent_pid=4321)
    assert check.status == "WARN" and "held by the running agent (pid 4321)" in check.detail
    assert "imx708 (Camera Module 3) has autofocus" in check.detail


def test_the_pi_config_focuses_a_camera_module_3_on_the_card() -> None:
    from conftest import REPO

    from agent.doctor.hardware import focus_problem

    config = load_config(REPO / "config" / "pi.toml", environ={})
    assert config.camera.type == "picamera2"
    assert (config.camera.af_mode, config.camera.lens_position) == ("manual", 6.7)
    assert focus_problem(config, "imx708") is None
