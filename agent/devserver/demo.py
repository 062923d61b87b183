"""``stickyctl demo``'s platforms: one local double per configured sink, with demo credentials.

For each ``[[sink]]`` whose address is on 127.0.0.1 the demo serves the matching double there
(the Sticky Pi devserver, the Tator double, the Data Lake double; an in-memory sink needs none)
and writes the demo secret to the credentials file the sink names. A development tool only.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from agent.config import Config
from agent.devserver import check_port_free
from agent.errors import StickyAgentError
from agent.sinks.base import SinkSettings

#: The demo accounts: what each double accepts, and the line its sink's credentials file holds.
DEMO_SECRETS = {
    "stickypi": ("demo", "demo-password"),
    "tator": ("demo", "demo-token"),
    "datalake": ("demo-key", "demo-secret"),
}


def demo_port(sink: SinkSettings) -> int:
    """Given a sink, return the 127.0.0.1 port its double must listen on. Raise
    StickyAgentError if its address is not on this machine."""
    parts = urlsplit(sink.address)
    if parts.hostname not in ("127.0.0.1", "localhost"):
        raise StickyAgentError(
            f'demo needs every sink on this machine: {sink.section} is at {sink.address}; use "http://127.0.0.1:<port>"'
        )
    return parts.port or 80


def _write_secret(sink: SinkSettings, line: str) -> None:
    if sink.credentials is None:
        raise StickyAgentError(
            f'demo needs credentials = "<file>" in {sink.section} (it writes the demo secret there)'
        )
    sink.credentials.parent.mkdir(parents=True, exist_ok=True)
    sink.credentials.write_text(line + "\n")
    sink.credentials.chmod(0o600)


def _double(sink: SinkSettings, server_dir: Path) -> Any:
    port = demo_port(sink)
    user, secret = DEMO_SECRETS[sink.type]
    if sink.type == "stickypi":
        from agent.devserver import parse_user
        from agent.devserver.app import DevServer

        _write_secret(sink, f"{user}:{secret}")
        return DevServer(
            server_dir / sink.name, [parse_user(f"{user}:{secret}")], host="127.0.0.1", port=port
        )
    if sink.type == "tator":
        from agent.devserver.tator import TatorDouble

        _write_secret(sink, secret)
        return TatorDouble({secret: user}, host="127.0.0.1", port=port)
    from agent.devserver.datalake import DatalakeDouble

    _write_secret(sink, f"{user}:{secret}")
    return DatalakeDouble({user: secret}, host="127.0.0.1", port=port)


@contextlib.contextmanager
def serve_doubles(config: Config) -> Iterator[list[tuple[SinkSettings, Any]]]:
    """Given a config, serve a double for each of its sinks (writing the demo secrets) until the
    block ends; yield ``(sink, double)`` pairs (each double has a ``url`` and ``stop()``).
    Raise StickyAgentError if a sink is not on this machine, names no credentials file, or its
    port is taken."""
    server_dir = config.storage.data_dir.parent / "demo-server"
    started: list[Any] = []
    served: list[tuple[SinkSettings, Any]] = []
    try:
        for sink in config.sinks:
            if sink.type not in DEMO_SECRETS:
                continue  # in-memory: nothing to serve
            check_port_free("127.0.0.1", demo_port(sink))
            double = _double(sink, server_dir)
            try:
                double.start()
            except SystemExit:  # the HTTP server's own "port in use" exit, if another program won
                raise StickyAgentError(f"cannot listen on {sink.address}: choose another port") from None
            started.append(double)
            served.append((sink, double))
        yield served
    finally:
        for double in reversed(started):
            double.stop()
