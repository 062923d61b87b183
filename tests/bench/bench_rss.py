"""Peak RSS of the agent over 1,000 synthetic captures, and whether it grows.

``stickyctl run`` captures at most every 10 s, so this drives the same objects the run
command builds, back to back, in a fresh subprocess (clean RSS): ``Agent(config)``,
``agent.start()`` (queue, reconciliation, camera, flash, scheduler), then
``agent.capture_job()`` ``--captures`` times on the main thread, then ``agent.stop()``.
The schedule is the cron ``0 0 29 2 *`` (next Feb 29): an interval, even 1 h, is aligned
on the clock and fires at the top of the hour during a run, from a second thread (the
last lines count scheduled captures that ran). ``--worker-every N`` runs every N-th
capture in a worker thread instead, as ``stickyctl run`` mixes scheduled captures
(APScheduler's threads) with manual ones (main thread). Capture names are
per second, so the capturer's clock is replaced by a fake one (``capturer.now``, +1 s
per call from 2026-06-01 UTC). The config is the demo's: synthetic camera
(``--insects`` landing per capture), gpiozero mock flash (``--flash none`` for none),
fake sensors, a location.

Default frame size: 2592x1944, not the HQ camera's 4056x3040, because 1,000 captures at
4056x3040 take ~6.5 min on a 2-core x86 (~0.39 s each, mostly rendering the synthetic
card); use ``--size 4056x3040`` for the real trap's size.

Read it: VmRSS is sampled every 50 captures; "peak" is the kernel's high-water mark
(``ru_maxrss`` and VmHWM). The slope is a least-squares fit of VmRSS over the second
half of the run, in KB per 100 captures; "grows" if it exceeds ``--grow-kb`` (default 50
KB per 100 captures, i.e. ~13 MB per year at 3 captures an hour), else "flat". A
one-off step (e.g. with ``--worker-every``) is a new glibc malloc arena for another
thread keeping a capture's working set; the slope is about steady growth.
Some growth is expected and bounded or test-only, and the last lines size it: SQLite's
page cache (up to 2 MB per connection) fills as the queue file grows (~1 KB per capture,
so until ~2,500 captures), gpiozero's mock pin keeps every state change (2 per capture;
real pins do not), and the synthetic card keeps every insect that landed. Run
``--flash none --insects 0 --captures 4000 --size 320x240`` to see the plateau.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

SAMPLE_EVERY = 50


def vm(field: str) -> int:
    """Return a ``/proc/self/status`` field (``VmRSS``, ``VmHWM``) in KB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def child(args: argparse.Namespace) -> None:
    """Run the agent in this (fresh) process and print the measurements as JSON."""
    import datetime as dt
    import itertools
    import resource
    import tempfile
    from concurrent.futures import ThreadPoolExecutor

    from agent.config import config_from_mapping
    from agent.service import Agent

    after_import = vm("VmRSS")
    width, height = (int(x) for x in args.size.lower().split("x"))
    flash = {"type": "gpio", "pin": 23, "pin_factory": "mock"} if args.flash == "gpio" else {"type": "none"}
    with tempfile.TemporaryDirectory(prefix="bench-rss-", dir=args.dir) as tmp:
        tables = {
            "device": {"id": "be0c0003"},
            "storage": {"data_dir": tmp},
            "capture": {"cron": "0 0 29 2 *", "jpeg_quality": 90},
            "camera": {"type": "synthetic", "width": width, "height": height, "seed": args.seed}
            | {"insects_per_capture": args.insects},
            "flash": flash,
            "sensors": {"type": "fake", "temperature": 21.5, "humidity": 55.0, "battery": 80},
            "location": {"lat": 49.26142, "lng": -123.25088, "alt": 97.3},
        }
        agent = Agent(config_from_mapping(tables, environ={}))
        agent.start()
        assert agent.pipeline is not None
        capturer = agent.pipeline.capturer
        start, tick = dt.datetime(2026, 6, 1, tzinfo=dt.UTC), itertools.count()
        capturer.now = lambda: start + dt.timedelta(seconds=next(tick))
        samples, outcomes = [(0, vm("VmRSS"), 0.0)], {}
        worker = ThreadPoolExecutor(1)
        t0 = time.perf_counter()
        for k in range(1, args.captures + 1):
            if args.worker_every and k % args.worker_every == 0:
                outcome = worker.submit(agent.capture_job).result().outcome
            else:
                outcome = agent.capture_job().outcome
            outcomes[outcome] = outcomes.get(outcome, 0) + 1
            if k % SAMPLE_EVERY == 0 or k == args.captures:
                samples.append((k, vm("VmRSS"), time.perf_counter() - t0))
                print(f"  {k:>5} captures  VmRSS {samples[-1][1] / 1024:7.1f} MB", file=sys.stderr)
        worker.shutdown()
        pin_states = len(getattr(getattr(getattr(capturer.flash, "device", None), "pin", None), "states", []))
        attempts = len(agent.pipeline.queue.attempts(limit=10 * args.captures))
        insects = getattr(capturer.camera, "insects_on_card", None)
        with agent.pipeline.queue.engine.connect() as conn:  # logical size, WAL content included
            pages = conn.exec_driver_sql("PRAGMA page_count").scalar() or 0
            db_kb = pages * (conn.exec_driver_sql("PRAGMA page_size").scalar() or 0) // 1024
        agent.stop()
    print(
        json.dumps(
            {
                "after_import": after_import,
                "samples": samples,
                "outcomes": outcomes,
                "attempts_logged": attempts,
                "maxrss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
                "hwm": vm("VmHWM"),
                "after_stop": vm("VmRSS"),
                "pin_states": pin_states,
                "insects": insects,
                "db_kb": db_kb,
            }
        )
    )


