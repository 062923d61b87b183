"""The running agent: scheduled captures, stickyctl capture/status/queue ls while it runs,
a clean stop on SIGTERM that finishes the capture in progress, and device ids."""

from __future__ import annotations

import datetime as dt
import json
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import REPO, run_stickyctl
from test_image_format import tiny_jpeg

from agent.capture.scheduler import JOB_ID
from agent.config import load_config
from agent.device import device_id
from agent.errors import DeviceIdError, StickyAgentError
from agent.hardware.camera import Frame, Lighting, no_lighting
from agent.service import Agent


def wait_for_line(proc: subprocess.Popen[str], needle: str, lines: list[str]) -> str:
    """Read the agent's log until a line contains ``needle`` (the test's timeout bounds it)."""
    assert proc.stderr is not None
    for line in proc.stderr:
        lines.append(line)
        if needle in line:
            return line
    raise AssertionError(f"agent exited before logging {needle!r}:\n{''.join(lines)}")


def test_run_captures_on_schedule_and_stops_cleanly(write_config: Callable[..., Path]) -> None:
    cfg = write_config()
    proc = subprocess.Popen(
        [sys.executable, "-m", "agent", "--config", str(cfg), "run"],
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )
    lines: list[str] = []
    try:
        wait_for_line(proc, "started: device 0a1b2c3d", lines)
        # the first scheduled slot is at most one interval (10 s) away
        wait_for_line(proc, "INFO agent.capture.pipeline: captured", lines)
        # a manual capture while the agent runs is taken by the agent itself (b=1)
        manual = run_stickyctl("--config", str(cfg), "capture")
        assert manual.returncode == 0, manual.stderr
        wait_for_line(proc, "manual)", lines)
        status = json.loads(run_stickyctl("--config", str(cfg), "status", "--json").stdout)
        assert status["agent"]["running"] and status["agent"]["pid"] == proc.pid
        assert status["next_capture"] is not None
        # >= 2: on a loaded machine the next 10 s slot may come before these commands end
        assert status["queue"]["states"]["captured"]["count"] >= 2
        assert status["last_capture"]["outcome"] == "ok"  # the manual one, or a slot after it
        listing = run_stickyctl("--config", str(cfg), "queue", "ls")
        assert listing.stdout.count("captured") >= 2 and listing.stdout.count(" manual") == 1
        # a second agent on the same data folder refuses to start
        second = run_stickyctl("--config", str(cfg), "run")
        assert second.returncode == 1 and "another sticky-agent is already running" in second.stderr
    finally:
        proc.send_signal(signal.SIGTERM)
        out = proc.communicate(timeout=60)[1]
    assert proc.returncode == 0, out
    assert "received SIGTERM" in out and "sticky-agent stopped" in out
    text = run_stickyctl("--config", str(cfg), "status").stdout
    assert "NOT RUNNING" in text and "next capture    none scheduled" in text


class GatedCamera:
    """A camera whose exposure lasts until the test releases it."""

    sensor = "gated"

    def __init__(self) -> None:
        self.exposing = threading.Event()
        self.release = threading.Event()

    def open(self) -> None:
        pass

    def capture(self, quality: int, flash: Lighting = no_lighting) -> Frame:
        with flash():
            self.exposing.set()
            assert self.release.wait(30)
        return Frame(jpeg=tiny_jpeg(), width=64, height=48, sensor=self.sensor)

    def close(self) -> None:
        pass


def test_stop_finishes_the_capture_in_progress(write_config: Callable[..., Path]) -> None:
    agent = Agent(load_config(write_config(), environ={}))
    agent.start()
    assert agent.pipeline is not None and agent.scheduler is not None
    camera = GatedCamera()
    agent.pipeline.capturer.camera = camera
    queue_path = agent.pipeline.queue.path
    agent.scheduler._scheduler.modify_job(JOB_ID, next_run_time=dt.datetime.now(dt.UTC))
    assert camera.exposing.wait(10)
    stopper = threading.Thread(target=agent.stop)
    stopper.start()
    stopper.join(0.5)
    assert stopper.is_alive(), "stop() returned while a capture was still exposing"
    camera.release.set()
    stopper.join(30)
    assert not stopper.is_alive()
    from agent.queue import Queue

    q = Queue(queue_path)
    rows = q.images()
    assert len(rows) == 1 and (agent.config.storage.data_dir / rows[0].path).exists()
    assert q.attempts(limit=1)[0].outcome == "ok"


def test_capture_with_a_1970_clock_writes_nothing_and_says_so(write_config: Callable[..., Path]) -> None:
    agent = Agent(load_config(write_config(), environ={}))
    agent.start()
    try:
        assert agent.pipeline is not None
        agent.pipeline.capturer.now = lambda: dt.datetime(1970, 1, 1, 0, 3, tzinfo=dt.UTC)
        result = agent.capture_job()
        assert result.outcome == "clock"
        assert "before 2019-11-01" in (result.error or "")
        assert agent.pipeline.queue.images() == []
        assert not list(agent.config.storage.data_dir.glob("*/*/*.jpg"))
    finally:
        agent.stop()
    status = run_stickyctl("--config", str(agent.config.source), "status")
    assert "CLOCK" in status.stdout and "before 2019-11-01" in status.stdout


def test_status_before_the_first_run(write_config: Callable[..., Path]) -> None:
    result = run_stickyctl("--config", str(write_config()), "status")
    assert result.returncode == 0
    assert "the agent has not run" in result.stdout and "NOT RUNNING" in result.stdout


def test_capture_failure_exits_non_zero_without_traceback(write_config: Callable[..., Path]) -> None:
    cfg = write_config(camera={"type": "picamera2"})
    result = run_stickyctl("--config", str(cfg), "capture")
    assert result.returncode == 1
    # The camera fails at open (after the capture pipeline's own ERROR log line), not at build.
    assert result.stderr.splitlines()[-1].startswith(
        "stickyctl: error: capture failed: picamera2 camera: picamera2 is not installed"
    )
    assert "Traceback" not in result.stderr
    debug = run_stickyctl("--config", str(cfg), "--debug", "capture")
    assert "Traceback" in debug.stderr


def test_usage_errors(write_config: Callable[..., Path]) -> None:
    result = run_stickyctl("--config", str(write_config()), "queue", "ls", "--state", "lost")
    assert (
        result.returncode == 2 and "stickyctl: error:" in result.stderr and "unknown state" in result.stderr
    )
    result = run_stickyctl("frobnicate")
    assert result.returncode == 2 and "stickyctl: error: No such command" in result.stderr


def test_device_id_from_cpu_serial(tmp_path: Path) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nHardware\t: BCM2835\nSerial\t\t: 10000000512858F4\nModel\t: Pi\n")
    assert device_id(None, cpuinfo, tmp_path / "none") == "512858f4"
    dt_serial = tmp_path / "serial-number"
    dt_serial.write_bytes(b"00000000c0ffee42\x00")
    assert device_id(None, tmp_path / "none", dt_serial) == "c0ffee42"
    assert device_id("0a1b2c3d", cpuinfo) == "0a1b2c3d"
    with pytest.raises(DeviceIdError, match=r"set \[device\] id"):
        device_id(None, tmp_path / "none", tmp_path / "none")
    cpuinfo.write_text("Serial\t\t: 0000000000000000\n")
    with pytest.raises(DeviceIdError):
        device_id(None, cpuinfo, tmp_path / "none")
    with pytest.raises(StickyAgentError):
        device_id("ABCDEF12")
