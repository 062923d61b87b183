"""The agent's configuration: one TOML file, a typed model, every error with its key path.

Where the file is: ``--config FILE``, else ``$STICKY_AGENT_CONFIG``, else
``/etc/sticky-agent/agent.toml``. Unknown keys are errors. Hardware backends are
chosen by a ``type`` key (``[camera] type = "synthetic"``) and can be overridden
for one run by an environment variable, gpiozero style: ``STICKY_AGENT_CAMERA``,
``STICKY_AGENT_FLASH``, ``STICKY_AGENT_SENSORS`` (the section then takes that
backend's defaults). Secrets never go in this file.
"""

from __future__ import annotations

import json
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import Field, ValidationError, model_validator

from agent import registry
from agent.config.hardware import ButtonConfig, LedConfig, gpio_problems
from agent.config.sections import (
    CaptureConfig,
    DeviceConfig,
    LocationConfig,
    LogConfig,
    RetentionConfig,
    StorageConfig,
    SyncConfig,
    WindowConfig,
)
from agent.detect import NoDetectorConfig
from agent.detect.builtin import BuiltinDetectorConfig
from agent.detect.learned import LearnedDetectorConfig
from agent.detect.memory import MemoryDetectorConfig
from agent.errors import ConfigError
from agent.hardware.camera.memory import MemoryCameraConfig
from agent.hardware.camera.picamera2_settings import Picamera2CameraConfig
from agent.hardware.camera.replay import ReplayCameraConfig
from agent.hardware.camera.synthetic import SyntheticCameraConfig
from agent.hardware.flash import GpioFlashConfig, MemoryFlashConfig, NoFlashConfig
from agent.hardware.sensors import FakeSensorsConfig, HatSensorsConfig, NoSensorsConfig
from agent.settings import BACKEND_ENV, CONFIG_ENV, DEFAULT_CONFIG_PATH, _Section, parse_duration
from agent.web.settings import WebConfig

# Each seam's section is the union of its backends' settings classes, chosen by ``type``
# (:mod:`agent.registry`); mypy sees the built-in backends' union.
if TYPE_CHECKING:
    from agent.sinks.base import SinkSettings as SinkConfig

    CameraConfig = SyntheticCameraConfig | ReplayCameraConfig | Picamera2CameraConfig | MemoryCameraConfig
    FlashConfig = NoFlashConfig | GpioFlashConfig | MemoryFlashConfig
    SensorsConfig = NoSensorsConfig | FakeSensorsConfig | HatSensorsConfig
    DetectorConfig = NoDetectorConfig | BuiltinDetectorConfig | LearnedDetectorConfig | MemoryDetectorConfig
else:
    CameraConfig = registry.settings_union("camera")
    FlashConfig = registry.settings_union("flash")
    SensorsConfig = registry.settings_union("sensors")
    DetectorConfig = registry.settings_union("detector")
    #: One ``[[sink]]`` table: the settings class of the sink its ``type`` names.
    SinkConfig = registry.settings_union("sink")

