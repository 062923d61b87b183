"""Data Lake sink throughput: requests per image and images/s against the Data Lake double.

N images (a real 2592x1944 trap JPEG, ~0.35 MB, each with its own EXIF time so each has its own
md5) are synced to a fresh Data Lake double on 127.0.0.1, in this process (the double's CPU is
counted in the wall time), as the sync worker does it:

- lookup: ``lookup_images`` per batch of 32 (one getItemDetails per image, the collection's id and
  storage path once);
- upload: ``upload_image`` for each, ``--parallelism`` at a time (uploadMetadataInCollection,
  initializeMultipartUpload, getMultipartPreSignedUrls, presigned PUT, finalizeMultipartUpload,
  complete, job status);
- verify: ``lookup_images`` again (the worker confirms what the lake holds);
- annotations: ``lookup_annotations`` per batch (the collection's export, one page per 250 files)
  and ``upload_annotations`` per image (``--insects`` outlines, polygons).

Baseline: the official ``layernext`` 2.3.4 client's ``upload_files_to_collection`` on the same
files (one folder upload: one metadata call and one complete for all, 10 threads; its 30 s job
polls are recorded, not slept), when it is installed.

Read it: img/s counts images over the wall time of that phase; req/img is requests counted by the
sink (the double's count agrees); the endpoint line is the double's count per endpoint.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import platform
import shutil
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/, for helpers

# isort: off
import agent.config  # noqa: F401  (first: importing agent.sinks.base first is circular)

# isort: on

from helpers.datalake import COLLECTION, KEY, SECRET, RecordingTime
from helpers.sink_contract import REAL_IMAGES, make_record, outlines

from agent.devserver.datalake import DatalakeDouble
from agent.sinks.base import AnnotationBatch
from agent.sinks.credentials import Credentials
from agent.sinks.datalake import DataLakeSink

BATCH = 32


def machine() -> str:
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return f"{platform.platform()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, load {load}"


def sink_run(folder: Path, n: int, parallelism: int, insects: int) -> dict[str, float]:
    source = sorted(REAL_IMAGES.glob("*.jpg"))[0].read_bytes()
    records = [make_record(folder, i, data=source) for i in range(n)]
    total_mb = sum(len(d) for _, d in records) / 1e6
    figures: dict[str, float] = {}
    with DatalakeDouble({KEY: SECRET}) as double:
        sink = DataLakeSink(double.url, COLLECTION, Credentials(KEY, SECRET), pool_size=parallelism + 2)
        sink.probe()

        def phase(name: str, work: object) -> None:
            before, start = sink.requests_sent, time.perf_counter()
            work()  # type: ignore[operator]
            seconds = time.perf_counter() - start
            figures[f"{name} s"] = seconds
            figures[f"{name} req/img"] = (sink.requests_sent - before) / n
            print(f"  {name:<12} {n / seconds:8.1f} img/s  {(sink.requests_sent - before) / n:5.2f} req/img")

        def lookup() -> None:
            for i in range(0, n, BATCH):
                sink.lookup_images([r for r, _ in records[i : i + BATCH]])

        def upload() -> None:
            with ThreadPoolExecutor(parallelism) as pool:
                list(pool.map(lambda rd: sink.upload_image(*rd), records))

        def annotate() -> None:
            for i in range(0, n, BATCH):
                sink.lookup_annotations([r for r, _ in records[i : i + BATCH]])
            for record, _ in records:
                batch = AnnotationBatch(record.key, record.md5, "bench", "1-abc", outlines(record, insects))
                sink.upload_annotations(record, batch)

        phase("lookup", lookup)
        start = time.perf_counter()
        phase("upload", upload)
        upload_s = time.perf_counter() - start
        phase("verify", lookup)
        held = sink.lookup_images([r for r, _ in records])
        assert all(held[r.key].md5 == r.md5 for r, _ in records) and len(held) == n
        phase("annotations", annotate)
        sink.close()
        figures["img/s"] = n / upload_s
        figures["MB/s"] = total_mb / upload_s
        figures["total req/img"] = sink.requests_sent / n
        counts = dict(sorted(double.state.requests.items()))
        print("  double's count per endpoint:", ", ".join(f"{k} {v}" for k, v in counts.items()))
        assert sum(counts.values()) == sink.requests_sent  # the sink's count and the double's agree
    return figures


def sdk_run(folder: Path, n: int) -> float | None:
    try:
        import layernext
        import layernext.datalake
        import layernext.datalake.file_upload
    except ImportError:
        print("  layernext is not installed: no baseline")
        return None
    fake = RecordingTime()
    for module in (layernext.datalake, layernext.datalake.file_upload):
        module.time = fake  # type: ignore[attr-defined]
    cards = folder / "sdk"
    cards.mkdir()
    source = sorted(REAL_IMAGES.glob("*.jpg"))[0].read_bytes()
    for i in range(n):
        make_record(cards, i, data=source)
    with DatalakeDouble({KEY: SECRET}) as double:
        client = layernext.LayerNextClient(KEY, SECRET, double.url)
        before = sum(double.state.requests.values())
        start = time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO()):  # its progress lines
            answer = client.upload_files_to_collection(str(cards), "image", COLLECTION, {"device": "x"})
            client.wait_for_job_complete(answer["job_id"])
        seconds = time.perf_counter() - start
        requests = sum(double.state.requests.values()) - before
        assert len(double.state.collections[COLLECTION].files) == n
    print(f"  sdk upload   {n / seconds:8.1f} img/s  {requests / n:5.2f} req/img (one folder upload)")
    return n / seconds


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--images", type=int, default=100)
    parser.add_argument("--parallelism", type=int, default=2)
    parser.add_argument("--insects", type=int, default=5)
    parser.add_argument("--dir", type=Path, default=None, help="parent of the temporary folder")
    parser.add_argument("--seed", type=int, default=0, help="unused: the run is deterministic")
    args = parser.parse_args()
    print(machine())
    folder = Path(tempfile.mkdtemp(prefix="bench-datalake-", dir=args.dir))
    try:
        print(f"Data Lake sink, {args.images} images, parallelism {args.parallelism}:")
        figures = sink_run(folder, args.images, args.parallelism, args.insects)
        sdk = sdk_run(folder, args.images)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    baseline = f", sdk {sdk:.1f} img/s" if sdk else ""
    print(
        f"summary: datalake upload {figures['img/s']:.1f} img/s ({figures['MB/s']:.1f} MB/s), "
        f"{figures['upload req/img']:.2f} req/img to upload, {figures['total req/img']:.2f} req/img "
        f"with lookups, verify and annotations{baseline}"
    )


if __name__ == "__main__":
    main()
