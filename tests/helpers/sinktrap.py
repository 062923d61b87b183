"""A trap's pipeline and one sync worker per sink, as the agent runs them (one shared link)."""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any

from agent.config import Config
from agent.queue.syncrows import add_annotation
from agent.service import Pipeline
from agent.sinks.base import Sink, open_sink
from agent.sinks.throttle import Link
from agent.sinks.worker import SyncWorker


def sink_workers(
    config: Config, pipeline: Pipeline, factories: Mapping[str, Callable[[], Sink]] | None = None, **kw: Any
) -> dict[str, SyncWorker]:
    """Return a worker per sink of ``config`` by name, sharing one link, each making its sink with
    ``factories[name]`` if given, else from its settings (``kw`` go to every worker)."""
    link = Link.from_config(config, pipeline.queue)
    return {
        s.name: SyncWorker(
            config,
            pipeline.queue,
            (factories or {}).get(s.name) or functools.partial(open_sink, s),
            settings=s,
            link=link,
            **kw,
        )
        for s in config.sinks
    }


def close_sinks(workers: Mapping[str, SyncWorker]) -> None:
    """Close the sink each worker made (they make one at their first cycle)."""
    for worker in workers.values():
        if worker.sink is not None:
            worker.sink.close()


def capture_annotated(
    pipeline: Pipeline, n: int, algo: str, version: str, outlines: list[dict[str, Any]] | None
) -> list[int]:
    """Take ``n`` captures, each with ``outlines`` queued as its annotations by ``algo``/``version``
    (none if ``outlines`` is None); return the images' ids."""
    ids = []
    for _ in range(n):
        result = pipeline.capturer.capture(manual=False)
        assert result.ok and result.image is not None
        ids.append(result.image.id)
        if outlines is not None:
            add_annotation(pipeline.queue, result.image.id, algo, version, outlines)
    return ids
