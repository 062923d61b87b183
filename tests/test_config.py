"""Config errors: each bad input names its key path and reason, and stickyctl exits non-zero."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import REPO, run_stickyctl
from stickypi_spec import REAL_IMAGES

from agent.config import (
    ReplayCameraConfig,
    SyntheticCameraConfig,
    config_from_mapping,
    load_config,
    parse_duration,
    resolve_config_path,
)
from agent.errors import ConfigError


@pytest.mark.parametrize(
    ("tables", "expected"),
    [
        ({"capture": {"interval": "0s"}}, 'capture.interval: must be a duration >= 10s, got "0s"'),
        (
            {"capture": {"interval": "soon"}},
            'capture.interval: must be a duration like 30s, 20m or 1h, got "soon"',
        ),
        ({"capture": {"intervall": "20m"}}, "capture.intervall: unknown key"),
        (
            {"capture": {"jpeg_quality": 101}},
            "capture.jpeg_quality: Input should be less than or equal to 100",
        ),
        ({"capture": {"cron": "every tuesday"}}, "capture.cron: not a 5-field cron expression"),
        (
            {"capture": {"window": {"start": "25:00", "end": "06:00"}}},
            "capture.window.start: must be a time of day",
        ),
        (
            {"device": {"id": "5C173FF2"}},
            'device.id: must be 8 lower-case hex digits like "5c173ff2", got "5C173FF2"',
        ),
        ({"device": {"id": "5c173f"}}, "device.id: must be 8 lower-case hex digits"),
        ({"camera": {"type": "webcam"}}, "camera: unknown type 'webcam'"),
        ({"camera": {"widht": 640}}, "camera.widht: unknown key"),
        ({"flash": {"pin": 40}}, "flash.pin: Input should be less than or equal to 27"),
        (
            {"sensors": {"type": "fake", "temperature": "warm"}},
            "sensors.temperature: Input should be a valid number",
        ),
        ({"location": {"lat": 91, "lng": 0}}, "location.lat: Input should be less than or equal to 90"),
        ({"telemetry": {"on": True}}, "telemetry: unknown key"),
    ],
)
def test_each_bad_input_names_its_key_and_reason(
    write_config: Callable[..., Path], tables: dict, expected: str
) -> None:
    path = write_config(**tables)
    with pytest.raises(ConfigError) as err:
        load_config(path, environ={})
    assert expected in str(err.value)
    # and through the real command: one line per problem, non-zero exit, no traceback
    result = run_stickyctl("--config", str(path), "config", "check")
    assert result.returncode != 0
    assert result.stderr.startswith("stickyctl: error: invalid configuration in")
    assert expected in result.stderr
    assert "Traceback" not in result.stderr


def test_every_error_is_reported_not_just_the_first(write_config: Callable[..., Path]) -> None:
    path = write_config(capture={"interval": "1s", "bogus": 1}, camera={"width": -5})
    with pytest.raises(ConfigError) as err:
        load_config(path, environ={})
    assert len(err.value.problems) == 3
    assert {p.split(":")[0] for p in err.value.problems} == {
        "capture.interval",
        "capture.bogus",
        "camera.width",
    }


def test_missing_file_and_bad_toml_say_what_to_do(tmp_path: Path) -> None:
    result = run_stickyctl("--config", str(tmp_path / "nope.toml"), "status")
    assert result.returncode == 1
    assert "no configuration file at" in result.stderr and "--config" in result.stderr
    bad = tmp_path / "bad.toml"
    bad.write_text("[capture\ninterval = 3")
    result = run_stickyctl("--config", str(bad), "config", "check")
    assert result.returncode == 1
    assert "is not valid TOML" in result.stderr


def test_durations() -> None:
    assert parse_duration("20m") == 1200
    assert parse_duration("1h30m") == 5400
    assert parse_duration("45s") == 45
    assert parse_duration(90) == 90
    for bad in ("", "m", "20 minutes", True):
        with pytest.raises(ValueError):
            parse_duration(bad)


def test_relative_paths_are_relative_to_the_config_file(tmp_path: Path) -> None:
    sub = tmp_path / "etc"
    sub.mkdir()
    (sub / "agent.toml").write_text('[storage]\ndata_dir = "../images"\n')
    config = load_config(sub / "agent.toml", environ={})
    assert config.storage.data_dir == tmp_path / "images"
    assert config.storage.queue_path == tmp_path / "images" / "queue.sqlite"


def test_environment_overrides_the_backend_type(write_config: Callable[..., Path]) -> None:
    path = write_config(camera={"type": "replay", "folder": str(REAL_IMAGES)})
    assert isinstance(load_config(path, environ={}).camera, ReplayCameraConfig)
    overridden = load_config(path, environ={"STICKY_AGENT_CAMERA": "synthetic"})
    assert isinstance(overridden.camera, SyntheticCameraConfig)
    with pytest.raises(ConfigError, match="camera: unknown type 'nope'"):
        config_from_mapping({}, environ={"STICKY_AGENT_CAMERA": "nope"})


def test_config_path_resolution(tmp_path: Path) -> None:
    assert resolve_config_path(tmp_path / "a.toml", {"STICKY_AGENT_CONFIG": "/x.toml"}) == tmp_path / "a.toml"
    assert resolve_config_path(None, {"STICKY_AGENT_CONFIG": "/x.toml"}) == Path("/x.toml")
    assert resolve_config_path(None, {}) == Path("/etc/sticky-agent/agent.toml")


@pytest.mark.parametrize("name", ["demo.toml", "pi.toml"])
def test_shipped_examples_are_valid(name: str) -> None:
    result = run_stickyctl("--config", str(REPO / "config" / name), "config", "check")
    assert result.returncode == 0, result.stderr
    assert "OK" in result.stdout
