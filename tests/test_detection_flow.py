"""Annotations flow from capture through the queue to the server: the detection worker finds the
insects on a captured real trap image, the sync worker sends the outlines after their image is
verified, and the devserver stores exactly those contours. A detector failure is counted and
the image still goes."""

from __future__ import annotations

import datetime as dt
import itertools
import json
import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np
import requests
from stickypi_spec import REAL_IMAGES

from agent.config import load_config
from agent.detect import make_detector
from agent.detect.worker import DetectionWorker
from agent.devserver import parse_user
from agent.devserver.app import DevServer
from agent.queue import Image
from agent.queue import deliveries as dq
from agent.queue.syncrows import annotation_totals
from agent.service import Pipeline
from agent.sinks.stickypi import api_datetime, make_sink
from agent.sinks.worker import SyncWorker
from agent.status import collect_status


def setup(tmp_path: Path, write_config: Callable[..., Path], server: DevServer) -> Pipeline:
    creds = tmp_path / "creds"
    creds.write_text("trap:secret\n")
    creds.chmod(0o600)
    cfg = write_config(
        camera={"type": "replay", "folder": str(REAL_IMAGES)},
        sync={"url": server.url, "credentials": str(creds)},
        detector={"type": "builtin"},
    )
    return Pipeline.build(load_config(cfg, environ={}))


def drain(worker: SyncWorker) -> None:
    for _ in range(20):
        if worker.cycle() > 0:
            return


def test_detected_outlines_reach_the_server_after_their_image(
    tmp_path: Path, write_config: Callable[..., Path]
) -> None:
    with DevServer(tmp_path / "server", [parse_user("trap:secret")]) as server:
        pipeline = setup(tmp_path, write_config, server)
        config = pipeline.config
        # the replay camera's second file: a 2022 trap image (4056 x 3040) with many insects
        pipeline.capturer.capture()
        result = pipeline.capturer.capture()
        assert result.ok and result.image is not None
        image = result.image
        detector = make_detector(config.detector)
        detection = DetectionWorker(detector, pipeline.queue, config.storage.data_dir)
        assert detection.step() and detection.step() and not detection.step()  # both, then idle
        assert detection.failures == 0

        sync = SyncWorker(config, pipeline.queue, lambda: make_sink(config.sinks[0]))
        drain(sync)
        assert annotation_totals(pipeline.queue) == {"uploaded": 2}

        token = requests.post(server.url + "/get_token", auth=("trap", "secret"), timeout=10).json()["token"]
        key = [{"device": image.device, "datetime": api_datetime(image.datetime)}]
        rows = requests.post(
            server.url + "/get_uid_annotations/data", json=key, auth=(token, ""), timeout=10
        ).json()
        assert len(rows) == 1
        row = rows[0]
        assert (row["algo_name"], row["algo_version"]) == (detector.name, detector.version)
        body = json.loads(row["json"])
        assert body["metadata"]["md5"] == image.md5
        stored = body["annotations"]
        assert row["n_objects"] == len(stored) > 5  # a real trap card has insects
        with pipeline.queue.session() as s:
            from agent.queue import Annotation

            ours = s.query(Annotation).filter_by(image_id=image.id).one()
        assert stored == json.loads(ours.json)  # exactly what the detector found
        for a in stored:
            contour = np.asarray(a["contour"])
            assert contour.ndim == 3 and contour.shape[1:] == (1, 2) and contour.shape[0] >= 3
            assert a["name"] == "insect"
            assert (contour[..., 0] < image.width).all() and (contour[..., 1] < image.height).all()

        status = collect_status(config)
        assert status["insects"]["last_image"]["insects"] == len(stored)
        with pipeline.queue.session() as s:
            rows = s.query(Annotation).all()
        # the two replay pictures are different cards: (almost) all insects of the second are
        # new; the first has no earlier capture to compare with
        assert sorted(a.n_new is None for a in rows) == [False, True]
        new = sum(a.n_new or 0 for a in rows)
        assert status["insects"]["last_image"]["new"] == new
        assert 0.8 * len(stored) <= new <= len(stored)
        assert status["insects"]["images_24h"] == 2 and status["insects"]["new_24h"] == new
        pipeline.close()


class BrokenDetector:
    name = "broken"
    version = "1-" + "0" * 32

    def detect(self, jpeg: bytes) -> list[object]:
        raise RuntimeError("model file unreadable")


