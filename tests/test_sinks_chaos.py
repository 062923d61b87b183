"""Three sinks through a hostile network (slow: ``pytest -m slow``): the Sticky Pi devserver,
the Tator double and the Data Lake double, each behind its own fault proxy dropping, resetting,
stalling and failing some of the requests (:data:`RATES`). Every image and its annotations must end up on
every platform exactly once, with its md5, and the run prints its figures."""

from __future__ import annotations

import random
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from helpers.datalake import COLLECTION, KEY, SECRET, DatalakeHarness, record_sdk_sleeps
from helpers.faultproxy import FaultProxy
from helpers.sink_contract import SinkHarness
from helpers.sinktrap import capture_annotated, close_sinks, sink_workers
from helpers.tator_sink import TOKEN, TatorHarness
from test_scheduler import SteppingClock
from test_sink_contract import PASSWORD, StickyPiHarness

from agent.config import config_from_mapping
from agent.queue import deliveries as dq
from agent.service import Pipeline
from agent.sinks.credentials import Credentials, Secret
from agent.sinks.datalake import DataLakeSink
from agent.sinks.passes import image_record
from agent.sinks.stickypi import StickyPiSink
from agent.sinks.tator import TatorSink

N_IMAGES = 12
OUTLINES = [{"contour": [[[10, 12]], [[60, 14]], [[30, 70]]], "name": "insect", "value": 1}]
ALGO, VERSION = "sticky-test", "1700000000-" + "a" * 32
#: Faults per request: the Sticky Pi API takes about 2 requests an image, Tator about 11 and the lake
#: about 9, and one fault ends the pass: higher rates would abort nearly every pass of the latter.
RATES = {"stickypi": 0.25, "tator": 0.06, "lake": 0.06}
TIMEOUTS: dict[str, Any] = {"connect_timeout": 1, "read_timeout": 2}


@pytest.mark.slow
def test_three_sinks_each_get_every_image_once_through_faults(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rng = random.Random(20261129)
    record_sdk_sleeps(monkeypatch)
    stickypi = StickyPiHarness(tmp_path / "stickypi")
    tator = TatorHarness(tmp_path / "tator")
    lake = DatalakeHarness([])
    harnesses: dict[str, SinkHarness] = {"stickypi": stickypi, "tator": tator, "lake": lake}
    upstreams = {"stickypi": stickypi.server.url, "tator": tator.double.url, "lake": lake.double.url}
    proxies = {
        name: FaultProxy.for_url(
            url, seed=rng.randrange(2**32), fault_rate=RATES[name], stall_seconds=2
        ).__enter__()
        for name, url in upstreams.items()
    }
    factories: dict[str, Callable[[], Any]] = {
        "stickypi": lambda: StickyPiSink(proxies["stickypi"].url, Credentials("alice", PASSWORD), **TIMEOUTS),
        "tator": lambda: TatorSink(
            proxies["tator"].url, Secret(TOKEN), project=1, media_type=1, localization_type=2, **TIMEOUTS
        ),
        "lake": lambda: DataLakeSink(
            proxies["lake"].url,
            COLLECTION,
            Credentials(KEY, SECRET),
            sleep=lambda _s: None,
            job_timeout=2.0,
            **TIMEOUTS,
        ),
    }
    tables = {
        "device": {"id": "0a1b2c3d"},
        "storage": {"data_dir": str(tmp_path / "data")},
        "camera": {"type": "synthetic", "width": 320, "height": 240, "seed": 7},
        "sink": [
            {"name": "stickypi", "type": "memory"},
            {"name": "tator", "type": "memory"},
            {"name": "lake", "type": "memory", "required": False},
        ],
    }
    settings = {"batch_size": 8, "parallelism": 3, "max_attempts": 1000, "backoff_max": "2s"}
    for table in tables["sink"]:
        table.update(settings)
    config = config_from_mapping(tables, environ={})
    pipeline = Pipeline.build(config)
    clock = SteppingClock(1.0)
    pipeline.capturer.now, pipeline.capturer.sleep = clock, clock.sleep
    capture_annotated(pipeline, N_IMAGES, ALGO, VERSION, OUTLINES)
    workers = sink_workers(config, pipeline, factories, rng=rng)
    started, cycles = time.monotonic(), Counter[str]()
    try:
        pending = set(workers)
        for _ in range(3000):  # bounded: each cycle is one probe and one pass
            for name in sorted(pending):
                workers[name].cycle()
                cycles[name] += 1
                t = dq.totals(pipeline.queue, name)
                if t.verified == N_IMAGES and t.annotations_sent == N_IMAGES:
                    pending.discard(name)
            if not pending:
                break
        seconds = time.monotonic() - started
        faults = {name: proxy.counts for name, proxy in proxies.items()}
        print(f"\nthree sinks through faults: {N_IMAGES} images, {seconds:.1f} s")
        for name in workers:
            print(f"  {name}: {cycles[name]} cycles, faults {dict(faults[name])}")
        assert not pending, {n: dq.totals(pipeline.queue, n) for n in pending}
        # every platform holds each image once, and each image's outlines once
        for name, harness in harnesses.items():
            assert harness.images_held() == N_IMAGES, name
        records = [image_record(img, config.storage.data_dir) for img in pipeline.queue.images(N_IMAGES)]
        for name, harness in harnesses.items():
            assert [harness.annotations_held(r) for r in records] == [len(OUTLINES)] * N_IMAGES, name
        injected = [sum(n for f, n in c.items() if f.value != "none") for c in faults.values()]
        assert min(injected) >= 3, injected  # the faults really happened
    finally:
        close_sinks(workers)
        pipeline.close()
        for proxy in proxies.values():
            proxy.__exit__(None, None, None)
        stickypi.close()
        tator.close()
        lake.close()
