"""Per-sink delivery: the schema-5 migration of a queue made by the previous release, and the
deliveries of several sinks (each its own worker; retention waits for every required sink)."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers.sinktrap import capture_annotated, close_sinks, sink_workers
from sqlalchemy import select

from agent.config import Config, config_from_mapping
from agent.errors import ConfigError
from agent.queue import Queue
from agent.queue import deliveries as dq
from agent.queue.schema import Annotation, AnnotationDelivery, CaptureAttempt, Delivery, Image
from agent.queue.syncrows import add_annotation
from agent.service import Pipeline
from agent.sinks import memory
from agent.sinks.worker import SyncWorker

RELEASE_QUEUE = Path(__file__).parent / "data" / "queues" / "schema4-release-6050302.sqlite"
OUTLINE = [{"contour": [[[1, 2]], [[30, 4]], [[5, 60]]], "name": "insect", "value": 0}]


def migrated(tmp_path: Path) -> Queue:
    copy = tmp_path / "queue.sqlite"
    shutil.copy(RELEASE_QUEUE, copy)
    return Queue(copy)


def test_the_release_queue_is_carried_over_without_losing_a_row(tmp_path: Path) -> None:
    q = migrated(tmp_path)
    assert q.schema_version == 5
    with q.session() as s:
        images = {i.id: i for i in s.scalars(select(Image))}
        rows = {d.image_id: d for d in s.scalars(select(Delivery))}
        anns = list(s.scalars(select(Annotation)))
        ann_rows = {a.annotation_id: a for a in s.scalars(select(AnnotationDelivery))}
        attempts = list(s.scalars(select(CaptureAttempt)))
    assert len(images) == 10 and len(anns) == 3 and len(attempts) == 1
    # the file lifecycle stays with the image; where it stood with the server moves to stickypi
    files = {i: images[i].state for i in images}
    gone = {5: "evicted", 8: "quarantined", 9: "missing", 10: "discarded"}
    assert files == {i: gone.get(i, "captured") for i in range(1, 11)}
    assert {i: (d.sink, d.state) for i, d in rows.items()} == {
        2: ("stickypi", "waiting"),
        3: ("stickypi", "uploaded"),
        4: ("stickypi", "verified"),
        5: ("stickypi", "verified"),
        6: ("stickypi", "failed"),
        7: ("stickypi", "conflict"),
    }
    assert rows[6].attempts == 5 and "gave up after 5 tries" in (rows[6].last_error or "")
    assert "md5 ffff" in (rows[7].last_error or "") and rows[2].attempts == 1
    assert rows[4].verified_at is not None and rows[3].verified_at is None
    assert images[8].last_error == "the file no longer matches its md5"  # file problems stay
    assert {a.state for a in ann_rows.values()} == {"uploaded", "failed"} and len(ann_rows) == 2
    published = q.published()
    assert published["next_capture"] == "2026-06-01T04:00:00+00:00"
    assert published["sink.stickypi.reachable"] == "yes" and "sync_reachable" not in published
    # what the Sticky Pi sink's worker sees next: the never-tried image too, nothing evicted
    assert dq.enqueue(q, "stickypi") == 1
    waiting = dq.batch(q, "stickypi", 50)
    assert sorted(i.id for _, i in waiting) == [1, 2, 3]
    t = dq.totals(q, "stickypi")
    assert (t.verified, t.waiting, t.failed, t.conflict) == (2, 3, 1, 1)
    assert dq.waiting(q, "stickypi") == (t.waiting, t.waiting_bytes) == (3, 1000 + 1001 + 1002)
    assert dq.waiting(q, "tator") == (6, sum(1000 + i for i in (0, 1, 2, 3, 5, 6)))  # no row yet
    assert (t.annotations_sent, t.annotations_failed, t.annotations_pending) == (1, 1, 1)
    q.close()


def test_a_new_sink_is_sent_every_image_still_on_disk(tmp_path: Path) -> None:
    q = migrated(tmp_path)
    assert dq.enqueue(q, "tator") == 6  # not the evicted, quarantined, missing or discarded ones
    assert dq.enqueue(q, "tator") == 0
    assert dq.totals(q, "tator").waiting == 6
    q.close()


def test_an_original_goes_only_once_every_required_sink_verified_it(tmp_path: Path) -> None:
    q = migrated(tmp_path)
    assert [i.id for i in dq.evictable(q, ["stickypi"], ["stickypi"])] == [4]
    assert dq.evictable(q, ["stickypi", "tator"], ["stickypi", "tator"]) == []
    dq.enqueue(q, "tator")
    row = next(d for d, i in dq.batch(q, "tator", 50) if i.id == 4)
    dq.set_delivery(q, row.id, dq.DeliveryState.VERIFIED, remote_id="17")
    assert [i.id for i in dq.evictable(q, ["stickypi", "tator"], ["stickypi", "tator"])] == [4]
    # optional sinks do not hold originals back; with no sink at all nothing is evicted
    assert [i.id for i in dq.evictable(q, ["stickypi"], ["stickypi", "lake"])] == [4]
    assert dq.evictable(q, [], []) == []
    q.close()


def test_retry_puts_back_only_the_named_sinks_failures(tmp_path: Path) -> None:
    q = migrated(tmp_path)
    assert dq.retry_failed(q, "tator") == 0
    assert dq.retry_failed(q, "stickypi") == 1
    assert dq.totals(q, "stickypi").failed == 0
    q.close()


# -- several sinks, each its own worker ------------------------------------------------------


def sinks_config(tmp_path: Path, *sinks: dict[str, Any], retention: dict[str, Any] | None = None) -> Config:
    data = {
        "device": {"id": "0a1b2c3d"},
        "storage": {"data_dir": str(tmp_path / "data")},
        "camera": {"type": "synthetic", "width": 320, "height": 240, "seed": 5},
        "sink": [{"probe_interval": "1s", "backoff_max": "5s", **s} for s in sinks],
        "retention": retention or {"keep_days": 0},
    }
    return config_from_mapping(data, environ={})


@pytest.fixture
def trap(tmp_path: Path) -> Iterator[Callable[..., tuple[Pipeline, list[SyncWorker]]]]:
    made: list[tuple[Pipeline, dict[str, SyncWorker]]] = []

    def make(*sinks: dict[str, Any], **kw: Any) -> tuple[Pipeline, list[SyncWorker]]:
        for s in sinks:
            memory.forget(s["name"])
        config = sinks_config(tmp_path, *sinks, **kw)
        pipeline = Pipeline.build(config)
        workers = sink_workers(config, pipeline)
        made.append((pipeline, workers))
        return pipeline, list(workers.values())

    yield make
    for pipeline, workers in made:
        close_sinks(workers)
        pipeline.close()


def capture(pipeline: Pipeline, n: int) -> list[int]:
    return capture_annotated(pipeline, n, "", "", None)


def test_a_broken_sink_never_holds_back_another(trap: Callable[..., Any]) -> None:
    pipeline, (good, broken) = trap(
        {"name": "lab", "type": "memory"}, {"name": "lake", "type": "memory", "required": False}
    )
    ids = capture(pipeline, 3)
    add_annotation(pipeline.queue, ids[0], "algo", "1-a", OUTLINE)
    memory.platform("lake").unreachable = True
    assert broken.cycle() > 0 and broken.reachable is False
    assert good.cycle() >= 0 and good.reachable is True
    assert len(memory.platform("lab").images) == 3
    assert len(memory.platform("lab").annotations) == 1
    assert memory.platform("lake").images == {}
    assert pipeline.queue.published()["sink.lake.reachable"] == "no"
    assert pipeline.queue.published()["sink.lab.reachable"] == "yes"
    # the optional lake does not hold the originals back: retention (keep_days = 0) evicted them
    assert {i.state for i in pipeline.queue.images(10)} == {"evicted"}
    lake = dq.totals(pipeline.queue, "lake")
    assert lake.waiting == 0 and lake.verified == 0  # evicted before it got them: never sent


def test_retention_waits_for_every_required_sink(trap: Callable[..., Any]) -> None:
    pipeline, (lab, lake) = trap({"name": "lab", "type": "memory"}, {"name": "lake", "type": "memory"})
    capture(pipeline, 2)
    memory.platform("lake").unreachable = True
    lab.cycle()
    lake.cycle()
    assert {i.state for i in pipeline.queue.images(10)} == {"captured"}  # lake still lacks them
    assert dq.totals(pipeline.queue, "lab").verified == 2
    memory.platform("lake").unreachable = False
    lake.reachable = None  # probe again now
    lake.cycle()
    assert {i.state for i in pipeline.queue.images(10)} == {"evicted"}
    assert dq.totals(pipeline.queue, "lake").verified == 2


def test_a_refusing_sink_counts_failures_against_its_own_deliveries_only(trap: Callable[..., Any]) -> None:
    pipeline, (lab, lake) = trap(
        {"name": "lab", "type": "memory", "max_attempts": 1},
        {"name": "lake", "type": "memory", "max_attempts": 1},
        retention={},
    )
    capture(pipeline, 2)
    memory.platform("lake").refuse_uploads = 1  # one refusal among accepted uploads: counted
    lab.cycle()
    lake.cycle()
    assert dq.totals(pipeline.queue, "lab").verified == 2
    lake_totals = dq.totals(pipeline.queue, "lake")
    assert (lake_totals.verified, lake_totals.failed) == (1, 1)


def test_sinks_share_one_daily_budget(trap: Callable[..., Any], tmp_path: Path) -> None:
    _, (lab, lake) = trap({"name": "lab", "type": "memory"}, {"name": "lake", "type": "memory"})
    assert lab.budget is lake.budget and lab.bandwidth is lake.bandwidth


def test_sink_names_must_differ_and_the_legacy_table_cannot_mix(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as e:
        sinks_config(tmp_path, {"name": "a", "type": "memory"}, {"name": "a", "type": "memory"})
    assert "two sinks are named 'a'" in str(e.value.problems)
    with pytest.raises(ConfigError) as e:
        config_from_mapping(
            {"sync": {"url": "https://api.example.org"}, "sink": [{"name": "m", "type": "memory"}]}
        )
    assert "[sync] url" in str(e.value) and 'type = "stickypi"' in e.value.problems


def test_the_agent_runs_one_worker_per_sink_and_stops_them_all(tmp_path: Path) -> None:
    from agent.service import Agent

    for name in ("lab", "lake"):
        memory.forget(name)
    agent = Agent(
        sinks_config(tmp_path, {"name": "lab", "type": "memory"}, {"name": "lake", "type": "memory"})
    )
    agent.start()
    try:
        assert [w.name for w in agent.syncs] == ["lab", "lake"]
        assert {w.thread_name for w in agent.syncs} == {"sync-lab", "sync-lake"}
        assert agent.syncs[0].link is agent.syncs[1].link  # one link: one bandwidth cap, one budget
        assert agent._health_problem() is None
        agent.request_sync()
    finally:
        agent.stop()
    assert agent.syncs == []