__all__ = [
    "BuiltinDetectorConfig",
    "ButtonConfig",
    "CameraConfig",
    "CaptureConfig",
    "Config",
    "ConfigError",
    "DetectorConfig",
    "FakeSensorsConfig",
    "FlashConfig",
    "GpioFlashConfig",
    "HatSensorsConfig",
    "LearnedDetectorConfig",
    "LedConfig",
    "MemoryCameraConfig",
    "MemoryDetectorConfig",
    "MemoryFlashConfig",
    "NoDetectorConfig",
    "NoFlashConfig",
    "NoSensorsConfig",
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
    sync: SyncConfig = SyncConfig()
    #: Where images and annotations go: ``[[sink]]`` tables (none: capture only).
    sink: list[SinkConfig] = Field(default_factory=list, max_length=8)
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

    @model_validator(mode="after")
    def _unique_sink_names(self) -> Config:
        seen: set[str] = set()
        for sink in self.sink:
            if sink.name in seen:
                raise ValueError(f"sink.{sink.name}: two sinks are named {sink.name!r}; names must differ")
            seen.add(sink.name)
        return self

    @property
    def sinks(self) -> list[SinkConfig]:
        """The sinks, in the config's order."""
        return list(self.sink)

    def sink_named(self, name: str) -> SinkConfig:
        """Given a sink's name, return its settings. Raise ConfigError naming the known ones."""
        for sink in self.sink:
            if sink.name == name:
                return sink
        known = ", ".join(s.name for s in self.sink) or "none configured"
        raise ConfigError(f"no sink named {name!r} (sinks: {known})")


_TAGGED = {"camera", "flash", "sensors", "detector"}


#: The keys of the legacy ``[sync]`` table that belong to the Sticky Pi sink it stands for.
LEGACY_SYNC_KEYS = frozenset(
    registry.backend("sink", "stickypi").settings.model_fields.keys() - {"name", "type", "required"}
)


def _legacy_sync(data: dict[str, Any]) -> bool:
    """Move the Sticky Pi keys of a legacy ``[sync]`` table (``url``...) into a ``[[sink]]``
    named ``stickypi``; return True if there were any. Raise ConfigError if ``[[sink]]``
    tables are there too (one form or the other)."""
    sync = data.get("sync")
    if not isinstance(sync, Mapping) or not (LEGACY_SYNC_KEYS & sync.keys()):
        return False
    moved = {k: v for k, v in sync.items() if k in LEGACY_SYNC_KEYS}
    if data.get("sink"):
        keys = ", ".join(sorted(moved))
        raise ConfigError(
            f"invalid configuration: [sync] {keys}: with [[sink]] tables, the Sticky Pi API is one "
            "of them too; write it as:",
            ["[[sink]]", 'name = "stickypi"', 'type = "stickypi"']
            + [f"{k} = {json.dumps(v) if isinstance(v, str) else v}" for k, v in moved.items()],
        )
    data["sync"] = {k: v for k, v in sync.items() if k not in LEGACY_SYNC_KEYS}
    data["sink"] = [{"name": "stickypi", "type": "stickypi", "required": True, **moved}]
    return True


def _error_path(loc: list[str], data: Mapping[str, Any], legacy: bool) -> list[str]:
    """Given a pydantic error location, return the config key path a person reads: no union tag
    (``camera.width``), sinks by name (``sink.lab-api.url``), the legacy table as ``sync``."""
    if len(loc) >= 2 and loc[0] in _TAGGED:
        return [loc[0], *loc[2:]]
    if len(loc) >= 2 and loc[0] == "sink" and loc[1].isdigit():
        rest = loc[3:] if len(loc) >= 3 and loc[2] in registry.backends("sink") else loc[2:]
        if legacy:
            return ["sync", *rest]
        tables = data.get("sink")
        i = int(loc[1])
        name = tables[i].get("name") if isinstance(tables, list) and i < len(tables) else None
        where = f"sink.{name}" if isinstance(name, str) and name else f"sink[{i}]"
        return [where, *rest]
    return loc


def _format_error(err: Mapping[str, Any], data: Mapping[str, Any] | None = None, legacy: bool = False) -> str:
    loc = _error_path([str(p) for p in err["loc"]], data or {}, legacy)
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
    legacy = _legacy_sync(data)
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
        problems = [_format_error(err, data, legacy) for err in e.errors()]
        raise ConfigError(f"invalid configuration{where}:", problems) from None
    pins = gpio_problems(
        config.flash, config.sensors, config.button, config.led, config.camera, config.detector
    )
    if pins:
        raise ConfigError(f"invalid configuration{' in ' + str(source) if source else ''}:", pins)
    if legacy:
        config.sink[0]._legacy = True
    return config.model_copy(update={"source": source})


def config_warnings(config: Config, environ: Mapping[str, str] | None = None) -> list[str]:
    """Given a valid config, return problems that may resolve themselves (files systemd or an
    operator may provide later), each as ``key.path: reason``."""
    environ = os.environ if environ is None else environ
    out = []
    for sink in config.sinks:
        where = sink.section
        if sink.ca_bundle is not None and not sink.ca_bundle.is_file():
            out.append(f"{where}.ca_bundle: no such file {sink.ca_bundle}; sync fails until it exists")
        if sink.credentials is not None and not sink.credentials.exists():
            out.append(f"{where}.credentials: no such file {sink.credentials}; sync fails until it exists")
        elif sink.credentials is None and not environ.get("CREDENTIALS_DIRECTORY"):
            out.append(
                f"{where}.credentials: not set, and $CREDENTIALS_DIRECTORY is not set (it is under "
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
    ("sink", "credentials"),
    ("sink", "ca_bundle"),
    ("detector", "params"),
    ("web", "password_file"),
    ("detector", "model"),
)


def _anchor_paths(data: dict[str, Any], base: Path) -> dict[str, Any]:
    """Return ``data`` with relative paths made relative to the config file's folder."""
    data = dict(data)

    def anchor(table: dict[str, Any], key: str) -> dict[str, Any]:
        if isinstance(table.get(key), str):
            value = Path(table[key]).expanduser()
            if not value.is_absolute():
                return {**table, key: os.path.normpath(base.absolute() / value)}
        return table

    for section, key in _PATH_KEYS:
        table = data.get(section)
        if isinstance(table, dict):
            data[section] = anchor(table, key)
        elif isinstance(table, list):  # [[sink]] tables
            data[section] = [anchor(t, key) if isinstance(t, dict) else t for t in table]
    return data
