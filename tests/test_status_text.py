"""What a technician reads in ``stickyctl status``: a verdict first, lines that fit a phone, one
time format and decimal units (as ``doctor``), nothing about sync without a sink, and insect
counts that do not add up the same insects image after image."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import run_stickyctl

from agent import humanize
from agent.config import load_config
from agent.queue import Queue
from agent.queue.syncrows import add_annotation
from agent.status import MAX_LINE, collect_status, format_status

NOW = dt.datetime(2026, 6, 1, 12, 0, 0, tzinfo=dt.UTC)
ISO_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d")  # the machine's format, not the technician's
OUR_TIME = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC")


def healthy(**changes: Any) -> dict[str, Any]:
    """collect_status data of a trap that is fine: running, trusted clock, empty backlog."""
    s: dict[str, Any] = {
        "version": "0.1.0",
        "config": "/etc/sticky-agent/agent.toml",
        "schedule": "every 20 min",
        "device": "0a1b2c3d",
        "agent": {"running": True, "pid": 42, "heartbeat": NOW.isoformat(), "stale": False},
        "disk": {
            "path": "/var/lib/x",
            "free_bytes": 31_200_000_000,
            "total_bytes": 63_900_000_000,
            "min_free_bytes": 200_000_000,
        },
        "clock": {"now": NOW.isoformat(), "trusted": True, "source": "ntp", "detail": "NTP synchronised"},
        "next_capture": (NOW + dt.timedelta(minutes=20)).isoformat(),
        "last_capture": {
            "time": (NOW - dt.timedelta(minutes=1)).isoformat(),
            "outcome": "ok",
            "error": None,
            "manual": False,
        },
        "last_image_time": (NOW - dt.timedelta(minutes=1)).isoformat(),
        "captures_24h": {"ok": 72},
        "queue": {
            "path": "q",
            "states": {"verified": {"count": 72, "bytes": 37_000_000}},
            "total": 72,
            "waiting": 0,
            "waiting_bytes": 0,
        },
        "oldest_waiting": None,
        "last_errors": [],
        "sync": None,
        "sinks": {},
        "problems": [],
        "insects": None,
    }
    s.update(changes)
    return s


def sink(**changes: Any) -> dict[str, Any]:
    """One sink's status (``sinks.<name>``) that is fine."""
    k: dict[str, Any] = {
        "type": "stickypi",
        "address": "https://api.example.org",
        "required": True,
        "state": "ok",
        "last_state": "ok",
        "reachable": True,
        "reachable_since": None,
        "checked": NOW.isoformat(),
        "last_error": None,
        "verified": 72,
        "waiting": 0,
        "waiting_bytes": 0,
        "uploaded": 0,
        "failed": 0,
        "conflict": 0,
        "annotations": {"sent": 0, "pending": 0, "failed": 0},
        "oldest_waiting": None,
        "last_success": None,
        "last_pass": None,
        "throughput_bytes_per_s": None,
        "eta_seconds": None,
        "next_failed_retry": None,
        "problems": [],
    }
    k.update(changes)
    return k


def with_sync(**changes: Any) -> dict[str, Any]:
    return healthy(sinks={"stickypi": sink(**changes)}, sync={"sinks": 1, "budget_left_bytes": None})


def test_a_healthy_trap_says_ok_first() -> None:
    assert format_status(with_sync()).splitlines()[0] == "OK: capturing every 20 min, 0 waiting"
    assert format_status(healthy()).splitlines()[0] == "OK: capturing every 20 min, 72 images stored"


def test_without_a_sink_nothing_mentions_sync() -> None:
    text = format_status(healthy(oldest_waiting={"name": "x.jpg", "datetime": NOW.isoformat()}))
    assert not re.search(r"\bsync\b|\bapi\b|waiting|backlog|upload", text, re.IGNORECASE), text
    assert "waiting to sync" in format_status(with_sync())


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"agent": {"running": False, "pid": None}}, "PROBLEM: agent NOT RUNNING"),
        (
            {"agent": {"running": True, "pid": 4, "stale": True, "heartbeat": NOW.isoformat()}},
            "PROBLEM: agent stuck (no heartbeat)",
        ),
        (
            {
                "last_capture": {
                    "time": NOW.isoformat(),
                    "outcome": "camera",
                    "error": "boom",
                    "manual": False,
                }
            },
            "PROBLEM: last capture CAMERA",
        ),
        (
            {"clock": {"now": NOW.isoformat(), "trusted": False, "source": "none", "detail": "no NTP"}},
            "PROBLEM: clock NOT TRUSTED",
        ),
        (
            {
                "disk": {
                    "path": "/",
                    "free_bytes": 150_000_000,
                    "total_bytes": 8e9,
                    "min_free_bytes": 200_000_000,
                }
            },
            "PROBLEM: disk full (150.0 MB free)",
        ),
    ],
)
def test_a_problem_is_named_on_the_first_line(changes: dict[str, Any], expected: str) -> None:
    assert format_status(healthy(**changes)).splitlines()[0] == expected


