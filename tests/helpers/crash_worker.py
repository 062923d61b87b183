"""Child process for tests/test_crash_safety.py: something for the test to SIGKILL.

    python tests/helpers/crash_worker.py CONFIG loop       capture back to back until killed
    python tests/helpers/crash_worker.py CONFIG reconcile  one start-up reconciliation

``loop`` prints ``ready`` once the pipeline is built (the test starts its kill timer then, so
kills land in captures and not in Python's start-up), then ``ok <path> <md5>`` after each
capture that returned ok (its row is committed). It never exits on its own: a capture that is
not ok prints ``failed ...`` and exits 3, which the test reports.

The loop steps the capture clock one second per capture instead of waiting for the next
wall-clock second: a 320x240 capture takes ~10 ms here, so with the real clock a random kill
would land in ``Capturer._capture_time``'s sleep ~99 % of the time. Everything else is the
real pipeline (camera, EXIF, atomic writes, fsyncs, queue commit).

``reconcile`` exists to be killed with ``STICKY_AGENT_KILL_AT`` while it adopts an image (its
thumbnails go through the same checkpointed atomic writes).
"""

from __future__ import annotations

import datetime as dt
import sys
from collections.abc import Callable
from itertools import count
from pathlib import Path

from agent.config import load_config
from agent.service import Pipeline


def fixed_clock(when: dt.datetime) -> Callable[[], dt.datetime]:
    return lambda: when


def loop(pipeline: Pipeline) -> int:
    capturer = pipeline.capturer
    # First free second: after every image already in the queue (reconciliation ran before us,
    # so every original on disk has a row) and not before the real clock.
    start = dt.datetime.now(dt.UTC).replace(microsecond=0)
    latest = pipeline.queue.latest_image_time(pipeline.device)
    if latest is not None and latest >= start:
        start = latest + dt.timedelta(seconds=1)
    print("ready", flush=True)
    for i in count():
        when = start + dt.timedelta(seconds=i)
        capturer.now = fixed_clock(when)
        result = capturer.capture()
        if not result.ok or result.image is None:
            print(f"failed {result.outcome}: {result.error}", flush=True)
            return 3
        print(f"ok {result.image.path} {result.image.md5}", flush=True)
    return 0  # unreachable


def main(argv: list[str]) -> int:
    config_path, command = argv
    pipeline = Pipeline.build(load_config(Path(config_path), environ={}))
    try:
        if command == "loop":
            return loop(pipeline)
        if command == "reconcile":
            report = pipeline.reconcile()
            print(f"reconciled {report}", flush=True)
            return 0
        print(f"unknown command {command!r}", file=sys.stderr)
        return 2
    finally:
        pipeline.close()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
