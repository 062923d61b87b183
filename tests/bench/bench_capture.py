"""Per-capture processing cost: the agent's pipeline against a naive one, same frames, same disk.

What is timed (per capture, camera excluded): the frame's JPEG bytes are made once
beforehand (synthetic camera at 4056x3040 and 4608x2592, quality 90, plus the real
4056x3040 trap images if present; those are only read). Then, for each input, ``--reps``
captures of each pipeline are interleaved (agent, naive, agent, naive...) after one
untimed warm-up each, into the same temporary folder:

- agent: ``Record.from_readings`` + ``build_exif`` + ``insert_exif``, the real
  ``write_image_bytes`` (draft-mode thumbnails, atomic writes with fsync, md5 of the
  bytes in memory), then ``Queue.add_image`` into a real SQLite file (WAL, synchronous=FULL).
  Stages are timed by wrapping ``make_thumbnails``, ``atomic_write`` and ``hashlib.md5``
  inside ``agent.capture.imagewriter`` for this process only; "other" is the rest (size probe).
- naive: the same EXIF step, a full decode (``Image.open().load()``), two LANCZOS resizes
  of the full image (512x384, 128x96) saved as JPEG, three plain ``write_bytes`` (no
  fsync), md5 of the original re-read from disk, the same ``Queue.add_image``.

Read it: ``median``/``p90`` are wall ms per capture, ``cpu`` is process CPU ms (all
threads); ``naive/agent`` > 1 means the agent is that many times faster. The write
stage is dominated by fsync, whose cost depends on the disk (tmpfs: ~0; SD card: ms to
tens of ms): the header says which filesystem the folder is on.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import io
import os
import platform
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import PIL
from PIL import Image

import agent.capture.imagewriter as iw
from agent import __version__
from agent.capture.exif import ExposureInfo, Record, build_exif, insert_exif
from agent.capture.naming import image_path, thumbnail_path
from agent.config import SyntheticCameraConfig
from agent.hardware.camera.synthetic import SyntheticCamera
from agent.queue import Queue

REPO = Path(__file__).resolve().parents[2]
REAL_DIR = REPO / "tests" / "data" / "real-images"
DEVICE = "be0c0001"
START = dt.datetime(2026, 6, 1, tzinfo=dt.UTC)
READINGS = {"temperature": 21.5, "humidity": 55.0, "battery": 80, "exposure_us": 16000.0}
LOCATION = (49.26142, -123.25088, 97.3)
STAGES = ("exif", "thumbs", "write", "md5", "row", "other")
stage: dict[str, float] = defaultdict(float)  # seconds spent in each stage, current capture


def machine() -> str:
    return (
        f"machine: {platform.platform()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
        f"Pillow {PIL.__version__}, sticky-agent {__version__}; load average {os.getloadavg()[0]:.2f}"
    )


def fs_type(path: Path) -> str:
    """Return the filesystem type of the mount holding ``path`` (longest mount-point prefix)."""
    best, kind = "", "?"
    real = str(path.resolve())
    for line in Path("/proc/mounts").read_text().splitlines():
        _, mnt, fstype, *_ = line.split()
        if (real == mnt or real.startswith(mnt.rstrip("/") + "/")) and len(mnt) > len(best):
            best, kind = mnt, fstype
    return f"{kind} (mounted on {best}){', tmpfs: fsync is ~free' if kind == 'tmpfs' else ''}"


def timed(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        t = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            stage[name] += time.perf_counter() - t

    return wrapper


class _Md5:
    md5 = staticmethod(timed("md5", hashlib.md5))


# Stage timing inside the real write_image_bytes (this process only; agent/ is not edited).
iw.make_thumbnails = timed("thumbs", iw.make_thumbnails)
iw.atomic_write = timed("write", iw.atomic_write)
iw.hashlib = _Md5  # type: ignore[assignment]


def make_exif(jpeg: bytes, when: dt.datetime) -> tuple[bytes, Record]:
    lat, lng, alt = LOCATION
    record = Record.from_readings(__version__, **READINGS, lat=lat, lng=lng, alt=alt)
    exif = build_exif(
        when=when,
        model="RP_synthetic",
        record=record,
        exposure=ExposureInfo(16000.0, 1.2),
        location=LOCATION,
        software=f"sticky-agent {__version__}",
    )
    return insert_exif(jpeg, exif), record


def add_row(queue: Queue, root: Path, path: Path, when: dt.datetime, record: Record, **facts: Any) -> None:
    """Insert the row as the capturer does (``facts``: md5, size, width, height)."""
    meta = {"record": record.as_dict(), "model": "RP_synthetic", "exposure_us": 16000.0}
    rel = str(path.relative_to(root))
    queue.add_image(device=DEVICE, when=when, path=rel, metadata=meta, manual=False, **facts)


def agent_capture(jpeg: bytes, when: dt.datetime, data_dir: Path, queue: Queue) -> None:
    t = time.perf_counter()
    data, record = make_exif(jpeg, when)
    stage["exif"] += time.perf_counter() - t
    path = image_path(data_dir, DEVICE, when)
    written = iw.write_image_bytes(path, data)
    t = time.perf_counter()
    facts = {"md5": written.md5, "size": written.size, "width": written.width, "height": written.height}
    add_row(queue, data_dir, path, when, record, **facts)
    stage["row"] += time.perf_counter() - t


def naive_capture(jpeg: bytes, when: dt.datetime, data_dir: Path, queue: Queue) -> None:
    t0 = time.perf_counter()
    data, record = make_exif(jpeg, when)
    t1 = time.perf_counter()
    im = Image.open(io.BytesIO(data))
    im.load()
    thumbs = {}
    for kind, box in iw.THUMBNAIL_SIZES.items():
        buf = io.BytesIO()
        im.resize(box, Image.Resampling.LANCZOS).save(buf, "JPEG", quality=iw.THUMBNAIL_QUALITY)
        thumbs[kind] = buf.getvalue()
    t2 = time.perf_counter()
    path = image_path(data_dir, DEVICE, when)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    for kind, payload in thumbs.items():
        thumbnail_path(path, kind).parent.mkdir(exist_ok=True)
        thumbnail_path(path, kind).write_bytes(payload)
    t3 = time.perf_counter()
    md5 = hashlib.md5(path.read_bytes()).hexdigest()
    t4 = time.perf_counter()
    add_row(queue, data_dir, path, when, record, md5=md5, size=len(data), width=im.width, height=im.height)
    t5 = time.perf_counter()
    ends = (t0, t1, t2, t3, t4, t5)
    for name, a, b in zip(("exif", "thumbs", "write", "md5", "row"), ends, ends[1:], strict=False):
        stage[name] += b - a


def run_one(fn: Callable[..., None], jpeg: bytes, when: dt.datetime, data_dir: Path, queue: Queue) -> dict:
    stage.clear()
    c, t = time.process_time(), time.perf_counter()
    fn(jpeg, when, data_dir, queue)
    wall, cpu = time.perf_counter() - t, time.process_time() - c
    stages = dict(stage)
    stages["other"] = wall - sum(stages.values())
    return {"wall": wall, "cpu": cpu, **stages}


def p90(xs: list[float]) -> float:
    return statistics.quantiles(xs, n=10, method="inclusive")[-1] if len(xs) > 1 else xs[0]


def make_inputs(args: argparse.Namespace) -> list[tuple[str, bytes]]:
    inputs = []
    for spec in args.sizes.split(","):
        w, h = (int(x) for x in spec.lower().split("x"))
        cam = SyntheticCamera(SyntheticCameraConfig(type="synthetic", width=w, height=h, seed=args.seed))
        cam.open()
        inputs.append((f"synthetic {w}x{h}", cam.capture(args.quality).jpeg))
    if not args.no_real and args.real_dir.is_dir():
        for p in sorted(args.real_dir.glob("*.jpg")):
            with Image.open(p) as im:
                if im.size == (4056, 3040):
                    inputs.append((f"real {p.stem}", p.read_bytes()))
    return inputs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--reps", type=int, default=10, help="timed captures per pipeline and input")
    ap.add_argument("--sizes", default="4056x3040,4608x2592", help="synthetic frame sizes, WxH,...")
    ap.add_argument("--quality", type=int, default=90, help="synthetic JPEG quality")
    ap.add_argument("--seed", type=int, default=1, help="synthetic camera seed")
    ap.add_argument("--real-dir", type=Path, default=REAL_DIR, help="real images (read only)")
    ap.add_argument("--no-real", action="store_true", help="skip the real images")
    ap.add_argument("--dir", type=Path, default=None, help="parent of the temporary folder")
    args = ap.parse_args()

    print(machine(), flush=True)
    print("making input frames...", file=sys.stderr, flush=True)
    inputs = make_inputs(args)
    with tempfile.TemporaryDirectory(prefix="bench-capture-", dir=args.dir) as tmp:
        root = Path(tmp)
        print(f"folder: {root} on {fs_type(root)}; {args.reps} reps + 1 warm-up, interleaved")
        pipes = {"agent": agent_capture, "naive": naive_capture}
        dirs = {name: root / name for name in pipes}
        queues = {name: Queue(d / "queue.sqlite") for name, d in dirs.items()}
        results: dict[tuple[str, str], list[dict]] = defaultdict(list)
        tick = 0
        for label, jpeg in inputs:
            for rep in range(args.reps + 1):
                for name, fn in pipes.items():
                    tick += 1
                    r = run_one(fn, jpeg, START + dt.timedelta(seconds=tick), dirs[name], queues[name])
                    if rep:  # rep 0 is the warm-up
                        results[label, name].append(r)
        for q in queues.values():
            q.close()

    def ms(rows: list[dict], key: str) -> float:
        return 1000 * statistics.median(r[key] for r in rows)

    print(f"\n{'input':<34} {'MB':>5} {'pipeline':<8} {'median':>8} {'p90':>8} {'cpu':>8}  naive/agent")
    summary = []
    for label, jpeg in inputs:
        agent_rows, naive_rows = results[label, "agent"], results[label, "naive"]
        ratio = ms(naive_rows, "wall") / ms(agent_rows, "wall")
        summary.append(ratio)
        for name, rows in (("agent", agent_rows), ("naive", naive_rows)):
            walls = [1000 * r["wall"] for r in rows]
            head = f"{label:<34} {len(jpeg) / 1e6:>5.2f}" if name == "agent" else " " * 40
            tail = f"  x{ratio:.2f}" if name == "naive" else ""
            cpu = ms(rows, "cpu")
            print(f"{head} {name:<8} {statistics.median(walls):>8.1f} {p90(walls):>8.1f} {cpu:>8.1f}{tail}")
    print(f"\nstage medians, ms ({', '.join(STAGES)}; naive 'thumbs' = full decode + 2 resizes)")
    print(f"{'input':<34} {'pipeline':<8} " + " ".join(f"{s:>7}" for s in STAGES))
    for label, _ in inputs:
        for name in pipes:
            rows = results[label, name]
            print(f"{label:<34} {name:<8} " + " ".join(f"{ms(rows, s):>7.1f}" for s in STAGES))
    print(
        f"\nsummary: naive/agent median wall time x{min(summary):.2f}-x{max(summary):.2f} over {len(inputs)} "
        f"inputs, {args.reps} reps each (>1: the agent is faster, though it alone fsyncs)"
    )


if __name__ == "__main__":
    main()