def mb(kb: float) -> str:
    return f"{kb / 1024:.1f} MB"


def slope(points: list[tuple[int, int]]) -> float:
    """Least-squares slope of (captures, KB), in KB per 100 captures."""
    n = len(points)
    mx, my = sum(p[0] for p in points) / n, sum(p[1] for p in points) / n
    sxx = sum((x - mx) ** 2 for x, _ in points)
    return 100 * sum((x - mx) * (y - my) for x, y in points) / sxx if sxx else 0.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--captures", type=int, default=1000, help="captures, back to back")
    ap.add_argument("--size", default="2592x1944", help="synthetic frame WxH (the HQ camera: 4056x3040)")
    ap.add_argument("--insects", type=float, default=0.5, help="insects landing per capture (mean)")
    ap.add_argument("--flash", choices=("gpio", "none"), default="gpio", help="gpio = gpiozero mock pin")
    ap.add_argument("--worker-every", type=int, default=0, help="every N-th capture in a worker thread")
    ap.add_argument("--seed", type=int, default=1, help="synthetic camera seed")
    ap.add_argument("--grow-kb", type=float, default=50.0, help="verdict threshold, KB per 100 captures")
    ap.add_argument("--dir", type=Path, default=None, help="parent of the temporary data folder")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args)
        return

    import PIL

    from agent import __version__

    print(
        f"machine: {platform.platform()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
        f"Pillow {PIL.__version__}, sticky-agent {__version__}; load average {os.getloadavg()[0]:.2f}"
    )
    print(
        f"{args.captures} captures at {args.size}, insects/capture {args.insects}, flash {args.flash}, "
        f"seed {args.seed}; in a subprocess, "
        + (f"every {args.worker_every}-th capture in a thread" if args.worker_every else "main thread"),
        flush=True,
    )
    cmd = [sys.executable, __file__, "--child", *sys.argv[1:]]
    p = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, check=True)
    r = json.loads(p.stdout)
    samples = r["samples"]
    at = {k: kb for k, kb, _ in samples}
    total_s = samples[-1][2]
    half = [(k, kb) for k, kb, _ in samples if k >= args.captures / 2]
    s = slope(half)
    verdict = "grows" if s > args.grow_kb else "flat"
    print(f"\n{'captures':>8} {'VmRSS':>10} {'elapsed s':>10}")
    for k, kb, t in samples:
        if k in (0, 50, 500, args.captures) or k % 100 == 0:
            print(f"{k:>8} {mb(kb):>10} {t:>10.1f}")
    print(f"\nRSS after imports (before Agent)  {mb(r['after_import'])}")
    marks = " / ".join(mb(at[k]) if k in at else "-" for k in (50, 500, args.captures))
    print(f"RSS at capture 50 / 500 / {args.captures}    {marks}")
    print(f"peak: ru_maxrss {mb(r['maxrss'])}, VmHWM {mb(r['hwm'])}; after stop {mb(r['after_stop'])}")
    print(f"slope over captures {half[0][0]}-{half[-1][0]}: {s:+.1f} KB per 100 captures -> {verdict}")
    extra = r["attempts_logged"] - args.captures
    print(
        f"outcomes {r['outcomes']}, scheduled captures that ran in between: {extra}, "
        f"{total_s / args.captures * 1000:.0f} ms per capture"
    )
    print(
        f"growing by design: queue file {mb(r['db_kb'])} (SQLite's page cache follows it up to 2 MB), "
        f"mock pin states {r['pin_states']}, insects on the synthetic card {r['insects']}"
    )
    print(
        f"\nsummary: peak RSS {mb(r['hwm'])} over {args.captures} captures at {args.size}; "
        f"{s:+.1f} KB/100 captures over the second half: {verdict}"
        + (" (compare with the growth by design above)" if verdict == "grows" else "")
    )


if __name__ == "__main__":
    main()
