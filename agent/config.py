"""The agent's configuration: one TOML file, a typed model, every error with its key path.

Where the file is: ``--config FILE``, else ``$STICKY_AGENT_CONFIG``, else
``/etc/sticky-agent/agent.toml``. Unknown keys are errors. Hardware backends are
chosen by a ``type`` key (``[camera] type = "synthetic"``) and can be overridden
for one run by an environment variable, gpiozero style: ``STICKY_AGENT_CAMERA``,
``STICKY_AGENT_FLASH``, ``STICKY_AGENT_SENSORS`` (the section then takes that
backend's defaults). Secrets never go in this file.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from agent.errors import ConfigError
from agent.naming import DEVICE_ID_RE

DEFAULT_CONFIG_PATH = Path("/etc/sticky-agent/agent.toml")
CONFIG_ENV = "STICKY_AGENT_CONFIG"
BACKEND_ENV = {
    "camera": "STICKY_AGENT_CAMERA",
    "flash": "STICKY_AGENT_FLASH",
    "sensors": "STICKY_AGENT_SENSORS",
}
MIN_INTERVAL_S = 10

_DURATION_RE = re.compile(r"^\s*(?:(\d+)\s*h)?\s*(?:(\d+)\s*m)?\s*(?:(\d+)\s*s)?\s*$")


def parse_duration(value: object) -> float:
    """Given ``"20m"``, ``"1h30m"``, ``"45s"`` or a number of seconds, return seconds.

    Raise ValueError naming the value if it is none of those.
    """
    if isinstance(value, bool):
        raise ValueError(f"must be a duration like 30s, 20m or 1h, got {value!r}")
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        m = _DURATION_RE.match(value)
        if m and any(m.groups()):
            h, mi, s = (int(g) if g else 0 for g in m.groups())
            return float(h * 3600 + mi * 60 + s)
    raise ValueError(f'must be a duration like 30s, 20m or 1h, got "{value}"')


def _parse_clock_time(value: object) -> dt.time:
    if isinstance(value, dt.time):
        return value
    if isinstance(value, str):
        try:
            return dt.time.fromisoformat(value)
        except ValueError:
            pass
    raise ValueError(f'must be a time of day like "20:30", got {value!r}')


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DeviceConfig(_Section):
    #: 8 lower-case hex digits; default: the last 8 hex digits of the CPU serial.
    id: str | None = None

    @field_validator("id")
    @classmethod
    def _check_id(cls, v: str | None) -> str | None:
        if v is not None and not DEVICE_ID_RE.match(v):
            raise ValueError(f'must be 8 lower-case hex digits like "5c173ff2", got "{v}"')
        return v


class StorageConfig(_Section):
    data_dir: Path = Path("/var/lib/sticky-agent/images")
    #: SQLite queue file; default ``<data_dir>/queue.sqlite``.
    queue: Path | None = None
    #: How many capture attempts the log table keeps (oldest pruned).
    keep_capture_log: int = Field(default=10_000, ge=100)

    @property
    def queue_path(self) -> Path:
        return self.queue if self.queue is not None else self.data_dir / "queue.sqlite"


class WindowConfig(_Section):
    """A daily time window (local time); ``start > end`` spans midnight (e.g. night only)."""

    start: dt.time
    end: dt.time

    @field_validator("start", "end", mode="before")
    @classmethod
    def _time(cls, v: object) -> dt.time:
        return _parse_clock_time(v)

    def contains(self, t: dt.time) -> bool:
        if self.start <= self.end:
            return self.start <= t < self.end
        return t >= self.start or t < self.end


class CaptureConfig(_Section):
    #: Time between captures (``"20m"``); at least 10 s.
    interval: float = 1200.0
    #: Optional cron expression (5 fields, local time) used instead of ``interval``.
    cron: str | None = None
    #: Optional daily window outside which scheduled captures are skipped.
    window: WindowConfig | None = None
    jpeg_quality: int = Field(default=90, ge=50, le=100)
    #: How long a capture may wait for another capture's lock.
    lock_timeout: float = 60.0

    @field_validator("interval", "lock_timeout", mode="before")
    @classmethod
    def _duration(cls, v: object) -> float:
        return parse_duration(v)

    @field_validator("interval")
    @classmethod
    def _min_interval(cls, v: float) -> float:
        if v < MIN_INTERVAL_S:
            raise ValueError(f'must be a duration >= {MIN_INTERVAL_S}s, got "{v:g}s"')
        return v

    @field_validator("cron")
    @classmethod
    def _cron(cls, v: str | None) -> str | None:
        if v is None:
            return v
        from apscheduler.triggers.cron import CronTrigger

        try:
            CronTrigger.from_crontab(v)
        except ValueError as e:
            raise ValueError(f'not a 5-field cron expression ("*/20 * * * *"): {e}') from e
        return v


class SyntheticCameraConfig(_Section):
    type: Literal["synthetic"]
    width: int = Field(default=4056, ge=64, le=10000)
    height: int = Field(default=3040, ge=48, le=10000)
    seed: int = 0
    #: Mean number of insects that land on the card between two captures.
    insects_per_capture: float = Field(default=0.5, ge=0)
    sensor: str = "synthetic"


class ReplayCameraConfig(_Section):
    type: Literal["replay"]
    folder: Path
    sensor: str = "replay"

    @field_validator("folder")
    @classmethod
    def _folder(cls, v: Path) -> Path:
        if not v.is_dir():
            raise ValueError(f"no such folder: {v}")
        if not any(v.glob("*.jpg")):
            raise ValueError(f"no .jpg files in {v}")
        return v


_SENSOR_NAME_RE = re.compile(r"^[A-Za-z0-9_]{1,37}$")  # EXIF Model is RP_<sensor>, at most 40


def _auto_or_number(v: object, what: str, example: str) -> object:
    """Given a config value, return ``"auto"`` or the number; raise ValueError saying what is allowed."""
    if isinstance(v, str) and v.strip().lower() == "auto":
        return "auto"
    if isinstance(v, int | float) and not isinstance(v, bool):
        return v
    raise ValueError(f'must be "auto" or {what} like {example}, got {v!r}')


class Picamera2CameraConfig(_Section):
    """``[camera] type = "picamera2"``: a Raspberry Pi camera (HQ imx477, Camera Module 3 imx708...)."""

    type: Literal["picamera2"]
    #: Still size (both or neither, even numbers); default: the sensor's full resolution.
    width: int | None = Field(default=None, ge=64)
    height: int | None = Field(default=None, ge=48)
    camera_index: int = Field(default=0, ge=0)
    #: ``"auto"`` or a fixed exposure time in microseconds (a flash trap: fixed, e.g. 20000).
    exposure: Literal["auto"] | int = "auto"
    #: ``"auto"`` or a fixed analogue gain (1.0: no gain).
    analogue_gain: Literal["auto"] | float = "auto"
    #: White balance: ``"auto"``, or ``"fixed"`` with ``colour_gains = [red, blue]``.
    awb: Literal["auto", "fixed"] = "auto"
    colour_gains: tuple[float, float] | None = None
    #: Focus of a camera with a focus motor (Camera Module 3): ``"manual"`` (at
    #: ``lens_position``), ``"auto"`` (one autofocus scan each time the camera opens) or
    #: ``"continuous"``. Unset: the camera's default. Ignored, with a warning, on fixed-focus cameras.
    af_mode: Literal["manual", "auto", "continuous"] | None = None
    #: Lens position in dioptres (1 / distance in metres; 0: infinity), with ``af_mode = "manual"``.
    lens_position: float | None = None
    #: Keep the camera running between captures (quicker, settled exposure, more power).
    #: Default: open it for each capture and release it after, which saves power on long intervals.
    keep_open: bool = False
    #: A capture (opening, settling, the frame and its JPEG) that takes longer is abandoned:
    #: the camera is closed and the next capture reopens it.
    capture_timeout: float = 10.0
    #: Frames dropped before the kept one while exposure, gain or white balance is automatic,
    #: so they settle under the flash (the camera keeps at least one when ``keep_open``).
    settle_frames: int = Field(default=5, ge=0, le=100)
    #: Sensor name for EXIF Model (``RP_<sensor>``); default: the camera's model, e.g. imx477.
    sensor: str | None = None

    @field_validator("width", "height")
    @classmethod
    def _even(cls, v: int | None) -> int | None:
        if v is not None and v % 2:
            raise ValueError(f"must be an even number of pixels (libcamera needs it), got {v}")
        return v

    @field_validator("exposure", mode="before")
    @classmethod
    def _exposure(cls, v: object) -> object:
        v = _auto_or_number(v, "a fixed exposure time in microseconds", "20000")
        if not isinstance(v, int | float):
            return v
        if not 1 <= v <= 700_000_000:
            raise ValueError(f"a fixed exposure must be 1 to 700000000 microseconds, got {v:g}")
        return round(v)

    @field_validator("analogue_gain", mode="before")
    @classmethod
    def _gain(cls, v: object) -> object:
        v = _auto_or_number(v, "a fixed analogue gain", "1.0")
        if isinstance(v, int | float) and not 1.0 <= v <= 64.0:
            raise ValueError(f"a fixed analogue gain must be 1.0 to 64.0, got {v:g}")
        return v

    @field_validator("colour_gains")
    @classmethod
    def _colour_gains(cls, v: tuple[float, float] | None) -> tuple[float, float] | None:
        if v is not None and not all(0 < g <= 32 for g in v):
            raise ValueError(f"must be [red, blue] gains, each above 0 and at most 32, got {list(v)}")
        return v

    @field_validator("lens_position")
    @classmethod
    def _lens_position(cls, v: float | None) -> float | None:
        if v is not None and not 0 <= v <= 32:
            raise ValueError(f"must be 0 to 32 dioptres (0: infinity, 10: 10 cm), got {v:g}")
        return v

    @field_validator("capture_timeout", mode="before")
    @classmethod
    def _timeout(cls, v: object) -> float:
        seconds = parse_duration(v)
        if seconds <= 0:
            raise ValueError(f'must be a duration above zero like "10s", got {v!r}')
        return seconds

    @field_validator("sensor")
    @classmethod
    def _sensor(cls, v: str | None) -> str | None:
        if v is not None and not _SENSOR_NAME_RE.match(v):
            raise ValueError(f'must be 1-37 letters, digits or _ like "imx477" (for EXIF Model), got "{v}"')
        return v

    @model_validator(mode="after")
    def _consistent(self) -> Picamera2CameraConfig:
        if (self.width is None) != (self.height is None):
            raise ValueError("width and height go together: set both, or neither for full resolution")
        if self.awb == "fixed" and self.colour_gains is None:
            raise ValueError('awb = "fixed" needs colour_gains = [red, blue], e.g. [2.0, 1.6]')
        if self.awb == "auto" and self.colour_gains is not None:
            raise ValueError('colour_gains needs awb = "fixed" (with awb = "auto" they would be ignored)')
        if self.af_mode == "manual" and self.lens_position is None:
            raise ValueError('af_mode = "manual" needs lens_position (dioptres; 0: infinity)')
        if self.lens_position is not None and self.af_mode != "manual":
            raise ValueError('lens_position needs af_mode = "manual"')
        if isinstance(self.exposure, int) and self.exposure / 1e6 >= self.capture_timeout:
            raise ValueError(
                f"a fixed exposure of {self.exposure / 1e6:g}s does not fit in capture_timeout "
                f"({self.capture_timeout:g}s): raise capture_timeout"
            )
        return self


CameraConfig = Annotated[
    SyntheticCameraConfig | ReplayCameraConfig | Picamera2CameraConfig,
    Field(discriminator="type"),
]


class NoFlashConfig(_Section):
    type: Literal["none"]


class GpioFlashConfig(_Section):
    type: Literal["gpio"]
    #: BCM pin number of the flash MOSFET/LED driver.
    pin: int = Field(default=23, ge=0, le=27)
    active_high: bool = True
    #: gpiozero pin factory (``mock`` on a laptop); default: gpiozero's choice
    #: (``$GPIOZERO_PIN_FACTORY`` or the Pi's own).
    pin_factory: Literal["mock", "lgpio", "rpigpio", "pigpio", "native"] | None = None
    #: Time the flash is on before the exposure starts.
    warmup: float = 0.0

    @field_validator("warmup", mode="before")
    @classmethod
    def _duration(cls, v: object) -> float:
        return parse_duration(v)


FlashConfig = Annotated[NoFlashConfig | GpioFlashConfig, Field(discriminator="type")]


class NoSensorsConfig(_Section):
    type: Literal["none"]


class FakeSensorsConfig(_Section):
    type: Literal["fake"]
    temperature: float | None = 21.5
    humidity: float | None = 55.0
    battery: float | None = 80.0


def _parse_fraction_duration(value: object) -> float:
    """Like :func:`parse_duration`, but also ``"0.05s"`` and ``"50ms"`` (short hardware times)."""
    if isinstance(value, str):
        m = re.match(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*(ms|s)\s*$", value)
        if m:
            return float(m.group(1)) / (1000.0 if m.group(2) == "ms" else 1.0)
    return parse_duration(value)


#: gpiozero pin factories by name (``mock`` runs anywhere); ``None``: gpiozero's own choice.
PinFactoryName = Literal["mock", "lgpio", "rpigpio", "pigpio", "native"]


class HatSensorsConfig(_Section):
    """``[sensors] type = "hat"``: the Sticky Pi hat's sensors (see hardware/sensors.md)."""

    type: Literal["hat"]
    #: Temperature/humidity sensor, read through its Linux IIO driver (``dtoverlay=dht11`` for
    #: the DHT22, ``dtoverlay=i2c-sensor,bme280`` for a BME280).
    climate: Literal["dht22", "bme280", "none"] = "dht22"
    #: Where the kernel lists IIO devices (a fake tree in tests).
    iio_root: Path = Path("/sys/bus/iio/devices")
    #: Reads per capture before the climate sensor is given up as unknown (DHT reads often fail).
    climate_attempts: int = Field(default=3, ge=1, le=10)
    #: Wait between two climate read attempts (a DHT22 needs about 2 s between samples).
    climate_retry_delay: float = Field(default=2.0, ge=0, le=10)
    #: Read the battery through the hat's MCP3001 ADC.
    battery: bool = True
    #: Battery voltage over ADC input voltage: ``(R1 + R2) / R2`` for a divider R1 (battery side)
    #: over R2 (ground side); 1 without a divider.
    battery_divider: float = Field(default=2.0, ge=1.0, le=20.0)
    #: The ADC's reference voltage (its VREF pin), the input voltage that reads full scale.
    battery_vref: float = Field(default=3.3, gt=0, le=5.5)
    #: SPI pins of the MCP3001 (BCM); 11/10/9/8 use the Pi's hardware SPI when it is enabled,
    #: else gpiozero bit-bangs them. The MCP3001 has no data input: the MOSI pin is unused.
    battery_clock_pin: int = Field(default=11, ge=0, le=27)
    battery_mosi_pin: int = Field(default=10, ge=0, le=27)
    battery_miso_pin: int = Field(default=9, ge=0, le=27)
    battery_select_pin: int = Field(default=8, ge=0, le=27)
    pin_factory: PinFactoryName | None = None

    @field_validator("climate_retry_delay", mode="before")
    @classmethod
    def _duration(cls, v: object) -> float:
        return _parse_fraction_duration(v)


