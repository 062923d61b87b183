"""Sync through a hostile network: a seeded fault-injecting proxy between agent and devserver
(drops before/after the server saw a request, resets, stalls past the read timeout, 500s,
503/429 with Retry-After) over hundreds of images. Afterwards the server holds every image
exactly once with the right md5, every annotation exactly once, and the queue agrees.
And while the server hangs, captures stay on time."""

from __future__ import annotations

import datetime as dt
import random
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import requests
from helpers.faultproxy import FAULTS, Fault, FaultProxy
from test_scheduler import SteppingClock

from agent.config import load_config
from agent.devserver import parse_user
from agent.devserver.app import DevServer
from agent.queue import deliveries as dq
from agent.queue.syncrows import add_annotation, annotation_totals
from agent.service import Agent, Pipeline
from agent.sinks.stickypi import api_datetime, make_sink
from agent.sinks.worker import SyncWorker

N_IMAGES = 200
CONTOUR = [{"contour": [[[1, 2]], [[30, 4]], [[5, 60]]], "name": "insect", "fill_colour": "#ff0000",
            "stroke_colour": "#0000ff", "value": 0}]  # fmt: skip


@pytest.fixture
def server(tmp_path: Path) -> DevServer:
    with DevServer(tmp_path / "server", [parse_user("trap:secret")]) as srv:
        yield srv


def credentials(tmp_path: Path) -> Path:
    path = tmp_path / "creds"
    path.write_text("trap:secret\n")
    path.chmod(0o600)
    return path


def server_rows(url: str, route: str, keys: list[tuple[str, dt.datetime]]) -> list[dict]:
    token = requests.post(url + "/get_token", auth=("trap", "secret"), timeout=10).json()["token"]
    body = [{"device": d, "datetime": api_datetime(t)} for d, t in keys]
    response = requests.post(url + route, json=body, auth=(token, ""), timeout=30)
    response.raise_for_status()
    return response.json()


@pytest.mark.slow
def test_every_image_and_annotation_arrives_exactly_once_through_faults(
    tmp_path: Path, write_config: Callable[..., Path], server: DevServer
) -> None:
    rng = random.Random(20261122)
    proxy = FaultProxy.for_url(server.url, seed=rng.randrange(2**32), fault_rate=0.25, stall_seconds=5)
    with proxy:
        cfg = write_config(
            sync={
                "url": proxy.url,
                "credentials": str(credentials(tmp_path)),
                "read_timeout": "1s",
                "connect_timeout": "1s",
                "batch_size": 25,
                "parallelism": 3,
                "max_attempts": 1000,
            }
        )
        config = load_config(cfg, environ={})
        pipeline = Pipeline.build(config)
        clock = SteppingClock(1.0)
        pipeline.capturer.now, pipeline.capturer.sleep = clock, clock.sleep
        for _ in range(N_IMAGES):
            result = pipeline.capturer.capture()
            assert result.ok and result.image is not None
            add_annotation(pipeline.queue, result.image.id, "sticky-test", "1700000000-" + "a" * 32, CONTOUR)
        queue = pipeline.queue
        worker = SyncWorker(config, queue, lambda: make_sink(config.sinks[0]), rng=random.Random(1))
        delays = []
        started = time.monotonic()
        for _ in range(2000):  # bounded: each cycle is one probe + one pass
            delay = worker.cycle()
            delays.append(delay)
            if dq.totals(queue, "stickypi").verified == N_IMAGES and annotation_totals(queue) == {
                "uploaded": N_IMAGES
            }:
                break
        worker.stop()
        faults = proxy.counts
    # the chaos run's figures (pytest -s shows them)
    print(
        f"\nchaos: {N_IMAGES} images + {N_IMAGES} annotations, {len(delays)} sync cycles, "
        f"{time.monotonic() - started:.1f} s to converge (backoff waits not slept); faults: "
        + ", ".join(f"{f.name.lower()} {n}" for f, n in sorted(faults.items(), key=lambda x: x[0].name))
    )
    # the proxy really was hostile, with every kind of fault
    assert set(faults) == {Fault.NONE, *FAULTS}, faults
    assert sum(n for f, n in faults.items() if f is not Fault.NONE) > 50
    # the queue agrees: every image verified, every annotation uploaded
    assert dq.totals(queue, "stickypi").verified == N_IMAGES
    assert annotation_totals(queue) == {"uploaded": N_IMAGES}
    # the server holds every image exactly once, with the right md5
    rows = queue.images(limit=N_IMAGES)
    keys = [(r.device, r.datetime) for r in rows]
    held = server_rows(server.url, "/get_images/metadata", keys)
    assert len(held) == N_IMAGES
    assert {(h["device"], h["datetime"], h["md5"]) for h in held} == {
        (r.device, api_datetime(r.datetime), r.md5) for r in rows
    }
    # no image was sent again once the server had it (a re-upload overwrites the stored object)
    assert server.requests["/_put_new_images"] == N_IMAGES
    # every annotation exactly once
    annotations = server_rows(server.url, "/get_uid_annotations/metadata", keys)
    assert len(annotations) == N_IMAGES
    assert len({a["parent_image_id"] for a in annotations}) == N_IMAGES
    assert all(a["n_objects"] == 1 for a in annotations)
    # unreachable cycles backed off (delays > 0), and the 429/503 answers were honoured
    assert any(d >= 1.0 for d in delays)
    pipeline.close()


@pytest.mark.slow
def test_captures_stay_on_time_while_the_server_hangs(
    tmp_path: Path, write_config: Callable[..., Path]
) -> None:
    # a server wedged behind a load balancer: every request is read and never answered
    hang = FaultProxy(("127.0.0.1", 9), schedule=lambda _n: Fault.STALL, stall_seconds=300).start()
    cfg = write_config(
        capture={"interval": "10s"},
        camera={"width": 1296, "height": 972},
        sync={"url": f"http://127.0.0.1:{hang.port}", "credentials": str(credentials(tmp_path)),
              "read_timeout": "60s", "parallelism": 4},
    )  # fmt: skip
    agent = Agent(load_config(cfg, environ={}))
    agent.start()
    try:
        assert agent.pipeline is not None
        queue = agent.pipeline.queue
        import threading

        done = threading.Event()  # never set: its wait is the poll interval
        # two scheduled captures (each wakes the hung sync worker): poll the capture log
        deadline = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=40)
        while len(queue.attempts(limit=5)) < 2 and dt.datetime.now(dt.UTC) < deadline:
            done.wait(0.2)
        attempts = queue.attempts(limit=5)
        assert len(attempts) >= 2, "no scheduled captures while the server hung"
        assert hang.counts[Fault.STALL] >= 1, "the sync worker never reached the hanging server"
        for a in attempts:
            slot = a.started_at.replace(microsecond=0) - dt.timedelta(seconds=a.started_at.second % 10)
            late = (a.started_at - slot).total_seconds()
            assert a.outcome == "ok" and late < 1.0, f"capture started {late:.2f}s after its slot"
    finally:
        agent.stop()
        hang.stop()