def test_sync_problems_reach_the_verdict_and_many_problems_still_fit() -> None:
    down = with_sync(reachable=False, last_state="unreachable")
    assert format_status(down).startswith("PROBLEM: stickypi unreachable\n")
    auth = with_sync(last_error="/get_token: bad password (401)", last_state="auth")
    assert format_status(auth).startswith("PROBLEM: stickypi refuses our credentials\n")
    worst = with_sync(
        reachable=False,
        last_state="unreachable",
        failed=1,
        problems=[{"state": "failed", "name": "a.jpg", "reason": "x"}],
    )
    worst.update(
        agent={"running": False, "pid": None},
        clock={"now": NOW.isoformat(), "trusted": False, "source": "none", "detail": "no NTP"},
        last_capture={"time": NOW.isoformat(), "outcome": "disk_full", "error": "full", "manual": True},
        disk={"path": "/", "free_bytes": 1e6, "total_bytes": 8e9, "min_free_bytes": 2e8},
    )
    first = format_status(worst).splitlines()[0]
    assert first.startswith("PROBLEM: agent NOT RUNNING; last capture DISK_FULL") and len(first) <= MAX_LINE


def test_every_line_fits_one_time_format_decimal_units() -> None:
    long_error = "camera: " + "the camera did not answer within 10 s, reopened it; " * 6
    s = with_sync(
        problems=[{"state": "failed", "name": "0a1b2c3d.2026-06-01_11-40-00.jpg", "reason": long_error}],
        last_pass={
            "started": (NOW - dt.timedelta(hours=3)).isoformat(),
            "outcome": "ok",
            "images_sent": 3,
            "bytes_sent": 1_500_000,
            "annotations_sent": 2,
            "seconds": 1.5,
        },
        throughput_bytes_per_s=1_000_000,
    )
    s.update(
        last_capture={"time": NOW.isoformat(), "outcome": "camera", "error": long_error, "manual": False},
        last_errors=[{"time": NOW.isoformat(), "outcome": "camera", "error": long_error}],
        last_quarantine="/var/lib/sticky-agent/images/quarantine/" + "x" * 150 + ".jpg",
        problems=[{"state": "quarantined", "name": "0a1b2c3d.2026-06-01_11-50-00.jpg", "reason": long_error}],
    )
    long_name = "a-lab-data-lake-with-a-long-name"  # 32 characters, the longest a name may be
    s["sinks"][long_name] = sink(
        type="datalake",
        address="https://" + "lake." * 12 + "example.org",
        required=False,
        last_state="refusing",
        last_error=long_error,
        reachable_since=(NOW - dt.timedelta(minutes=5)).isoformat(),
        waiting=12,
        waiting_bytes=12_000_000,
        oldest_waiting={"name": "0a1b2c3d.2026-06-01_08-00-00.jpg", "datetime": NOW.isoformat()},
        conflict=1,
    )
    text = format_status(s)
    flat = " ".join(text.split())  # a long line continues, indented, on the next ones
    assert f"sink {long_name} https://lake." in flat and "(datalake, not required): answers" in flat
    assert "  conflicts     1: the sink holds another image under the same name" in text
    assert all(len(line) <= MAX_LINE for line in text.splitlines()), text
    assert not ISO_TIME.search(text), text
    assert "2026-06-01 12:00:00 UTC" in text and "2026-06-01 09:00:00 UTC (3 h ago)" in text
    assert "free disk       31.2 GB of 63.9 GB" in text  # decimal: 1 GB = 10^9 bytes
    assert "1.5 MB" in text and "GiB" not in text and "KB" not in text


def test_units_and_times() -> None:
    assert [humanize.size(n) for n in (999, 1000, 1_500_000, 31_200_000_000)] == [
        "999 B",
        "1.0 kB",
        "1.5 MB",
        "31.2 GB",
    ]
    assert humanize.when(dt.datetime(2026, 6, 1, 14, 0, tzinfo=dt.timezone(dt.timedelta(hours=2)))) == (
        "2026-06-01 12:00:00 UTC"
    )
    assert humanize.duration(20 * 60) == "20 min" and humanize.duration(90 * 60) == "1 h 30 min"


def test_insects_show_the_latest_count_and_what_it_adds(write_config: Callable[..., Path]) -> None:
    config = load_config(write_config(detector={"type": "builtin"}), environ={})
    config.storage.data_dir.mkdir(parents=True)
    queue = Queue(config.storage.queue_path)
    try:
        for minute, insects in ((0, 5), (20, 8), (40, 7)):
            when = NOW - dt.timedelta(hours=1) + dt.timedelta(minutes=minute)
            image = queue.add_image(
                device="0a1b2c3d",
                when=when,
                path=f"0a1b2c3d/{minute}.jpg",
                md5="0" * 32,
                size=1,
                width=1,
                height=1,
                metadata={},
                manual=False,
            )
            add_annotation(queue, image.id, "builtin", "1-x", [{"name": "insect"}] * insects)
            text = format_status(collect_status(config, now=NOW))
            (line,) = [x for x in text.splitlines() if x.startswith("insects")]
            if minute == 0:
                assert line == "insects         5 on the latest image (0.jpg)"
            elif minute == 20:
                assert line == "insects         8 on the latest image (20.jpg), 3 new since the previous one"
            else:  # one fewer: an insect hidden or missed, never a negative arrival
                assert line == "insects         7 on the latest image (40.jpg), 0 new since the previous one"
    finally:
        queue.close()


def test_status_command_of_a_capture_only_trap(write_config: Callable[..., Path]) -> None:
    cfg = write_config()
    assert run_stickyctl("--config", str(cfg), "capture").returncode == 0
    text = run_stickyctl("--config", str(cfg), "status").stdout
    first = text.splitlines()[0]
    assert first.startswith("PROBLEM: agent NOT RUNNING"), text
    assert "1 images" in text and not re.search(r"\bsync\b|\bapi\b|backlog|waiting", text, re.IGNORECASE), (
        text
    )
    assert all(len(line) <= MAX_LINE for line in text.splitlines()) and not ISO_TIME.search(text)
    assert OUR_TIME.search(text)