SensorsConfig = Annotated[NoSensorsConfig | FakeSensorsConfig | HatSensorsConfig, Field(discriminator="type")]


class ButtonConfig(_Section):
    """``[button]``: the hat's manual capture button (to ground, internal pull-up)."""

    enabled: bool = False
    #: BCM pin (GPIO 22 on the Sticky Pi hat).
    pin: int = Field(default=22, ge=0, le=27)
    #: Presses closer together than this (contact bounce) count once.
    bounce: float = Field(default=0.05, ge=0, le=5)
    pin_factory: PinFactoryName | None = None

    @field_validator("bounce", mode="before")
    @classmethod
    def _duration(cls, v: object) -> float:
        return _parse_fraction_duration(v)


class LedConfig(_Section):
    """``[led]``: an optional status LED (blinks on capture; patterns for offline and error)."""

    enabled: bool = False
    #: BCM pin of the LED (through a ~330 ohm resistor); the hat has none, any free pin works.
    pin: int = Field(default=24, ge=0, le=27)
    active_high: bool = True
    pin_factory: PinFactoryName | None = None


class LocationConfig(_Section):
    lat: float = Field(ge=-90, le=90)
    lng: float = Field(ge=-180, le=180)
    alt: float = 0.0


class SyncConfig(_Section):
    """``[sync]``: the Sticky Pi API to push images and annotations to. Absent: capture only."""

    url: str
    #: A file holding one line ``username:password`` (not readable by others). Default:
    #: ``$CREDENTIALS_DIRECTORY/<credential_name>`` (systemd ``LoadCredential=``).
    credentials: Path | None = None
    credential_name: str = "sticky-api"
    #: A CA bundle for a server with a private CA (TLS verification is always on).
    ca_bundle: Path | None = None
    connect_timeout: float = 10.0
    read_timeout: float = 120.0
    parallelism: int = Field(default=2, ge=1, le=8)
    order: Literal["oldest", "newest"] = "oldest"
    batch_size: int = Field(default=32, ge=1, le=500)
    #: How often to check the API while idle or unreachable (backoff grows to backoff_max).
    probe_interval: float = 60.0
    backoff_max: float = 900.0
    #: Uploads the server keeps rejecting move to ``failed`` after this many tries.
    max_attempts: int = Field(default=5, ge=1)
    #: Optional cap on upload speed, kilobits per second (metered links).
    bandwidth_kbps: float | None = Field(default=None, gt=0)
    #: Optional cap on uploaded megabytes per UTC day; holds across restarts.
    daily_budget_mb: float | None = Field(default=None, gt=0)

    @field_validator("connect_timeout", "read_timeout", "probe_interval", "backoff_max", mode="before")
    @classmethod
    def _duration(cls, v: object) -> float:
        return parse_duration(v)

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        if not re.match(r"^https?://[^/\s]+", v):
            raise ValueError(f'must be an http(s) URL like "https://api.example.org", got "{v}"')
        return v.rstrip("/")