def test_a_detector_failure_is_counted_and_the_image_still_goes(
    tmp_path: Path, write_config: Callable[..., Path]
) -> None:
    with DevServer(tmp_path / "server", [parse_user("trap:secret")]) as server:
        pipeline = setup(tmp_path, write_config, server)
        config = pipeline.config
        assert pipeline.capturer.capture().ok
        detection = DetectionWorker(BrokenDetector(), pipeline.queue, config.storage.data_dir)  # type: ignore[arg-type]
        assert detection.step()
        assert not detection.step()  # the failed image is not retried in a loop
        assert detection.failures == 1
        assert pipeline.queue.published()["detect_failures"] == "1"
        sync = SyncWorker(config, pipeline.queue, lambda: make_sink(config.sinks[0]))
        drain(sync)
        assert dq.totals(pipeline.queue, "stickypi").verified == 1
        assert server.requests["/put_uid_annotations"] == 0
        pipeline.close()


class CountingDetector:
    """Finds nothing, fails on the images named in ``fail_on``, and records what it saw."""

    name = "counting"
    version = "1-" + "0" * 32

    def __init__(self, fail_on: set[bytes] | None = None) -> None:
        self.fail_on = fail_on or set()
        self.seen: list[bytes] = []

    def detect(self, jpeg: bytes) -> list[object]:
        self.seen.append(jpeg)
        if jpeg in self.fail_on:
            raise RuntimeError("unreadable card")
        return []


def test_captures_taken_while_the_agent_was_stopped_get_annotations(
    write_config: Callable[..., Path],
) -> None:
    """`stickyctl capture` with the agent stopped: its own process takes the pictures and no
    detector runs there. The agent, once started, annotates them all."""
    from agent.queue import Annotation
    from agent.service import Agent

    config = load_config(write_config(detector={"type": "builtin"}, capture={"interval": "1h"}), environ={})
    for _ in range(3):  # three `stickyctl capture` processes
        cli = Pipeline.build(config)
        assert cli.capturer.capture(manual=True).ok
        cli.close()
    agent = Agent(config)
    agent.start()
    try:
        assert agent.pipeline is not None
        queue = agent.pipeline.queue
        waiting = threading.Event()  # never set: its wait is the poll interval
        for _ in range(600):
            with queue.session() as s:
                if s.query(Annotation).count() == 3:
                    break
            waiting.wait(0.1)
        with queue.session() as s:
            annotated = {a.image_id for a in s.query(Annotation)}
            manual = {i.id for i in s.query(Image).filter_by(manual=True)}
        assert annotated == manual and len(manual) == 3
    finally:
        agent.stop()


def test_a_backlog_is_worked_through_in_bounded_passes_and_new_captures_come_first(
    tmp_path: Path, write_config: Callable[..., Path]
) -> None:
    from agent.detect.worker import BATCH

    config = load_config(write_config(), environ={})
    pipeline = Pipeline.build(config)
    start, seconds = dt.datetime.now(dt.UTC).replace(microsecond=0), itertools.count()
    pipeline.capturer.now = lambda: start + dt.timedelta(seconds=next(seconds))  # one second a call
    images = []
    for _ in range(2 * BATCH + 3):
        result = pipeline.capturer.capture()
        assert result.ok and result.image is not None
        images.append(result.image)
    data = config.storage.data_dir
    jpeg = {im.id: (data / im.path).read_bytes() for im in images}
    # the newest BATCH + 2 cards make the detector fail: the pass must look past them
    failing = {jpeg[im.id] for im in images[-(BATCH + 2) :]}
    detector = CountingDetector(fail_on=failing)
    worker = DetectionWorker(detector, pipeline.queue, data)  # type: ignore[arg-type]
    for _ in range(BATCH + 2):
        assert worker.step()
    assert worker.failures == BATCH + 2
    assert worker.step()  # the first image that works, past a whole batch of failures
    # a new capture while the backlog is worked through: detected within one pass
    new = pipeline.capturer.capture()
    assert new.ok and new.image is not None
    steps = 0
    while jpeg.setdefault(new.image.id, (data / new.image.path).read_bytes()) not in detector.seen:
        assert worker.step()
        steps += 1
    assert steps <= BATCH
    while worker.step():
        pass
    assert worker.failures == BATCH + 2  # each failing card tried once
    assert len(detector.seen) == len(images) + 1
    assert worker.detected == len(images) + 1 - (BATCH + 2)
    pipeline.close()
