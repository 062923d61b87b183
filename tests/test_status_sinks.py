"""``stickyctl status`` with several sinks: one block per sink, each with its own state, backlog
and problems; a sink that is down never hides another that is fine."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from conftest import run_stickyctl
from helpers.sinkconfig import two_sink_trap

from agent.config import Config
from agent.queue import Queue
from agent.queue import deliveries as dq
from agent.queue.readonly import QueueReader
from agent.queue.states import DeliveryState
from agent.status import MAX_LINE, collect_status, format_status, sink_state


@pytest.fixture
def trap(write_config: Callable[..., Path], tmp_path: Path) -> Iterator[Config]:
    yield from two_sink_trap(write_config, tmp_path)


def test_each_sink_has_its_own_state_and_counts(trap: Config) -> None:
    data = collect_status(trap)
    sinks = data["sinks"]
    assert list(sinks) == ["stickypi", "lab"]
    down, lab = sinks["stickypi"], sinks["lab"]
    assert down["type"] == "stickypi" and down["required"] is True
    assert down["reachable"] is False and down["last_state"] == "unreachable"
    assert down["waiting"] == 2 and down["verified"] == 0 and down["waiting_bytes"] > 0
    assert down["last_error"] and down["oldest_waiting"] is not None
    assert lab["type"] == "memory" and lab["required"] is False
    assert lab["reachable"] is True and lab["last_state"] == "ok" and lab["last_error"] is None
    assert lab["verified"] == 2 and lab["waiting"] == 0 and lab["last_success"] is not None
    assert lab["last_pass"]["images_sent"] == 2
    # the agent is not running here: the state says so, the facts are kept as the last check
    assert down["state"] == lab["state"] == "agent not running"
    # the summary: images still on their way to at least one sink
    assert data["queue"]["waiting"] == 2 and data["queue"]["states"]["captured"]["count"] == 2


def test_the_text_shows_one_block_per_sink_and_names_the_broken_one(trap: Config) -> None:
    data = collect_status(trap)
    data["agent"].update(running=True, pid=1)
    data["clock"]["trusted"] = True
    text = format_status(data)
    assert text.splitlines()[0].startswith("PROBLEM: stickypi unreachable"), text
    assert "lab" not in text.splitlines()[0]
    flat = " ".join(text.split())
    assert "sink stickypi" in text and "sink lab" in text
    assert "(stickypi): UNREACHABLE since" in flat
    assert "sink lab (memory, not required): reachable since" in flat
    assert "backlog 2 images" in flat and "backlog 0 images" in flat
    assert "holds 2 images verified" in flat
    assert all(len(line) <= MAX_LINE for line in text.splitlines()), text

    data["agent"].update(running=False, pid=None)
    flat = " ".join(format_status(data).split())
    assert "agent not running; UNREACHABLE at the last check" in flat
    assert "agent not running; reachable at the last check" in flat
    assert "reachable since" not in flat


def test_failed_and_conflicting_deliveries_are_listed_with_their_reasons_per_sink(trap: Config) -> None:
    queue = Queue(trap.storage.queue_path)
    try:
        assert dq.enqueue(queue, "stickypi") == 2  # no rows yet: the sink was never reached
        (first, first_img), (second, _) = dq.batch(queue, "stickypi", 10)
        dq.set_delivery(queue, first.id, DeliveryState.FAILED, error="gave up after 5 tries: too big")
        dq.set_delivery(queue, second.id, DeliveryState.CONFLICT, error="the API holds md5 abc, ours def")
    finally:
        queue.close()
    data = collect_status(trap)
    down = data["sinks"]["stickypi"]
    assert (down["failed"], down["conflict"], down["waiting"]) == (1, 1, 0)
    assert {p["state"] for p in down["problems"]} == {"failed", "conflict"}
    assert data["sinks"]["lab"]["problems"] == []
    assert data["queue"]["waiting"] == 0  # settled with both (failed is the operator's now)
    text = format_status(data)
    assert "2 image(s) refused by stickypi" in text.splitlines()[0]
    assert "FAILED      " + Path(first_img.path).name + ": gave up after 5 tries: too big" in text
    assert "the API holds md5 abc, ours def" in text
    assert "  failed images 1: one more try by themselves, next when the agent runs" in text


def test_the_per_sink_sql_agrees_with_the_queue_module(trap: Config) -> None:
    from agent.queue.states import ImageState

    queue = Queue(trap.storage.queue_path)
    try:

        def compare() -> None:
            reader = QueueReader(trap.storage.queue_path)
            try:
                for name in ("stickypi", "lab", "never-configured"):
                    expected = dq.totals(queue, name)
                    got = reader.sink_totals(name)
                    assert got == {k: getattr(expected, k) for k in got}, name
                both = [dq.totals(queue, n) for n in ("stickypi", "lab")]
                assert reader.waiting_anywhere(["stickypi", "lab"]) == (
                    max(t.waiting for t in both),  # here every image lab holds is one stickypi lacks
                    max(t.waiting_bytes for t in both),
                )
            finally:
                reader.close()

        compare()  # stickypi: no rows (never reached); lab: all verified
        dq.enqueue(queue, "stickypi")
        (first, _), (_, second_img) = dq.batch(queue, "stickypi", 10)
        dq.set_delivery(queue, first.id, DeliveryState.UPLOADED)
        queue.set_state(second_img.id, ImageState.QUARANTINED, error="md5 changed")
        compare()  # a waiting row whose file is gone is not waiting; an uploaded one is
        dq.set_delivery(queue, first.id, DeliveryState.VERIFIED)
        compare()
    finally:
        queue.close()


def test_status_json_from_the_command(trap: Config) -> None:
    result = run_stickyctl("--config", str(trap.source), "status", "--json")
    assert result.returncode == 0, result.stderr
    sinks = json.loads(result.stdout)["sinks"]
    assert sinks["stickypi"]["reachable"] is False and sinks["lab"]["verified"] == 2
    assert set(sinks["lab"]["annotations"]) == {"sent", "pending", "failed"}


@pytest.mark.parametrize(
    ("reachable", "error", "checked", "expected"),
    [
        (None, None, None, "not checked"),
        (False, "connection refused", "t", "unreachable"),
        (True, None, "t", "ok"),
        (True, "/get_token: the API refused our credentials (401)", "t", "auth"),
        (True, "/_put_new_images: the API answered 500 INTERNAL SERVER ERROR", "t", "refusing"),
        (True, "/get_token: the API answered 500 INTERNAL SERVER ERROR", "t", "refusing"),  # not auth
        (True, "today's data budget (5 MB) is spent", "t", "budget spent"),
    ],
)
def test_a_sink_state_from_what_its_worker_published(
    reachable: bool | None, error: str | None, checked: str | None, expected: str
) -> None:
    assert sink_state(reachable, error, checked) == expected


def test_a_quarantined_file_is_a_problem_of_the_trap_not_of_a_sink(trap: Config) -> None:
    from agent.queue.states import ImageState

    queue = Queue(trap.storage.queue_path)
    try:
        image = queue.images(limit=1)[0]
        queue.set_state(image.id, ImageState.QUARANTINED, error="md5 changed on disk")
    finally:
        queue.close()
    data = collect_status(trap, now=dt.datetime.now(dt.UTC))
    assert data["problems"][0]["reason"] == "md5 changed on disk"
    text = format_status(data)
    assert "1 file(s) quarantined" in text.splitlines()[0] or "(more below)" in text.splitlines()[0]
    assert "QUARANTINED" in text and "md5 changed on disk" in text


def test_a_queue_of_an_older_release_says_how_to_upgrade_it(trap: Config) -> None:
    import sqlite3

    with sqlite3.connect(trap.storage.queue_path) as db:
        db.execute("DROP TABLE deliveries")
    result = run_stickyctl("--config", str(trap.source), "status")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "from an older sticky-agent" in result.stderr and "systemctl restart sticky-agent" in result.stderr
