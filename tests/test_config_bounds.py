"""`config check` refuses every value that would break `run` (issue 9, defect 4): finite
numbers only, bounds on every number, a schedule that fires at least once a day, a deeply
nested file, and warnings (not errors) for files systemd may provide later."""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import base_tables, run_stickyctl
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.config import ConfigError, config_from_mapping, config_warnings, load_config

SYNC = {"url": "https://api.example.org"}


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("[capture]\ninterval = nan", "capture.interval:"),
        ("[capture]\ninterval = inf", "capture.interval:"),
        ("[capture]\ninterval = 10000000000000000000", "capture.interval:"),
        ('[capture]\ninterval = "9999999h"', "capture.interval:"),
        ('[capture]\ncron = "0 0 31 2 *"', "capture.cron:"),
        ('[capture]\ncron = "0 12 * * 1"', "capture.cron:"),
        (
            '[capture]\ncron = "0 12 * * *"\nwindow = { start = "20:00", end = "06:00" }',
            "capture.window:",
        ),
        ('[capture]\ninterval = "24h"\nwindow = { start = "20:00", end = "21:00" }', "capture.window:"),
        ('[capture]\nlock_timeout = "9999999h"', "capture.lock_timeout:"),
        ("[retention]\nmin_free_disk_mb = inf", "retention.min_free_disk_mb:"),
        ("[retention]\nkeep_days = nan", "retention.keep_days:"),
        ("[retention]\nmax_data_gb = 1e300", "retention.max_data_gb:"),
        ("[storage]\nkeep_capture_log = 100000000000000000000", "storage.keep_capture_log:"),
        ('[sync]\nurl = "https://a.org"\nread_timeout = 0', "sync.read_timeout:"),
        ('[sync]\nurl = "https://a.org"\nread_timeout = nan', "sync.read_timeout:"),
        ('[sync]\nurl = "https://a.org"\nconnect_timeout = "0s"', "sync.connect_timeout:"),
        ('[sync]\nurl = "https://a.org"\nprobe_interval = "0s"', "sync.probe_interval:"),
        ('[sync]\nurl = "https://a.org"\nbackoff_max = "0s"', "sync.backoff_max:"),
        ('[sync]\nurl = "https://a.org"\nbandwidth_kbps = 1e-300', "sync.bandwidth_kbps:"),
        ('[sync]\nurl = "https://a.org"\ndaily_budget_mb = inf', "sync.daily_budget_mb:"),
        ('[sync]\nurl = "https://a.org"\nmax_attempts = 100000000000000000000', "sync.max_attempts:"),
        ("[location]\nlat = 1\nlng = 2\nalt = inf", "location.alt:"),
        ('[camera]\ntype = "synthetic"\nseed = 100000000000000000000', "camera.seed:"),
        ('[camera]\ntype = "synthetic"\ninsects_per_capture = 1e300', "camera.insects_per_capture:"),
        ('[sensors]\ntype = "fake"\ntemperature = nan', "sensors.temperature:"),
        ('[sensors]\ntype = "fake"\nhumidity = 1e300', "sensors.humidity:"),
        ("x = " + "[" * 5000 + "]" * 5000, "too deeply nested"),
    ],
)
def test_config_check_refuses_what_would_break_run(tmp_path: Path, raw: str, expected: str) -> None:
    path = tmp_path / "agent.toml"
    path.write_text(raw + "\n")
    with pytest.raises(ConfigError) as err:
        load_config(path, environ={})
    assert expected in str(err.value)
    result = run_stickyctl("--config", str(path), "config", "check")
    assert result.returncode == 1, result.stdout
    assert result.stderr.startswith("stickyctl: error:") and expected in result.stderr
    assert "Traceback" not in result.stderr


def test_a_missing_ca_bundle_or_credentials_file_is_a_warning(
    write_config: Callable[..., Path], tmp_path: Path
) -> None:
    path = write_config(
        sync={**SYNC, "ca_bundle": str(tmp_path / "nope.pem"), "credentials": str(tmp_path / "creds")}
    )
    config = load_config(path, environ={})  # not an error: systemd may provide them later
    warnings = config_warnings(config, environ={})
    assert any(w.startswith("sync.ca_bundle: no such file") for w in warnings), warnings
    assert any(w.startswith("sync.credentials: no such file") for w in warnings), warnings
    result = run_stickyctl("--config", str(path), "config", "check")
    assert result.returncode == 0
    assert "WARNING sync.ca_bundle: no such file" in result.stdout
    assert "WARNING sync.credentials: no such file" in result.stdout


# -- property: whatever the numbers, either a ConfigError or a config that runs -------------------

NUMBERS = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.sampled_from(["0s", "1s", "9999999h", "25h", "24h", "10s", "1h30m", "-1s", "nan"]),
)
KEYS = [
    ("capture", "interval"),
    ("capture", "lock_timeout"),
    ("capture", "jpeg_quality"),
    ("storage", "keep_capture_log"),
    ("retention", "min_free_disk_mb"),
    ("retention", "keep_days"),
    ("retention", "max_data_gb"),
    ("sync", "connect_timeout"),
    ("sync", "read_timeout"),
    ("sync", "probe_interval"),
    ("sync", "backoff_max"),
    ("sync", "bandwidth_kbps"),
    ("sync", "daily_budget_mb"),
    ("sync", "max_attempts"),
    ("sync", "batch_size"),
    ("camera", "seed"),
    ("camera", "insects_per_capture"),
    ("sensors", "temperature"),
]


def _finite_everywhere(value: Any) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, dict):
        return all(_finite_everywhere(v) for v in value.values())
    if isinstance(value, list | tuple):
        return all(_finite_everywhere(v) for v in value)
    return True


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(st.sampled_from(KEYS), NUMBERS), min_size=1, max_size=4))
def test_any_accepted_config_runs(tmp_path: Path, changes: list[tuple[tuple[str, str], Any]]) -> None:
    from agent.capture.scheduler import build_trigger

    tables: dict[str, dict[str, Any]] = {k: dict(v) for k, v in base_tables(tmp_path).items()}
    tables["sync"] = dict(SYNC)
    for (section, key), value in changes:
        tables.setdefault(section, {})[key] = value
    try:
        config = config_from_mapping(tables, environ={})
    except ConfigError as e:
        assert e.problems and all(":" in p for p in e.problems)
        return
    assert _finite_everywhere(config.model_dump())
    # the schedule fires, and within a day, whenever it is asked
    trigger = build_trigger(config.capture)
    now = dt.datetime(2026, 6, 1, 12, 34, 56, tzinfo=dt.UTC)
    nxt = trigger.get_next_fire_time(None, now)
    assert nxt is not None and nxt - now <= dt.timedelta(days=1)
    for seconds in (config.capture.lock_timeout, config.sinks[0].read_timeout, config.sinks[0].backoff_max):
        dt.timedelta(seconds=seconds)  # usable as a time (no OverflowError)
