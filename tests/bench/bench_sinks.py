"""Requests per image and images per second, per sink: the agent's SyncWorker against each double.

N images (synthetic camera, ``--size``) are captured once by the agent's pipeline, each with
``--outlines`` insect outlines queued as its annotations. For each sink type (Sticky Pi
devserver, Tator double, Data Lake double, as ``stickyctl demo`` serves them) a fresh copy of
the data folder and queue is synced by one SyncWorker (the sink's default settings:
parallelism 2, batch 32) until a cycle asks for a pause; every image must then be verified and
every annotation sent. The double runs in this process (its CPU counts in the wall time).

Read it: img/s is images over wall time (probe, lookups, uploads, verification, annotations);
MB/s is image bytes over that time; req/img counts the sink's requests (the client side) and
the double's (the server side), annotations included.

    python tests/bench/bench_sinks.py --images 40
"""

from __future__ import annotations

import argparse
import datetime as dt
import functools
import itertools
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import agent.config  # noqa: F401  (first: the config registers every sink)
from agent import __version__
from agent.config import Config, config_from_mapping
from agent.devserver.demo import serve_doubles
from agent.queue import Queue
from agent.queue import deliveries as dq
from agent.queue.syncrows import add_annotation
from agent.service import Pipeline
from agent.sinks.base import open_sink
from agent.sinks.worker import SyncWorker

DEVICE = "be0c0006"
ALGO, VERSION = "sticky-agent-builtin", "1795960800-0123456789abcdef"


def tables(data_dir: Path, size: tuple[int, ...]) -> dict[str, Any]:
    return {
        "device": {"id": DEVICE},
        "storage": {"data_dir": str(data_dir)},
        "camera": {"type": "synthetic", "width": size[0], "height": size[1], "seed": 1},
        "sensors": {"type": "fake", "temperature": 21.5, "humidity": 55.0, "battery": 80},
        "location": {"lat": 49.26142, "lng": -123.25088, "alt": 97.3},
    }


def outline(i: int) -> dict[str, Any]:
    x, y = 40 + 60 * (i % 30), 40 + 60 * (i // 30)
    square = [[[x, y]], [[x + 30, y]], [[x + 30, y + 24]], [[x, y + 24]]]
    return {"contour": square, "name": "insect", "value": 1}


def prepare(folder: Path, n: int, size: tuple[int, ...], outlines: int) -> int:
    """Capture ``n`` images into ``folder`` (1 s apart) with their annotations; return their bytes."""
    pipeline = Pipeline.build(config_from_mapping(tables(folder, size), environ={}))
    start, tick = dt.datetime(2026, 6, 1, tzinfo=dt.UTC), itertools.count()
    pipeline.capturer.now = lambda: start + dt.timedelta(seconds=next(tick))
    total = 0
    for _ in range(n):
        result = pipeline.capturer.capture()
        assert result.ok and result.image is not None
        total += result.image.size
        add_annotation(pipeline.queue, result.image.id, ALGO, VERSION, [outline(i) for i in range(outlines)])
    pipeline.close()
    return total


SINKS: dict[str, dict[str, Any]] = {
    "stickypi": {"type": "stickypi", "url": "http://127.0.0.1:{port}"},
    "tator": {
        "type": "tator",
        "host": "http://127.0.0.1:{port}",
        "project": 1,
        "media_type": 1,
        "localization_type": 2,
    },
    "datalake": {"type": "datalake", "url": "http://127.0.0.1:{port}", "collection": "bench"},
}


def server_requests(double: Any) -> int:
    """Return the requests a double counted."""
    counts = double.requests if hasattr(double, "requests") else double.state.requests
    return int(sum(counts.values()))


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run_one(kind: str, src: Path, work: Path, size: tuple[int, ...], n: int, nbytes: int) -> dict[str, Any]:
    shutil.copytree(src, work / "data")
    table = {k: v.format(port=free_port()) if isinstance(v, str) else v for k, v in SINKS[kind].items()}
    table |= {"name": kind, "credentials": str(work / "secret")}
    config: Config = config_from_mapping(tables(work / "data", size) | {"sink": [table]}, environ={})
    (settings,) = config.sinks
    with serve_doubles(config) as served:
        ((_, double),) = served
        before = server_requests(double)
        queue = Queue(config.storage.queue_path)
        worker = SyncWorker(config, queue, functools.partial(open_sink, settings), settings=settings)
        t0 = time.perf_counter()
        cycles = 0
        for cycles in range(1, 10_000):  # noqa: B007
            if worker.cycle() > 0:
                break
        seconds = time.perf_counter() - t0
        totals = dq.totals(queue, kind)
        sent = getattr(worker.sink, "requests_sent", 0)
        worker.stop()
        queue.close()
        served_requests = server_requests(double) - before
    if totals.verified != n or totals.annotations_sent != n:
        raise SystemExit(f"{kind}: not everything arrived: {totals} (last error: {worker.last_error})")
    return {
        "sink": kind,
        "seconds": seconds,
        "img/s": n / seconds,
        "MB/s": nbytes / seconds / 1e6,
        "req/img client": sent / n,
        "req/img server": served_requests / n,
        "cycles": cycles,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--images", type=int, default=40)
    ap.add_argument("--size", default="2592x1944", help="synthetic frame WxH")
    ap.add_argument("--outlines", type=int, default=20, help="insect outlines per image")
    ap.add_argument("--sinks", default="stickypi,tator,datalake")
    args = ap.parse_args()
    size = tuple(int(x) for x in args.size.lower().split("x"))
    print(
        f"machine: {platform.platform()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
        f"sticky-agent {__version__}; load average {os.getloadavg()[0]:.2f}"
    )
    with tempfile.TemporaryDirectory(prefix="bench-sinks-") as tmp:
        src = Path(tmp, "images")
        nbytes = prepare(src, args.images, size, args.outlines)
        print(f"{args.images} images at {args.size} ({nbytes / args.images / 1e6:.2f} MB each), "
              f"{args.outlines} outlines each")  # fmt: skip
        head = (
            f"{'sink':<10} {'seconds':>8} {'img/s':>7} {'MB/s':>6} {'req/img (client)':>17} {'(server)':>9}"
        )
        print(head)
        for kind in args.sinks.split(","):
            r = run_one(kind, src, Path(tmp, kind), size, args.images, nbytes)
            print(
                f"{r['sink']:<10} {r['seconds']:>8.2f} {r['img/s']:>7.2f} {r['MB/s']:>6.2f} "
                f"{r['req/img client']:>17.2f} {r['req/img server']:>9.2f}"
            )


if __name__ == "__main__":
    main()
