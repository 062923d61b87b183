"""Tator sink throughput: requests per image and images/s against the Tator double on loopback.

N trap pictures (the real JPEGs of tests/data/real-images, given distinct keys; or small
synthetic cards with ``--synthetic``) go through the Tator sink as a sync worker drives it:
per batch of 32 ``lookup_images``, ``upload_image`` of the absent ones on ``--parallelism``
threads, ``lookup_images`` again to verify, then per image ``lookup_annotations`` and
``upload_annotations`` of ``--outlines`` insect outlines (polygons). Throttling (Tator's 100
requests/s per user, which the double enforces) is obeyed as the worker does: wait what Tator
asks, then go on; the waits are counted and included in the wall time.

Read it: ``req/img`` is requests counted by the sink (client) and by the double (server), per
image, split into the image phase (lookup, upload, verify) and the annotation phase; ``img/s``
and ``MB/s`` are over the wall time of each phase. The double runs in this process (threaded
Werkzeug, one connection per request), so client and server share the CPU.

    python tests/bench/bench_sinks_tator.py              # 40 real pictures, single part
    python tests/bench/bench_sinks_tator.py --part-mb 0.5 # multi-part uploads
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/ (helpers)
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository

import agent.config  # noqa: F401  (first: the registry loads every sink module)

# isort: split
from helpers.sink_contract import card_jpeg
from helpers.tator_sink import TOKEN, contour, image_record, tator_sink

from agent.devserver.tator import TatorDouble
from agent.errors import SinkUnreachable
from agent.sinks.base import AnnotationBatch, ImageRecord
from agent.sinks.tator import TatorSink

REAL = sorted((Path(__file__).resolve().parents[1] / "data/real-images").glob("*.jpg"))
T = TypeVar("T")


class Obeying:
    """Calls that wait out Tator's throttling as the worker does, counting the waits."""

    def __init__(self) -> None:
        self.waits = 0
        self.waited = 0.0

    def __call__(self, call: Callable[[], T]) -> T:
        while True:
            try:
                return call()
            except SinkUnreachable as e:
                if "throttled" not in str(e):
                    raise
                self.waits += 1
                self.waited += e.retry_after or 1.0
                time.sleep(e.retry_after or 1.0)


def make_images(folder: Path, n: int, synthetic: bool) -> list[tuple[ImageRecord, bytes]]:
    start = dt.datetime(2026, 7, 1, tzinfo=dt.UTC)
    out = []
    for i in range(n):
        when = start + dt.timedelta(minutes=20 * i)
        if synthetic:
            out.append(image_record(folder, when=when, data=card_jpeg(i, (2592, 1944))))
        else:
            out.append(image_record(folder, when=when, source=REAL[i % len(REAL)]))
    return out


def run(args: argparse.Namespace, folder: Path) -> dict[str, Any]:
    images = make_images(folder, args.n, args.synthetic)
    mb = sum(len(d) for _, d in images) / 1e6
    with TatorDouble({TOKEN: "bench"}) as double:
        part_size = int(args.part_mb * 2**20)
        sink: TatorSink = tator_sink(double, part_size=part_size, pool_size=args.parallelism + 2)
        obey = Obeying()
        t0 = time.perf_counter()
        for i in range(0, len(images), 32):
            batch = images[i : i + 32]
            held = obey(lambda b=batch: sink.lookup_images([r for r, _ in b]))  # type: ignore[misc]
            absent = [(r, d) for r, d in batch if r.key not in held]
            with ThreadPoolExecutor(args.parallelism) as pool:
                list(pool.map(lambda rd: obey(lambda: sink.upload_image(*rd)), absent))
            verified = obey(lambda b=batch: sink.lookup_images([r for r, _ in b]))  # type: ignore[misc]
            assert len(verified) == len(batch), "not every image verified"
        t1 = time.perf_counter()
        client_images, server_images = sink.requests_sent, sum(double.state.requests.values())
        for record, _ in images:
            outlines = [contour(20 + (k % 40) * 60, 20 + (k // 40) * 60) for k in range(args.outlines)]
            batch_ann = AnnotationBatch(record.key, record.md5, "learned", "1000-abc", outlines)
            done = obey(lambda r=record: sink.lookup_annotations([r]))  # type: ignore[misc]
            if (record.key, "learned", "1000-abc") not in done:
                obey(lambda r=record, b=batch_ann: sink.upload_annotations(r, b))  # type: ignore[misc]
        t2 = time.perf_counter()
        assert len(double.state.media) == args.n and len(double.state.localizations) == args.n * args.outlines
        sink.close()
        return {
            "mb": mb,
            "images_s": t1 - t0,
            "ann_s": t2 - t1,
            "req_img_client": client_images / args.n,
            "req_img_server": server_images / args.n,
            "req_ann_client": (sink.requests_sent - client_images) / args.n,
            "req_ann_server": (sum(double.state.requests.values()) - server_images) / args.n,
            "waits": obey.waits,
            "waited": obey.waited,
            "puts": double.state.requests["PUT object"] / args.n,
        }


def main() -> None:
    raw = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=raw)
    parser.add_argument("--n", type=int, default=40, help="images (default 40)")
    parser.add_argument("--synthetic", action="store_true", help="2592x1944 synthetic cards, not real JPEGs")
    parser.add_argument("--part-mb", type=float, default=10.0, help="upload part size, MiB (Tator: 10)")
    parser.add_argument("--parallelism", type=int, default=2, help="upload threads (default 2, as [[sink]])")
    parser.add_argument("--outlines", type=int, default=20, help="insect outlines per image (default 20)")
    parser.add_argument("--dir", type=Path, default=None, help="parent of the temporary folder")
    parser.add_argument("--seed", type=int, default=0, help="unused: the images are fixed")
    args = parser.parse_args()
    print(
        f"machine: {platform.platform()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
        f"load {os.getloadavg()[0]:.2f}"
    )
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        r = run(args, Path(tmp))
    n = args.n
    print(f"images: {n} x {r['mb'] / n:.2f} MB, part size {args.part_mb:g} MiB -> {r['puts']:.1f} PUT/img")
    print(
        f"image phase:      {n / r['images_s']:6.2f} img/s  {r['mb'] / r['images_s']:6.2f} MB/s  "
        f"req/img c/s {r['req_img_client']:.2f}/{r['req_img_server']:.2f}"
    )
    print(
        f"annotation phase: {n / r['ann_s']:6.2f} img/s  ({args.outlines} outlines each)  "
        f"req/img c/s {r['req_ann_client']:.2f}/{r['req_ann_server']:.2f}"
    )
    print(f"throttled: {r['waits']} waits, {r['waited']:.1f} s waited (Tator: 100 requests/s per user)")
    print(
        f"summary: tator sink {n / r['images_s']:.2f} img/s, {r['req_img_client']:.2f} req/img (images), "
        f"{r['req_ann_client']:.2f} req/img (annotations)"
    )


if __name__ == "__main__":
    main()