class RetentionConfig(_Section):
    """``[retention]``: when originals the server holds (same md5, verified) may be deleted."""

    keep_days: float | None = Field(default=None, ge=0)
    max_data_gb: float | None = Field(default=None, gt=0)
    #: Keep at least this much disk free; below it captures stop rather than write broken files.
    min_free_disk_mb: float = Field(default=200.0, ge=0)
    #: Delete originals the server does NOT hold when the disk is full. Off: never.
    delete_unsynced: bool = False


class LogConfig(_Section):
    level: Literal["debug", "info", "warning", "error"] = "info"


class NoDetectorConfig(_Section):
    type: Literal["none"]


class BuiltinDetectorConfig(_Section):
    """``[detector] type = "builtin"``: OpenCV segmentation (:mod:`agent.detect.builtin`)."""

    type: Literal["builtin"]
    #: A parameters JSON to use instead of the one shipped in the package.
    params: Path | None = None
    #: Long side, in pixels, the image is reduced to before detection (time and memory).
    max_side: int = Field(default=1296, ge=320, le=8192)

    @field_validator("params")
    @classmethod
    def _params(cls, v: Path | None) -> Path | None:
        if v is not None and not v.is_file():
            raise ValueError(f"no such file: {v}")
        return v


DetectorConfig = Annotated[NoDetectorConfig | BuiltinDetectorConfig, Field(discriminator="type")]


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
    return config.model_copy(update={"source": source})


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
    return config_from_mapping(_anchor_paths(data, path.parent), source=path, environ=environ)


_PATH_KEYS = (
    ("storage", "data_dir"),
    ("storage", "queue"),
    ("camera", "folder"),
    ("sensors", "iio_root"),
    ("sync", "credentials"),
    ("sync", "ca_bundle"),
    ("detector", "params"),
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
