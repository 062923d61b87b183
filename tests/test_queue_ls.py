"""``stickyctl queue ls`` with several sinks: a column per sink with the image's delivery state
there, ``--sink`` and ``--state`` (a file state or a delivery state) filters, per-sink JSON."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from conftest import run_stickyctl
from helpers.sinkconfig import two_sink_trap

from agent.config import Config
from agent.queue import Queue
from agent.queue import deliveries as dq
from agent.queue.states import DeliveryState


@pytest.fixture
def trap(write_config: Callable[..., Path], tmp_path: Path) -> Iterator[Config]:
    yield from two_sink_trap(write_config, tmp_path, images=3)


def ls(config: Config, *args: str) -> str:
    result = run_stickyctl("--config", str(config.source), "queue", "ls", *args)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_a_column_per_sink(trap: Config) -> None:
    lines = ls(trap).splitlines()
    assert lines[0].split() == ["image", "file", "size", "stickypi", "lab"]
    assert len(lines) == 4
    for line in lines[1:]:
        assert line.split()[1:2] == ["captured"] and line.split()[4:6] == ["waiting", "verified"], line


def test_filters_by_delivery_state_at_a_sink_or_any(trap: Config) -> None:
    queue = Queue(trap.storage.queue_path)
    try:
        dq.enqueue(queue, "stickypi")
        (delivery, image), *_ = dq.batch(queue, "stickypi", 1)
        dq.set_delivery(queue, delivery.id, DeliveryState.CONFLICT, error="the API holds another md5: 0123")
    finally:
        queue.close()
    name = Path(image.path).name
    conflict = ls(trap, "--state", "conflict").splitlines()
    assert len(conflict) == 2 and name in conflict[1]
    assert "conflict" in conflict[1] and "stickypi: the API holds another md5: 0123" in conflict[1]
    assert len(ls(trap, "--state", "waiting", "--sink", "stickypi").splitlines()) == 3  # header + 2
    assert ls(trap, "--state", "waiting", "--sink", "lab") == "no waiting images in the queue\n"
    lab = ls(trap, "--sink", "lab", "--state", "verified").splitlines()
    assert lab[0].split() == ["image", "file", "size", "lab"] and len(lab) == 4
    assert len(ls(trap, "--state", "captured").splitlines()) == 4  # a file state


def test_json_has_each_sinks_delivery(trap: Config) -> None:
    rows = json.loads(ls(trap, "--json"))
    assert len(rows) == 3
    for row in rows:
        assert row["state"] == "captured"
        assert set(row["deliveries"]) == {"stickypi", "lab"}
        assert row["deliveries"]["stickypi"] == {
            "state": "waiting",
            "attempts": 0,
            "last_error": None,
            "remote_id": None,
        }
        lab = row["deliveries"]["lab"]
        assert lab["state"] == "verified" and lab["remote_id"]
    only = json.loads(ls(trap, "--json", "--sink", "stickypi"))
    assert all(set(r["deliveries"]) == {"stickypi"} for r in only)


def test_an_unknown_sink_or_state_is_a_usage_error(trap: Config) -> None:
    for args, says in (
        (["--sink", "tator"], "no sink named 'tator' (sinks: stickypi, lab)"),
        (["--state", "lost"], "unknown state 'lost'"),
    ):
        result = run_stickyctl("--config", str(trap.source), "queue", "ls", *args)
        assert result.returncode == 2 and says in result.stderr, result.stderr
