"""A running agent with its web page on 127.0.0.1, for the web page's tests and benchmark.

``web_agent(tmp_path)`` starts the real agent (``agent.service.Agent``: scheduler, detector,
sync worker, web server) in a thread, with a synthetic camera, a mock flash, fake sensors and
a development Sticky Pi API, and yields a :class:`WebAgent` with the page's URL. Scheduled
captures are an hour apart: tests take pictures when they ask for them.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from conftest import DEVICE, to_toml

from agent.config import load_config
from agent.devserver import parse_user
from agent.devserver.app import DevServer
from agent.service import Agent

T = TypeVar("T")


def write_agent_config(tmp_path: Path, **tables: dict[str, Any] | None) -> Path:
    """Write a config for a web-page agent under ``tmp_path``; keyword tables replace or (None)
    drop the defaults' tables. Return its path."""
    merged: dict[str, dict[str, Any] | None] = {
        "device": {"id": DEVICE},
        "storage": {"data_dir": str(tmp_path / "data")},
        "capture": {"interval": "1h", "lock_timeout": "20s"},
        "camera": {"type": "synthetic", "width": 1296, "height": 972, "seed": 1, "insects_per_capture": 3.0},
        "flash": {"type": "gpio", "pin": 23, "pin_factory": "mock"},
        "sensors": {"type": "fake", "temperature": 20.5, "humidity": 61.0, "battery": 77},
        "location": {"lat": 49.26, "lng": -123.25},
        "detector": {"type": "builtin"},
        "web": {"enabled": True, "bind": "127.0.0.1", "port": 0, "preview_interval": 0.2},
        **tables,
    }
    path = tmp_path / "agent.toml"
    path.write_text(to_toml({name: table for name, table in merged.items() if table is not None}))
    return path


def wait_for(condition: Callable[[], T | None], timeout: float = 60.0) -> T:
    """Poll ``condition`` until it returns something truthy, and return that (the agent works in
    its own threads: capture, detection and sync finish when they finish)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"condition not met within {timeout}s")


@dataclass
class WebAgent:
    agent: Agent
    url: str  # the page's base URL, ending in "/"
    api: DevServer | None

    def capture(self) -> None:
        """Ask the agent for a capture (as the button or ``stickyctl capture`` do)."""
        self.agent.request_capture()


@contextlib.contextmanager
def web_agent(tmp_path: Path, with_api: bool = True, **tables: dict[str, Any] | None) -> Iterator[WebAgent]:
    """Run an agent with its web page (and a devserver it syncs to) until the block ends."""
    api = None
    if with_api:
        api = DevServer(tmp_path / "api", [parse_user("trap:secret-password")]).start()
        creds = tmp_path / "api-credentials"
        creds.write_text("trap:secret-password\n")
        creds.chmod(0o600)
        tables.setdefault("sync", {"url": api.url, "credentials": str(creds), "probe_interval": "1s"})
    config = load_config(write_agent_config(tmp_path, **tables), environ={})
    agent = Agent(config)
    thread = None
    try:
        agent.start()
        assert agent.web is not None
        thread = threading.Thread(target=agent.run_forever, name="agent", daemon=True)
        thread.start()
        yield WebAgent(agent, agent.web.url, api)
    finally:
        agent.request_stop()
        if thread is not None:
            thread.join(timeout=60)
        else:
            agent.stop()
        if api is not None:
            api.stop()
