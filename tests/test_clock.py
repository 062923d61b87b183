"""Clock trust: where the time comes from (NTP, an RTC, nothing), from fake timesyncd and sysfs files."""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from agent.capture.clock import clock_state, last_sync_time
from agent.config import Config
from agent.status import collect_status, format_status

NOW = dt.datetime(2024, 6, 1, 12, 0, 0, tzinfo=dt.UTC)


def marker(tmp_path: Path, synced_at: dt.datetime | None) -> Path:
    path = tmp_path / "timesync" / "synchronized"
    if synced_at is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch()
        os.utime(path, (synced_at.timestamp(), synced_at.timestamp()))
    return path


def rtc(tmp_path: Path, name: str | None, hctosys: str = "0", since_epoch: float | str | None = None) -> Path:
    folder = tmp_path / "rtc0"
    folder.mkdir(parents=True, exist_ok=True)
    if name is not None:
        (folder / "name").write_text(name + "\n")
        (folder / "hctosys").write_text(hctosys + "\n")
    if since_epoch is not None:
        value = since_epoch if isinstance(since_epoch, str) else str(int(since_epoch))
        (folder / "since_epoch").write_text(value + "\n")
    return folder


def no_timedatectl() -> bool | None:
    return None


def test_ntp_from_the_timesyncd_marker(tmp_path: Path) -> None:
    synced = NOW - dt.timedelta(minutes=5)
    path = marker(tmp_path, synced)
    state = clock_state(NOW, marker=path, rtc_dir=rtc(tmp_path, None), timedatectl=no_timedatectl)
    assert (state.source, state.synchronised, state.trusted) == ("ntp", True, True)
    assert state.last_sync == synced.timestamp() == last_sync_time(path)
    assert state.rtc_device is None
    assert state.detail == "NTP synchronised, last sync 2024-06-01 11:55:00 UTC"


def test_ntp_from_timedatectl_when_there_is_no_marker(tmp_path: Path) -> None:
    calls: list[int] = []

    def says_yes() -> bool | None:
        calls.append(1)
        return True

    state = clock_state(
        NOW,
        marker=marker(tmp_path, None),
        rtc_dir=rtc(tmp_path, "rtc-ds1307 1-0068", "1", NOW.timestamp()),
        timedatectl=says_yes,
    )
    assert (state.source, state.synchronised, state.trusted, state.last_sync) == ("ntp", True, True, None)
    assert state.rtc_device == "rtc-ds1307 1-0068"
    assert "RTC rtc-ds1307 1-0068 present" in state.detail
    assert calls == [1]


def test_the_marker_needs_no_timedatectl(tmp_path: Path) -> None:
    def must_not_run() -> bool | None:
        raise AssertionError("timedatectl ran")

    state = clock_state(NOW, marker=marker(tmp_path, NOW), rtc_dir=tmp_path / "x", timedatectl=must_not_run)
    assert state.source == "ntp"


def test_rtc_that_set_the_clock_at_boot(tmp_path: Path) -> None:
    state = clock_state(
        NOW,
        marker=marker(tmp_path, None),
        rtc_dir=rtc(tmp_path, "rtc-ds1307 1-0068", hctosys="1", since_epoch=NOW.timestamp() + 1),
        timedatectl=lambda: False,
    )
    assert (state.source, state.synchronised, state.trusted) == ("rtc", False, True)
    assert state.rtc_device == "rtc-ds1307 1-0068"
    assert state.detail == "no NTP synchronisation; RTC rtc-ds1307 1-0068 set the system clock at boot"


def test_rtc_that_agrees_with_the_system_clock(tmp_path: Path) -> None:
    # Pi OS sets the clock from the RTC by a udev rule, after boot: hctosys stays 0
    state = clock_state(
        NOW,
        marker=marker(tmp_path, None),
        rtc_dir=rtc(tmp_path, "rtc-ds3231 1-0068", hctosys="0", since_epoch=NOW.timestamp() - 3),
        timedatectl=no_timedatectl,
    )
    assert (state.source, state.trusted) == ("rtc", True)
    assert "agrees with the system clock" in state.detail


