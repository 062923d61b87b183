"""stickyctl's exits a technician sees: Ctrl-C anywhere ends with 130 and no traceback, a missing
extra is one ``stickyctl: error:`` line saying how to install it (the trap's core runs without
numpy, OpenCV and werkzeug), and ``demo`` on a busy port is an error line with a ``--port`` way out."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from conftest import REPO
from helpers.net import free_port
from stickypi_spec import REAL_IMAGES
from test_agent import wait_for_line

HELPER = REPO / "tests" / "helpers" / "import_faults.py"
EXTRAS = "numpy,cv2,werkzeug"


def env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("STICKY_AGENT_")}


def with_import_faults(mode: str, names: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(HELPER), mode, names, "--", *args],
        capture_output=True,
        text=True,
        env=env(),
        cwd=REPO,
        timeout=120,
    )


def start(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "agent", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=env(),
        cwd=REPO,
    )


def interrupt(proc: subprocess.Popen[str], lines: list[str]) -> str:
    """Send SIGINT (Ctrl-C) and return everything the process wrote to stderr."""
    proc.send_signal(signal.SIGINT)
    _, rest = proc.communicate(timeout=60)
    return "".join(lines) + rest


@pytest.fixture
def busy_port() -> Iterator[int]:
    """A port of 127.0.0.1 that another program listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


# --- Ctrl-C -------------------------------------------------------------------------------------


def test_ctrl_c_while_modules_load_exits_130_without_traceback(write_config: Callable[..., Path]) -> None:
    res = with_import_faults("interrupt", "agent.config", "--config", str(write_config()), "status")
    assert res.returncode == 130, res.stderr
    assert "Traceback" not in res.stderr


def test_ctrl_c_in_a_command_exits_130_without_traceback(write_config: Callable[..., Path]) -> None:
    # The status command's module is imported inside the command: a Ctrl-C that lands there.
    res = with_import_faults("interrupt", "agent.status", "--config", str(write_config()), "status")
    assert res.returncode == 130, res.stderr
    assert "Traceback" not in res.stderr and "aborted" not in res.stderr


def test_ctrl_c_stops_run_cleanly_with_130(write_config: Callable[..., Path]) -> None:
    proc = start("--config", str(write_config()), "run")
    lines: list[str] = []
    wait_for_line(proc, "started: device", lines)
    err = interrupt(proc, lines)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "received SIGINT" in err and "sticky-agent stopped" in err


def test_ctrl_c_stops_the_devserver_with_130(tmp_path: Path) -> None:
    proc = start("devserver", "--port", "0", "--data-dir", str(tmp_path / "srv"), "--user", "a:b")
    lines: list[str] = []
    wait_for_line(proc, "Sticky Pi devserver", lines)
    err = interrupt(proc, lines)
    assert proc.returncode == 130, err
    assert "Traceback" not in err


# --- demo: --port and a busy port ----------------------------------------------------------------


def demo_config(write_config: Callable[..., Path], tmp_path: Path, port: int) -> Path:
    return write_config(
        sync={"url": f"http://127.0.0.1:{port}", "credentials": str(tmp_path / "creds")},
        camera={"type": "replay", "folder": str(REAL_IMAGES)},
    )


def test_demo_on_a_busy_port_is_one_error_line(
    write_config: Callable[..., Path], tmp_path: Path, busy_port: int
) -> None:
    res = with_import_faults(
        "missing", "nothing", "--config", str(demo_config(write_config, tmp_path, busy_port)), "demo"
    )
    assert res.returncode == 1, res.stderr
    (line,) = res.stderr.strip().splitlines()
    assert line.startswith(f"stickyctl: error: cannot listen on 127.0.0.1:{busy_port}: ") and "--port" in line


def test_demo_port_option_serves_and_syncs_there(
    write_config: Callable[..., Path], tmp_path: Path, busy_port: int
) -> None:
    port = free_port()
    proc = start("--config", str(demo_config(write_config, tmp_path, busy_port)), "demo", "--port", str(port))
    lines: list[str] = []
    line = wait_for_line(proc, "demo stickypi double for sink stickypi at", lines)
    assert f"http://127.0.0.1:{port}" in line
    wait_for_line(proc, f"sink stickypi at http://127.0.0.1:{port} is reachable", lines)
    err = interrupt(proc, lines)
    assert proc.returncode == 130, err
    assert "Traceback" not in err


# --- the core without its extras -----------------------------------------------------------------


def test_core_commands_run_without_numpy_opencv_or_werkzeug(
    write_config: Callable[..., Path], tmp_path: Path
) -> None:
    cfg = write_config(camera={"type": "replay", "folder": str(REAL_IMAGES)})
    for args in (["config", "check"], ["capture"], ["status"], ["queue", "ls"]):
        res = with_import_faults("missing", EXTRAS, "--config", str(cfg), *args)
        assert res.returncode == 0, (args, res.stderr)
    assert "1 images" in with_import_faults("missing", EXTRAS, "--config", str(cfg), "status").stdout


@pytest.mark.parametrize(
    ("args", "needs", "hint"),
    [
        (
            ["devserver", "--port", "0", "--data-dir", "{tmp}/srv", "--user", "a:b"],
            "this needs werkzeug, which is not installed",
            "[dev]",
        ),
        (  # the detector seam names the detector type and what it needs
            ["detect", "run", str(REAL_IMAGES / "5c173ff2.2020-06-20_21-33-24.jpg")],
            "detector type 'learned' needs OpenCV and NumPy",
            "python3-opencv",
        ),
    ],
)
def test_a_missing_extra_is_one_error_line_naming_it(
    tmp_path: Path, args: list[str], needs: str, hint: str
) -> None:
    res = with_import_faults("missing", EXTRAS, *(a.replace("{tmp}", str(tmp_path)) for a in args))
    assert res.returncode == 1, res.stderr
    (line,) = res.stderr.strip().splitlines()
    assert re.match(rf"stickyctl: error: {re.escape(needs)}.*{re.escape(hint)}", line), line


def test_the_synthetic_camera_without_numpy_says_how_to_get_it(write_config: Callable[..., Path]) -> None:
    res = with_import_faults("missing", EXTRAS, "--config", str(write_config()), "capture")
    assert res.returncode == 1
    assert "camera type 'synthetic' needs numpy, which is not installed" in res.stderr, res.stderr
    assert "python3-numpy" in res.stderr and "sticky-agent[dev]" in res.stderr
