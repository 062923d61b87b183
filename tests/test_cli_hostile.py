"""Small hostile inputs to stickyctl (issue 9, defect 12, local parts): each a one-line
``stickyctl: error:`` or a clean answer; no hang, no traceback; `queue ls --json` streams."""

from __future__ import annotations

import io
import json
import sqlite3
import struct
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import REPO, run_stickyctl
from PIL import Image

from agent.config import load_config
from agent.service import Pipeline


def one_line_error(result: subprocess.CompletedProcess[str]) -> None:
    assert result.returncode != 0
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("stickyctl: error:"), result.stderr


@pytest.mark.parametrize("command", [["run"], ["capture"], ["queue", "ls"], ["sync"]])
def test_a_data_folder_that_is_a_file(
    write_config: Callable[..., Path], tmp_path: Path, command: list[str]
) -> None:
    data = tmp_path / "data"
    data.write_text("I am a file")
    creds = tmp_path / "creds"
    creds.write_text("trap:secret\n")
    creds.chmod(0o600)
    cfg = write_config(sync={"url": "http://127.0.0.1:9", "credentials": str(creds)})
    result = run_stickyctl("--config", str(cfg), *command, timeout=60)
    one_line_error(result)
    assert str(data) in result.stderr
    status = run_stickyctl("--config", str(cfg), "status", timeout=60)
    assert "Traceback" not in status.stderr


def test_a_garbage_datetime_row_in_queue_ls_and_status(write_config: Callable[..., Path]) -> None:
    cfg = write_config()
    pipeline = Pipeline.build(load_config(cfg, environ={}))
    try:
        assert pipeline.capturer.capture().ok
        path = pipeline.config.storage.queue_path
    finally:
        pipeline.close()
    with sqlite3.connect(path) as db:
        db.execute("UPDATE images SET datetime = 'garbage', size = 'x'")
    for args in (["queue", "ls"], ["queue", "ls", "--json"], ["status"], ["status", "--json"]):
        result = run_stickyctl("--config", str(cfg), *args, timeout=60)
        assert result.returncode == 0 and "Traceback" not in result.stderr, (args, result.stderr)
    listing = run_stickyctl("--config", str(cfg), "queue", "ls", "--json")
    rows = json.loads(listing.stdout)
    assert len(rows) == 1 and rows[0]["datetime"] == "garbage"


def _bomb(tmp_path: Path) -> Path:
    """A small JPEG whose header claims 65000 x 65000 pixels."""
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), "yellow").save(buf, "JPEG")
    data = bytearray(buf.getvalue())
    sof = data.index(b"\xff\xc0")
    struct.pack_into(">HH", data, sof + 5, 65000, 65000)
    path = tmp_path / "bomb.jpg"
    path.write_bytes(bytes(data))
    return path


def test_detect_run_on_a_decompression_bomb(tmp_path: Path) -> None:
    pytest.importorskip("cv2")
    result = run_stickyctl("detect", "run", str(_bomb(tmp_path)), timeout=120)
    one_line_error(result)
    assert "bomb.jpg" in result.stderr


@pytest.mark.slow
def test_queue_ls_json_streams_a_long_queue(write_config: Callable[..., Path]) -> None:
    """`queue ls --limit 100000 --json` took 472 MB; streamed, it stays small."""
    cfg = write_config()
    Pipeline.build(load_config(cfg, environ={})).close()
    path = load_config(cfg, environ={}).storage.queue_path
    n = 100_000
    with sqlite3.connect(path) as db:
        db.executemany(
            "INSERT INTO images (device, datetime, path, md5, size, width, height, metadata, manual,"
            " state, attempts, created_at, updated_at) VALUES ('0a1b2c3d', ?, ?, ?, 1000, 4, 3, ?, 0,"
            " 'captured', 0, '2026-06-01 00:00:00', '2026-06-01 00:00:00')",
            (
                (
                    f"2026-06-01 00:00:{i % 60:02d}.{i:06d}",
                    f"0a1b2c3d/2026-06-01/{i:08d}.jpg",
                    "0" * 32,
                    json.dumps({"record": {"x": "y" * 200}}),
                )
                for i in range(n)
            ),
        )
    proc = subprocess.run(
        [sys.executable, "-c", PEAK_RSS, "--config", str(cfg), "queue", "ls", "--limit", str(n), "--json"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
    )
    assert proc.returncode == 0, proc.stderr
    peak_mb = int(proc.stderr.split("PEAK_RSS_KB ")[1].split()[0]) / 1024
    rows = json.loads(proc.stdout)
    assert len(rows) == n and rows[0]["name"] == "00099959.jpg"
    print(f"queue ls --limit {n} --json: peak RSS {peak_mb:.0f} MB")
    assert peak_mb < 150, f"{peak_mb:.0f} MB"


#: Run stickyctl and print its own peak RSS on stderr when it exits: VmHWM, this process's own
#: high-water mark (ru_maxrss would also count the forking pytest's size: Linux keeps it across exec).
PEAK_RSS = (
    "import atexit, sys\n"
    "def hwm():\n"
    "    line = next(x for x in open('/proc/self/status') if x.startswith('VmHWM:'))\n"
    "    sys.stderr.write(f'PEAK_RSS_KB {line.split()[1]}\\n')\n"
    "atexit.register(hwm)\n"
    "from agent.cli import main\n"
    "sys.exit(main(sys.argv[1:]))\n"
)