def test_rtc_drift_since_boot_is_reported_but_trusted(tmp_path: Path) -> None:
    state = clock_state(
        NOW,
        marker=marker(tmp_path, None),
        rtc_dir=rtc(tmp_path, "rtc-ds1307 1-0068", hctosys="1", since_epoch=NOW.timestamp() + 40),
        timedatectl=no_timedatectl,
    )
    assert (state.source, state.trusted) == ("rtc", True)
    assert "differ by +40 s" in state.detail


def test_an_rtc_that_disagrees_did_not_set_the_clock(tmp_path: Path) -> None:
    state = clock_state(
        NOW,
        marker=marker(tmp_path, None),
        rtc_dir=rtc(tmp_path, "rtc-ds1307 1-0068", hctosys="0", since_epoch=NOW.timestamp() - 3600),
        timedatectl=no_timedatectl,
    )
    assert (state.source, state.trusted, state.rtc_device) == ("none", False, "rtc-ds1307 1-0068")
    assert "-3600 s from the system clock" in state.detail


def test_an_unset_rtc_is_not_a_source(tmp_path: Path) -> None:
    year_2000 = dt.datetime(2000, 1, 1, tzinfo=dt.UTC).timestamp()
    state = clock_state(
        NOW,
        marker=marker(tmp_path, None),
        rtc_dir=rtc(tmp_path, "rtc-ds1307 1-0068", hctosys="1", since_epoch=year_2000),
        timedatectl=no_timedatectl,
    )
    assert (state.source, state.trusted) == ("none", False)
    assert "never set" in state.detail and "hwclock -w" in state.detail


def test_an_unreadable_rtc_that_did_not_set_the_clock(tmp_path: Path) -> None:
    state = clock_state(
        NOW,
        marker=marker(tmp_path, None),
        rtc_dir=rtc(tmp_path, "rtc-ds1307 1-0068", hctosys="0"),
        timedatectl=no_timedatectl,
    )
    assert (state.source, state.trusted) == ("none", False)
    assert "unreadable" in state.detail


def test_no_source_at_all(tmp_path: Path) -> None:
    state = clock_state(
        NOW, marker=marker(tmp_path, None), rtc_dir=tmp_path / "no-rtc", timedatectl=lambda: False
    )
    assert state.source == "none" and not state.synchronised and not state.trusted
    assert state.last_sync is None and state.rtc_device is None
    assert "no NTP synchronisation and no RTC" in state.detail


@pytest.mark.parametrize("source", ["ntp", "rtc"])
def test_a_time_before_2019_is_never_trusted(tmp_path: Path, source: str) -> None:
    boot = dt.datetime(1970, 1, 1, 0, 1, tzinfo=dt.UTC)
    path = marker(tmp_path, boot if source == "ntp" else None)
    rtc_dir = rtc(tmp_path, "rtc-ds1307 1-0068", hctosys="1")
    state = clock_state(boot, marker=path, rtc_dir=rtc_dir, timedatectl=no_timedatectl)
    assert state.source == source and not state.trusted
    assert "before 2019-11-01" in state.detail


def test_status_shows_the_clock_state(
    config: Config, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import agent.status

    real: Callable[..., object] = clock_state
    path = marker(tmp_path, NOW - dt.timedelta(minutes=1))
    monkeypatch.setattr(
        agent.status,
        "clock_state",
        lambda now=None: real(now, marker=path, rtc_dir=tmp_path / "none", timedatectl=no_timedatectl),
    )
    status = collect_status(config, now=NOW)
    clock = status["clock"]
    assert (clock["source"], clock["trusted"], clock["ntp_synchronised"]) == ("ntp", True, True)
    assert clock["last_sync"] == "2024-06-01T11:59:00+00:00"
    text = format_status(status)
    assert "clock           2024-06-01 12:00:00 UTC (trusted, source ntp: NTP synchronised" in text
