"""The web page with several sinks: a dashboard row, a ``sync_<sink>`` CSV column and metrics
with a ``sink`` label for each; one sink down and one fine are told apart."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from helpers.sinkconfig import two_sink_trap
from prometheus_client.parser import text_string_to_metric_families

from agent.config import Config
from agent.queue import Queue
from agent.queue.states import ImageState
from agent.web import dashboard, export, metrics
from agent.web.data import WebReader


@pytest.fixture
def trap(write_config: Callable[..., Path], tmp_path: Path) -> Iterator[Config]:
    yield from two_sink_trap(write_config, tmp_path)


def running(config: Config) -> dict[str, object]:
    data = dashboard.collect(config)
    data["agent"] = {"running": True, "pid": 1}
    data["clock"]["trusted"] = True
    data["verdict"] = dashboard.verdict(data)
    return data


def test_the_dashboard_has_a_row_per_sink_and_names_the_one_down(trap: Config) -> None:
    data = running(trap)
    assert data["verdict"] == ("warn", "Capturing; stickypi is unreachable, 2 images wait for it.")
    html = str(dashboard.dashboard_html(data))
    assert 'data-sink="stickypi" data-state="unreachable"' in html
    assert 'data-sink="lab" data-state="ok"' in html
    assert "lab (not required)" in html and "UNREACHABLE" in html


def test_the_csv_has_a_column_per_sink_with_the_state_there(trap: Config) -> None:
    queue = Queue(trap.storage.queue_path)
    try:
        oldest = min(queue.images(limit=10), key=lambda i: i.datetime)
        queue.set_state(oldest.id, ImageState.QUARANTINED, error="md5 changed")
    finally:
        queue.close()
    names = dashboard.sink_names(trap)
    reader = WebReader(trap.storage.queue_path)
    try:
        text = "".join(export.csv_lines(reader.rows(sinks=names), names))
    finally:
        reader.close()
    rows = list(csv.DictReader(io.StringIO(text)))
    assert [(r["sync_stickypi"], r["sync_lab"]) for r in rows] == [
        ("quarantined", "verified"),  # never going to stickypi; lab had it before
        ("waiting", "verified"),
    ]


def test_metrics_carry_a_sink_label(trap: Config) -> None:
    collector = metrics.TrapCollector(lambda: dashboard.collect(trap), lambda: None)
    samples = {
        (s.name, tuple(sorted((k, v) for k, v in s.labels.items() if k != "device"))): s.value
        for family in text_string_to_metric_families(metrics.render(collector).decode())
        for s in family.samples
    }
    assert samples[("sticky_sink_reachable", (("sink", "stickypi"),))] == 0
    assert samples[("sticky_sink_reachable", (("sink", "lab"),))] == 1
    assert samples[("sticky_queue_images", (("sink", "stickypi"), ("state", "waiting")))] == 2
    assert samples[("sticky_queue_images", (("sink", "lab"), ("state", "verified")))] == 2
    assert samples[("sticky_bytes_waiting", (("sink", "lab"),))] == 0
    assert samples[("sticky_bytes_waiting", (("sink", "stickypi"),))] > 0
    assert ("sticky_last_sync_success_timestamp_seconds", (("sink", "lab"),)) in samples
    assert ("sticky_last_sync_success_timestamp_seconds", (("sink", "stickypi"),)) not in samples
    assert samples[("sticky_sink_required", (("sink", "lab"),))] == 0
    assert samples[("sticky_images", (("state", "captured"),))] == 2
