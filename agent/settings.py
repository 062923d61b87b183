"""Shared pieces of the configuration model: durations, times, the strict section base."""

from __future__ import annotations

import datetime as dt
import math
import re
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict

DEFAULT_CONFIG_PATH = Path("/etc/sticky-agent/agent.toml")
CONFIG_ENV = "STICKY_AGENT_CONFIG"
BACKEND_ENV = {
    "camera": "STICKY_AGENT_CAMERA",
    "flash": "STICKY_AGENT_FLASH",
    "sensors": "STICKY_AGENT_SENSORS",
}
MIN_INTERVAL_S = 10
#: A trap's schedule fires at least once a day.
MAX_INTERVAL_S = 24 * 3600

_DURATION_RE = re.compile(r"^\s*(?:(\d+)\s*h)?\s*(?:(\d+)\s*m)?\s*(?:(\d+)\s*s)?\s*$")


def parse_duration(value: object) -> float:
    """Given ``"20m"``, ``"1h30m"``, ``"45s"`` or a number of seconds, return seconds.

    Raise ValueError naming the value if it is none of those.
    """
    if isinstance(value, bool):
        raise ValueError(f"must be a duration like 30s, 20m or 1h, got {value!r}")
    if isinstance(value, int | float):
        try:
            seconds = float(value)
        except OverflowError:
            seconds = math.inf
        if not math.isfinite(seconds):
            raise ValueError(f"must be a finite duration like 30s, 20m or 1h, got {value!r}")
        return seconds
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
    #: Unknown keys are errors; numbers are finite (nan/inf break schedules and timeouts).
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


def _parse_fraction_duration(value: object) -> float:
    """Like :func:`parse_duration`, but also ``"0.05s"`` and ``"50ms"`` (short hardware times)."""
    if isinstance(value, str):
        m = re.match(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*(ms|s)\s*$", value)
        if m:
            return float(m.group(1)) / (1000.0 if m.group(2) == "ms" else 1.0)
    return parse_duration(value)


#: gpiozero pin factories by name (``mock`` runs anywhere); ``None``: gpiozero's own choice.
PinFactoryName = Literal["mock", "lgpio", "rpigpio", "pigpio", "native"]


#: A duration field: ``"20m"``, ``"1h30m"``, ``"45s"`` or a number of seconds.
Duration = Annotated[float, BeforeValidator(parse_duration)]
#: A short hardware duration: also ``"0.05s"`` and ``"50ms"``.
ShortDuration = Annotated[float, BeforeValidator(_parse_fraction_duration)]
