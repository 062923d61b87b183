"""Time and memory of the insect detectors on the real trap images, per image size.

Each real image in ``tests/data/real-images/`` (2592x1944 ov5647 and 4056x3040 imx477)
is run in a fresh subprocess (clean RSS): imports, then the detector is made (the model
loaded), the file read, and ``--repeat`` calls of ``detect`` (first call and median).
Times are wall clock and CPU time of the process (``cpu``: what one core spends, the figure
to trust on a busy machine); OpenCV runs with ``--threads`` threads (1 by default: the
trap's detector runs in the background beside the capture). ``rss +`` is ``ru_maxrss`` at
the end minus ``ru_maxrss`` before the detector was made: the most detection adds to the
agent (model, buffers, network activations).

    python tests/bench/bench_detect.py                      # the learned detector, OpenCV DNN
    python tests/bench/bench_detect.py --runtime onnxruntime
    python tests/bench/bench_detect.py --type builtin
    python tests/bench/bench_detect.py --max-side 2028     # 12 MP cards whose insects look smaller
    python tests/bench/bench_detect.py --views 1           # one view of each picture (a Pi Zero 2 W)

Targets: under 1 s per 5 MP (2592x1944) image on one core of this machine, and under 150 MB
added. A Pi 4's Cortex-A72 is about 3-4x slower than one x86 core.
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
TARGET_MB = 150.0


def child(path: Path, kind: str, runtime: str, repeat: int, threads: int, options: dict[str, int]) -> None:
    """Measure one image in this (fresh) process and print the figures as JSON. ``options``: the
    detector's settings given (``max_side``, ``views``)."""
    import resource

    import cv2

    from agent.config import BuiltinDetectorConfig, LearnedDetectorConfig
    from agent.detect import make_detector

    cv2.setNumThreads(threads)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    config = (
        LearnedDetectorConfig(type="learned", runtime=runtime, **options)  # type: ignore[arg-type]
        if kind == "learned"
        else BuiltinDetectorConfig(type="builtin", **options)
    )
    det = make_detector(config)
    data = path.read_bytes()
    walls, cpus, found = [], [], 0
    for _ in range(repeat):
        t0, c0 = time.perf_counter(), time.process_time()
        found = len(det.detect(data))
        walls.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    from PIL import Image

    with Image.open(path) as im:
        size = im.size
    print(
        json.dumps(
            {
                "size": f"{size[0]}x{size[1]}",
                "insects": found,
                "first": walls[0],
                "median": statistics.median(walls[1:] or walls),
                "cpu": statistics.median(cpus[1:] or cpus),
                "rss_before_kb": before,
                "rss_delta_kb": after - before,
                "name": det.name,
                "version": det.version,
                "opencv": cv2.__version__,
            }
        )
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--type", dest="kind", choices=["learned", "builtin"], default="learned")
    ap.add_argument("--runtime", choices=["opencv", "onnxruntime", "auto"], default="opencv")
    ap.add_argument("--repeat", type=int, default=5, help="detect calls per image (first one is cold)")
    ap.add_argument("--threads", type=int, default=1, help="OpenCV threads [%(default)s]")
    ap.add_argument("--images", type=Path, default=REAL_IMAGES, help="folder of JPEGs")
    ap.add_argument(
        "--max-side", type=int, default=0, help="long side images are reduced to [the detector's]"
    )
    ap.add_argument("--views", type=int, default=0, help="views the learned detector averages [the model's]")
    ap.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        options = {k: v for k, v in (("max_side", args.max_side), ("views", args.views)) if v}
        child(args.child, args.kind, args.runtime, args.repeat, args.threads, options)
        return
    print(
        f"machine: {platform.platform()}, {os.cpu_count()} CPUs, Python {platform.python_version()}; "
        f"load average {os.getloadavg()[0]:.2f}"
    )
    rows = []
    for path in sorted(args.images.glob("*.jpg")):
        cmd = [sys.executable, __file__, "--child", str(path), "--repeat", str(args.repeat)]
        cmd += ["--type", args.kind, "--runtime", args.runtime, "--threads", str(args.threads)]
        cmd += ["--max-side", str(args.max_side), "--views", str(args.views)]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True, cwd=REPO)
        rows.append((path.name, json.loads(out.stdout.strip().splitlines()[-1])))
    if not rows:
        sys.exit(f"no .jpg files in {args.images}")
    first = rows[0][1]
    runtime = f", runtime {args.runtime}" if args.kind == "learned" else ""
    side = f", max side {args.max_side}" if args.max_side else ""
    side += f", {args.views} views" if args.views else ""
    threads = f"{args.threads} threads{runtime}{side}"
    print(f"detector {first['name']} {first['version']}, OpenCV {first['opencv']} ({threads})")
    print(f"{'image':<34} {'size':>9} {'insects':>7} {'first':>6} {'median':>6} {'cpu':>6} {'rss +':>8}")
    for name, r in rows:
        print(
            f"{name:<34} {r['size']:>9} {r['insects']:>7} {r['first']:>6.3f} "
            f"{r['median']:>6.3f} {r['cpu']:>6.3f} {r['rss_delta_kb'] / 1024:>6.1f}MB"
        )
    by_size: dict[str, list[tuple[float, float, float]]] = {}
    for _, r in rows:
        by_size.setdefault(r["size"], []).append((r["median"], r["cpu"], r["rss_delta_kb"] / 1024))
    for size, v in sorted(by_size.items()):
        wall = statistics.median(x[0] for x in v)
        cpu = statistics.median(x[1] for x in v)
        rss = max(x[2] for x in v)
        ok = "meets" if cpu < TARGET_S and rss < TARGET_MB else "MISSES"
        print(
            f"summary {size}: median {wall:.3f} s wall, {cpu:.3f} s CPU; peak +{rss:.1f} MB RSS; "
            f"{ok} the targets (< {TARGET_S:g} s CPU per image, < {TARGET_MB:g} MB added)"
        )


if __name__ == "__main__":
    main()
