"""The config's building blocks, kept in :mod:`agent.settings` (outside this package, so a
backend module can define its settings class without loading the whole config first)."""

from agent.settings import (
    BACKEND_ENV,
    CONFIG_ENV,
    DEFAULT_CONFIG_PATH,
    MAX_INTERVAL_S,
    MIN_INTERVAL_S,
    Duration,
    PinFactoryName,
    ShortDuration,
    _parse_clock_time,
    _parse_fraction_duration,
    _Section,
    parse_duration,
)

__all__ = [
    "BACKEND_ENV",
    "CONFIG_ENV",
    "DEFAULT_CONFIG_PATH",
    "MAX_INTERVAL_S",
    "MIN_INTERVAL_S",
    "Duration",
    "PinFactoryName",
    "ShortDuration",
    "_Section",
    "_parse_clock_time",
    "_parse_fraction_duration",
    "parse_duration",
]
