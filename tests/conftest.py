"""Shared fixtures: a small, fast configuration in a temporary data folder."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from agent.config import Config, load_config

REPO = Path(__file__).resolve().parents[1]
DEVICE = "0a1b2c3d"


def toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str | Path):
        return '"' + str(v).replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{k} = {toml_value(x)}" for k, x in v.items()) + " }"
    return repr(v)


def to_toml(tables: dict[str, Any]) -> str:
    """Given tables (a list of tables for ``[[sink]]``), return them as TOML."""
    out = []
    for name, table in tables.items():
        for one in table if isinstance(table, list) else [table]:
            out.append(f"[[{name}]]" if isinstance(table, list) else f"[{name}]")
            out.extend(f"{k} = {toml_value(v)}" for k, v in one.items())
            out.append("")
    return "\n".join(out)


def base_tables(tmp_path: Path) -> dict[str, dict[str, Any]]:
    return {
        "device": {"id": DEVICE},
        "storage": {"data_dir": str(tmp_path / "data")},
        "capture": {"interval": "10s", "lock_timeout": "20s"},
        "camera": {"type": "synthetic", "width": 320, "height": 240, "seed": 3},
        "flash": {"type": "gpio", "pin": 23, "pin_factory": "mock"},
        "sensors": {"type": "fake", "temperature": 20.6, "humidity": 42.6, "battery": 72},
    }


@pytest.fixture
def write_config(tmp_path: Path) -> Callable[..., Path]:
    """Return a function that writes a config TOML: base tables updated by keyword tables
    (``None`` drops a table; a table with a ``type`` replaces the base one)."""

    def write(**tables: dict[str, Any] | list[dict[str, Any]] | None) -> Path:
        merged: dict[str, Any] = base_tables(tmp_path)
        for name, table in tables.items():
            if table is None:
                merged.pop(name, None)
            elif isinstance(table, list):  # [[sink]] tables
                merged[name] = [dict(t) for t in table]
            elif "type" in table:  # another backend: its own keys only
                merged[name] = dict(table)
            else:
                merged[name] = {**merged.get(name, {}), **table}
        path = tmp_path / "agent.toml"
        path.write_text(to_toml(merged))
        return path

    return write


@pytest.fixture
def config(write_config: Callable[..., Path]) -> Config:
    return load_config(write_config(), environ={})


def run_stickyctl(
    *args: str, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run ``stickyctl`` as a separate process (the real entry point) and return the result."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("STICKY_AGENT_")}
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "agent", *args],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=timeout,
        cwd=REPO,
    )


@pytest.fixture(autouse=True)
def _fresh_pin_factory() -> Iterator[None]:
    """Each test starts without gpiozero's process-wide pin factory (agent.gpio shares one):
    pins a test left claimed must not be "in use" in the next one."""
    yield
    from agent.hardware.gpio import release_shared_pin_factory

    release_shared_pin_factory()
