"""A trap with two sinks: one fine (in memory), one unreachable (a Sticky Pi API nobody serves)."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from helpers.net import free_port

from agent.config import Config, load_config
from agent.queue import Queue
from agent.sinks import memory
from agent.sinks.base import open_sink
from agent.sinks.worker import SyncWorker


def credentials_file(folder: Path, line: str = "trap:secret") -> Path:
    """Return a root-only style credentials file holding ``line``."""
    path = folder / "api-credentials"
    path.write_text(line + "\n")
    path.chmod(0o600)
    return path


def two_sinks(tmp_path: Path) -> list[dict[str, Any]]:
    """A Sticky Pi sink where nothing listens (unreachable) and an in-memory sink ``lab``."""
    return [
        {
            "name": "stickypi",
            "type": "stickypi",
            "url": f"http://127.0.0.1:{free_port()}",
            "credentials": str(credentials_file(tmp_path)),
            "connect_timeout": 1,
        },
        {"name": "lab", "type": "memory", "platform": f"lab-{tmp_path.name}", "required": False},
    ]


def capture(config: Config, n: int) -> None:
    """Take ``n`` real captures (synthetic camera) into the config's queue."""
    from agent.service import Pipeline

    pipeline = Pipeline.build(config)
    try:
        for _ in range(n):
            assert pipeline.capturer.capture().ok
    finally:
        pipeline.close()


def run_workers(config: Config) -> None:
    """Run one cycle of every sink's worker (a real worker, its real sink)."""
    queue = Queue(config.storage.queue_path)
    try:
        for settings in config.sinks:
            worker = SyncWorker(config, queue, functools.partial(open_sink, settings), settings=settings)
            try:
                worker.cycle()
            finally:
                if worker.sink is not None:
                    worker.sink.close()
    finally:
        queue.close()


def two_sink_trap(write_config: Callable[..., Path], tmp_path: Path, images: int = 2) -> Iterator[Config]:
    """Yield a trap with ``images`` captures, synced once to both sinks of :func:`two_sinks`;
    forget the in-memory platform after."""
    config = load_config(write_config(sink=two_sinks(tmp_path)), environ={})
    try:
        capture(config, images)
        run_workers(config)
        yield config
    finally:
        memory.forget(f"lab-{tmp_path.name}")
