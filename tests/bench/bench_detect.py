"""Time and memory of the built-in insect detector on the real trap images, per image size.

Each real image in ``tests/data/real-images/`` (2592x1944 ov5647 and 4056x3040 imx477)
is run in a fresh subprocess (clean RSS): import, read the file, then ``--repeat`` calls
of ``BuiltinDetector.detect`` (first call and median reported), a stage breakdown (JPEG
decode at reduced scale, card model, segmentation and outlines) and one more call under
``tracemalloc`` (its peak counts NumPy's and OpenCV's returned arrays, not OpenCV's
internal buffers). ``rss +`` is ``ru_maxrss`` at the end minus ``ru_maxrss`` before the
first call: the most the detector adds to the process.

Targets: under 1 s per 5 MP (2592x1944) image on this machine, and memory that fits a
Pi Zero 2 W (512 MB shared by the OS, the GPU and the agent: the detector should add well
under 100 MB). A Pi Zero 2 W's Cortex-A53 is very roughly 5-10x slower than one x86 core,
so ``--threads 1`` (OpenCV single-threaded) is the figure to scale from.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
REAL_IMAGES = REPO / "tests" / "data" / "real-images"
TARGET_S = 1.0


def child(path: Path, repeat: int, max_side: int, threads: int | None) -> None:
    """Measure one image in this (fresh) process and print the figures as JSON."""
    import resource
    import tracemalloc

    import cv2

    from agent.detect.builtin import BuiltinDetector, decode, outlines, prepare

    if threads is not None:
        cv2.setNumThreads(threads)
    data = path.read_bytes()
    det = BuiltinDetector(max_side=max_side)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    times, found = [], 0
    for _ in range(repeat):
        t0 = time.perf_counter()
        found = len(det.detect(data))
        times.append(time.perf_counter() - t0)
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    bgr, full = decode(data, max_side)
    t1 = time.perf_counter()
    prep = prepare(data, det.params, max_side)  # decodes again: subtract
    t2 = time.perf_counter()
    outlines(prep, det.params)
    t3 = time.perf_counter()
    tracemalloc.start()
    det.detect(data)
    _, traced_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    print(
        json.dumps(
            {
                "size": f"{full[0]}x{full[1]}",
                "work": f"{bgr.shape[1]}x{bgr.shape[0]}",
                "insects": found,
                "first": times[0],
                "median": statistics.median(times[1:] or times),
                "decode": t1 - t0,
                "card": (t2 - t1) - (t1 - t0),
                "segment": t3 - t2,
                "traced_peak": traced_peak,
                "rss_before_kb": before,
                "rss_delta_kb": after - before,
                "version": det.version,
                "threads": cv2.getNumThreads(),
                "opencv": cv2.__version__,
            }
        )
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeat", type=int, default=5, help="detect calls per image (first one is cold)")
    ap.add_argument("--max-side", type=int, default=1296, help="working long side, pixels")
    ap.add_argument("--threads", type=int, default=None, help="OpenCV threads [OpenCV's default]")
    ap.add_argument("--images", type=Path, default=REAL_IMAGES, help="folder of JPEGs")
    ap.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.child, args.repeat, args.max_side, args.threads)
        return
    print(
        f"machine: {platform.platform()}, {os.cpu_count()} CPUs, Python {platform.python_version()}; "
        f"load average {os.getloadavg()[0]:.2f}"
    )
    rows = []
    for path in sorted(args.images.glob("*.jpg")):
        cmd = [sys.executable, __file__, "--child", str(path), "--repeat", str(args.repeat)]
        cmd += ["--max-side", str(args.max_side)]
        if args.threads is not None:
            cmd += ["--threads", str(args.threads)]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True, cwd=REPO)
        rows.append((path.name, json.loads(out.stdout)))
    if not rows:
        sys.exit(f"no .jpg files in {args.images}")
    first = rows[0][1]
    print(f"detector {first['version']}, OpenCV {first['opencv']} ({first['threads']} threads)")
    print(
        f"{'image':<34} {'size':>9} {'work':>9} {'insects':>7} {'first':>6} {'median':>6} "
        f"{'decode':>6} {'card':>6} {'segm.':>6} {'traced':>8} {'rss +':>8}"
    )
    for name, r in rows:
        print(
            f"{name:<34} {r['size']:>9} {r['work']:>9} {r['insects']:>7} {r['first']:>6.3f} "
            f"{r['median']:>6.3f} {r['decode']:>6.3f} {r['card']:>6.3f} {r['segment']:>6.3f} "
            f"{r['traced_peak'] / 2**20:>6.1f}MB {r['rss_delta_kb'] / 1024:>6.1f}MB"
        )
    by_size: dict[str, list[float]] = {}
    for _, r in rows:
        by_size.setdefault(r["size"], []).append(r["median"])
    peak_rss = max(r["rss_delta_kb"] for _, r in rows) / 1024
    peak_traced = max(r["traced_peak"] for _, r in rows) / 2**20
    base = max(r["rss_before_kb"] for _, r in rows) / 1024
    print(
        f"target: < {TARGET_S:g} s per 5 MP image on this machine; memory: well under 100 MB added on "
        "a Pi Zero 2 W (512 MB shared)"
    )
    sizes = ", ".join(f"{k} median {statistics.median(v):.3f} s" for k, v in sorted(by_size.items()))
    five = [statistics.median(v) for k, v in by_size.items() if k == "2592x1944"]
    verdict = "meets" if five and max(five) < TARGET_S else "MISSES"
    print(
        f"summary: {sizes}; peak +{peak_rss:.1f} MB RSS over a {base:.0f} MB process, "
        f"tracemalloc peak {peak_traced:.1f} MB; {verdict} the 1 s target"
    )


if __name__ == "__main__":
    main()
