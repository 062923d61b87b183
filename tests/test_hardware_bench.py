"""hardware/bench.py: runs on any machine against the demo's synthetic camera and mock pins,
prints one OK/WARN/FAIL/SKIP line per test, and exits 1 if anything failed."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from conftest import REPO

BENCH = REPO / "hardware" / "bench.py"


def bench(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(BENCH), *args], capture_output=True, text=True, timeout=120, cwd=REPO
    )


def test_bench_on_the_demo_config(tmp_path: Path) -> None:
    result = bench("--config", "config/demo.toml", "--button-wait", "10", "--out", str(tmp_path / "f.jpg"))
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    for prefix in (
        "OK   config: config/demo.toml",
        "OK   flash: GPIO 23 switched on and off 3 times",
        "OK   camera: synthetic opened",
        "OK   camera frame (no flash): synthetic 2592x1944",
        "OK   camera frame (flash): synthetic 2592x1944",
        "OK   button: GPIO 22 press seen",
        "OK   sensor temperature: 21.5",
        "OK   sensor battery: 80",
    ):
        assert any(line.startswith(prefix) for line in lines), f"{prefix!r} missing:\n{result.stdout}"
    assert not any(line.startswith("FAIL") for line in lines)
    assert lines[-1].startswith("bench: ")
    for name in ("f-dark.jpg", "f-flash.jpg"):
        assert (tmp_path / name).read_bytes()[:2] == b"\xff\xd8"


def test_bench_fails_on_a_sensor_that_does_not_read(
    write_config: Callable[..., Path], tmp_path: Path
) -> None:
    (tmp_path / "iio").mkdir()
    cfg = write_config(
        sensors={
            "type": "hat",
            "iio_root": str(tmp_path / "iio"),
            "climate_attempts": 1,
            "climate_retry_delay": 0,
            "battery": False,
        }
    )
    result = bench("--config", str(cfg), "--button-wait", "0", "--out", str(tmp_path / "f.jpg"))
    assert result.returncode == 1, result.stdout + result.stderr
    assert "FAIL sensor temperature: no reading" in result.stdout
    assert "SKIP button: GPIO 22: not waited for" in result.stdout


def test_bench_reports_a_bad_config(tmp_path: Path) -> None:
    result = bench("--config", str(tmp_path / "missing.toml"))
    assert result.returncode == 1 and result.stdout.startswith("FAIL config: no configuration file")
