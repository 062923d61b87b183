"""The agent's configuration: one TOML file, a typed model, every error with its key path.

Where the file is: ``--config FILE``, else ``$STICKY_AGENT_CONFIG``, else
``/etc/sticky-agent/agent.toml``. Unknown keys are errors. Hardware backends are
chosen by a ``type`` key (``[camera] type = "synthetic"``) and can be overridden
for one run by an environment variable, gpiozero style: ``STICKY_AGENT_CAMERA``,
``STICKY_AGENT_FLASH``, ``STICKY_AGENT_SENSORS`` (the section then takes that
backend's defaults). Secrets never go in this file.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import Field, ValidationError, model_validator

from agent.config.base import BACKEND_ENV, CONFIG_ENV, DEFAULT_CONFIG_PATH, _Section, parse_duration
from agent.config.hardware import (
    ButtonConfig,
    CameraConfig,
    FlashConfig,
    GpioFlashConfig,
    HatSensorsConfig,
    LedConfig,
    NoFlashConfig,
    NoSensorsConfig,
    Picamera2CameraConfig,
    ReplayCameraConfig,
    SensorsConfig,
    SyntheticCameraConfig,
    gpio_problems,
)
from agent.config.sections import (
    BuiltinDetectorConfig,
    CaptureConfig,
    DetectorConfig,
    DeviceConfig,
    LearnedDetectorConfig,
    LocationConfig,
    LogConfig,
    NoDetectorConfig,
    RetentionConfig,
    StorageConfig,
    SyncConfig,
    WindowConfig,
)
from agent.errors import ConfigError
from agent.web.settings import WebConfig

__all__ = [
    "BuiltinDetectorConfig",
    "ButtonConfig",
    "CameraConfig",
    "CaptureConfig",
    "Config",
    "ConfigError",
    "DetectorConfig",
    "FlashConfig",
    "GpioFlashConfig",
    "HatSensorsConfig",
    "LearnedDetectorConfig",
    "LedConfig",
    "NoDetectorConfig",
    "Picamera2CameraConfig",
    "ReplayCameraConfig",
    "RetentionConfig",
    "SensorsConfig",
    "SyncConfig",
    "SyntheticCameraConfig",
    "WebConfig",
    "WindowConfig",
    "config_from_mapping",
    "config_warnings",
    "load_config",
    "parse_duration",
    "resolve_config_path",
]


class Config(_Section):
    device: DeviceConfig = DeviceConfig()
    storage: StorageConfig = StorageConfig()
    capture: CaptureConfig = CaptureConfig()
    camera: CameraConfig = SyntheticCameraConfig(type="synthetic")
    flash: FlashConfig = NoFlashConfig(type="none")
    sensors: SensorsConfig = NoSensorsConfig(type="none")
    button: ButtonConfig = ButtonConfig()
    led: LedConfig = LedConfig()
    location: LocationConfig | None = None
    sync: SyncConfig | None = None
    retention: RetentionConfig = RetentionConfig()
    log: LogConfig = LogConfig()
    detector: DetectorConfig = NoDetectorConfig(type="none")
    web: WebConfig = WebConfig()
    #: Where the file came from (not a key of the file).
    source: Path | None = Field(default=None, exclude=True)

    @model_validator(mode="before")
    @classmethod
    def _no_source_key(cls, data: Any) -> Any:
        if isinstance(data, Mapping) and "source" in data:
            raise ValueError("'source' is not a configuration key")
        return data


_TAGGED = {"camera", "flash", "sensors", "detector"}


def _format_error(err: Mapping[str, Any]) -> str:
    loc = [str(p) for p in err["loc"]]
    # Tagged unions put the tag in the path (camera.synthetic.width): drop it.
    if len(loc) >= 2 and loc[0] in _TAGGED:
        loc = [loc[0], *loc[2:]]
    path = ".".join(loc) or "(top level)"
    kind, msg = err["type"], str(err["msg"])
    if kind == "extra_forbidden":
        msg = "unknown key (check its spelling and its section)"
    elif kind == "union_tag_invalid":
        ctx = err.get("ctx", {})
        msg = f"unknown type {ctx.get('tag')!r}; expected one of {ctx.get('expected_tags')}"
    elif kind == "union_tag_not_found":
        msg = "missing the 'type' key that chooses the backend"
    elif kind == "missing":
        msg = "required key is missing"
    msg = msg.removeprefix("Value error, ")
    return f"{path}: {msg}"


def config_from_mapping(
    data: Mapping[str, Any],
    source: Path | None = None,
    environ: Mapping[str, str] | None = None,
) -> Config:
    """Given the parsed TOML, return the validated Config, applying backend overrides from ``environ``.

    Raise ConfigError listing every problem as ``key.path: reason``.
    """
    environ = os.environ if environ is None else environ
    data = dict(data)
    for section, var in BACKEND_ENV.items():
        override = environ.get(var)
        if override:
            current = data.get(section)
            if not (isinstance(current, Mapping) and current.get("type") == override):
                data[section] = {"type": override}
    try:
        config = Config.model_validate(data)
    except ValidationError as e:
        where = f" in {source}" if source else ""
        problems = [_format_error(err) for err in e.errors()]
        raise ConfigError(f"invalid configuration{where}:", problems) from None
    pins = gpio_problems(config.flash, config.sensors, config.button, config.led)
    if pins:
        raise ConfigError(f"invalid configuration{' in ' + str(source) if source else ''}:", pins)
    return config.model_copy(update={"source": source})


def config_warnings(config: Config, environ: Mapping[str, str] | None = None) -> list[str]:
    """Given a valid config, return problems that may resolve themselves (files systemd or an
    operator may provide later), each as ``key.path: reason``."""
    environ = os.environ if environ is None else environ
    out = []
    sync = config.sync
    if sync is not None:
        if sync.ca_bundle is not None and not sync.ca_bundle.is_file():
            out.append(f"sync.ca_bundle: no such file {sync.ca_bundle}; sync fails until it exists")
        if sync.credentials is not None and not sync.credentials.exists():
            out.append(f"sync.credentials: no such file {sync.credentials}; sync fails until it exists")
        elif sync.credentials is None and not environ.get("CREDENTIALS_DIRECTORY"):
            out.append(
                "sync.credentials: not set, and $CREDENTIALS_DIRECTORY is not set (it is under "
                "systemd's LoadCredential=): outside systemd, sync finds no credentials"
            )
    return out


def resolve_config_path(cli_path: Path | None, environ: Mapping[str, str] | None = None) -> Path:
    """Return the config path: ``--config``, else ``$STICKY_AGENT_CONFIG``, else the default."""
    environ = os.environ if environ is None else environ
    if cli_path is not None:
        return cli_path
    if environ.get(CONFIG_ENV):
        return Path(environ[CONFIG_ENV])
    return DEFAULT_CONFIG_PATH


def load_config(path: Path, environ: Mapping[str, str] | None = None) -> Config:
    """Given a TOML file, return its validated Config.

    Raise ConfigError if the file is missing, unreadable, not TOML, or invalid.
    """
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(
            f"no configuration file at {path}; pass --config FILE or set {CONFIG_ENV} "
            "(examples are in config/)"
        ) from None
    except OSError as e:
        raise ConfigError(f"cannot read configuration file {path}: {e.strerror}") from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path} is not valid TOML: {e}") from None
    except RecursionError:
        raise ConfigError(
            f"{path} is not a usable configuration: arrays or tables too deeply nested"
        ) from None
    return config_from_mapping(_anchor_paths(data, path.parent), source=path, environ=environ)


_PATH_KEYS = (
    ("storage", "data_dir"),
    ("storage", "queue"),
    ("camera", "folder"),
    ("sensors", "iio_root"),
    ("sync", "credentials"),
    ("sync", "ca_bundle"),
    ("detector", "params"),
    ("web", "password_file"),
    ("detector", "model"),
)


def _anchor_paths(data: dict[str, Any], base: Path) -> dict[str, Any]:
    """Return ``data`` with relative paths made relative to the config file's folder."""
    data = dict(data)
    for section, key in _PATH_KEYS:
        table = data.get(section)
        if isinstance(table, dict) and isinstance(table.get(key), str):
            value = Path(table[key]).expanduser()
            if not value.is_absolute():
                data[section] = {**table, key: os.path.normpath(base.absolute() / value)}
    return data
