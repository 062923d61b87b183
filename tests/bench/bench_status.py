"""``stickyctl status`` wall time, whole process (cold Python start included), by queue size.

For each queue size (default 0, 1,000 and 100,000 images) a queue database is built in
a temporary folder: the schema by ``Queue(path)``, then one bulk SQLAlchemy Core insert
in one transaction. One device, images 20 min apart ending at the current hour, states
mostly ``captured`` with some ``uploaded``/``verified``/``failed``, sizes ~1 MB, and up to
10,000 ``capture_attempts`` (one per latest image, ~3 % failed or clock). A config TOML
shaped like ``config/demo.toml`` points ``storage.data_dir``/``queue`` at that folder.

Each of ``stickyctl --config CFG status`` and ``status --json`` then runs ``--runs`` times
as a subprocess (after one untimed run, so the files are in the page cache) and the
min/median/max wall time is printed. For scale, the same table gives the bare
interpreter start (``python -c pass``), the import of ``agent.cli`` alone and of what
``status`` imports (``agent.cli`` + ``agent.status``), and ``collect_status()`` timed
in-process (queries only). The ``-X importtime`` top 10 (cumulative) shows which
imports dominate. Read it: status wall ~= interpreter + imports + queries; if the
0-row and 100,000-row lines are close, the queue size does not matter.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import PIL
from sqlalchemy import insert

from agent import __version__
from agent.config import load_config
from agent.queue import Queue
from agent.queue.schema import CaptureAttempt, Image

DEVICE = "be0c0002"
STATES = (("captured", 0.85), ("uploaded", 0.07), ("verified", 0.05), ("failed", 0.03))
ENV = {k: v for k, v in os.environ.items() if not k.startswith("STICKY_AGENT_")}
STICKYCTL = Path(sys.executable).with_name("stickyctl")
CONFIG = """[device]
id = "{device}"

[storage]
data_dir = "{data}"
queue = "{data}/queue.sqlite"

[capture]
interval = "20m"
jpeg_quality = 90

[camera]
type = "synthetic"
width = 4056
height = 3040
seed = 1

[flash]
type = "gpio"
pin = 23
pin_factory = "mock"

[sensors]
type = "fake"

[location]
lat = 49.26142
lng = -123.25088
alt = 97.3

[log]
level = "info"
"""


def machine() -> str:
    return (
        f"machine: {platform.platform()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
        f"Pillow {PIL.__version__}, sticky-agent {__version__}"
    )


def build_queue(folder: Path, n: int, n_attempts: int, seed: int) -> Path:
    """Create ``folder`` with a queue of ``n`` images and a config pointing at it; return the config."""
    rng = random.Random(seed)
    data = folder / "data"
    queue = Queue(data / "queue.sqlite")
    end = dt.datetime.now(dt.UTC).replace(minute=0, second=0, microsecond=0)
    states, weights = zip(*STATES, strict=True)
    meta = json.dumps({"model": "RP_imx477", "exposure_us": 16000.0, "record": {"v": __version__}})
    images, attempts = [], []
    for i in range(n):
        when = end - dt.timedelta(minutes=20 * (n - 1 - i))
        name = f"{DEVICE}.{when:%Y-%m-%d_%H-%M-%S}.jpg"
        state = rng.choices(states, weights)[0]
        images.append(
            {
                "id": i + 1, "device": DEVICE, "datetime": when, "path": f"{DEVICE}/{when:%Y-%m-%d}/{name}",
                "md5": f"{rng.getrandbits(128):032x}", "size": int(rng.gauss(1_000_000, 80_000)),
                "width": 4056, "height": 3040, "metadata": meta, "manual": 0, "state": state,
                "attempts": 1 if state == "failed" else 0, "last_error": "HTTP 500" if state == "failed" else None,
                "created_at": when, "updated_at": when,
            }
        )  # fmt: skip
    for row in images[max(0, n - n_attempts) :]:
        outcome = rng.choices(("ok", "failed", "clock"), (0.97, 0.02, 0.01))[0]
        attempts.append(
            {
                "started_at": row["datetime"], "finished_at": row["datetime"] + dt.timedelta(seconds=3),
                "outcome": outcome, "manual": 0, "image_id": row["id"] if outcome == "ok" else None,
                "error": None if outcome == "ok" else "camera timed out",
            }
        )  # fmt: skip
    with queue.engine.begin() as conn:
        if images:
            conn.execute(insert(Image.__table__), images)
        if attempts:
            conn.execute(insert(CaptureAttempt.__table__), attempts)
    queue.publish(heartbeat=end.isoformat(), next_capture=(end + dt.timedelta(minutes=20)).isoformat())
    queue.close()
    config = folder / "agent.toml"
    config.write_text(CONFIG.format(device=DEVICE, data=data))
    return config


def wall(cmd: list[str], runs: int) -> list[float]:
    """Run ``cmd`` once untimed, then ``runs`` times; return wall ms of each timed run."""
    out = []
    for i in range(runs + 1):
        t = time.perf_counter()
        p = subprocess.run(cmd, capture_output=True, text=True, env=ENV)
        ms = 1000 * (time.perf_counter() - t)
        if p.returncode != 0:
            sys.exit(f"{' '.join(cmd)} failed ({p.returncode}):\n{p.stderr}")
        if i:
            out.append(ms)
    return out


def row(label: str, ms: list[float]) -> str:
    return f"{label:<44} {min(ms):>8.0f} {statistics.median(ms):>8.0f} {max(ms):>8.0f}"


def importtime_top(code: str, top: int) -> list[str]:
    """Return the ``top`` imports by cumulative time (best of 3 runs by total), in us."""
    best: list[tuple[int, int, str]] = []
    for _ in range(3):
        err = subprocess.run(
            [sys.executable, "-X", "importtime", "-c", code], capture_output=True, text=True, env=ENV
        ).stderr
        rows = []
        for line in err.splitlines():
            if line.startswith("import time:") and "|" in line and "cumulative" not in line:
                self_us, cum_us, name = line.removeprefix("import time:").split("|")
                rows.append((int(cum_us), int(self_us), name.rstrip()))
        if not best or sum(r[1] for r in rows) < sum(r[1] for r in best):
            best = rows
    total = sum(r[1] for r in best)
    lines = [f"  total of all imports (sum of self): {total / 1000:.0f} ms, {len(best)} modules"]
    for cum, self_us, name in sorted(best, reverse=True)[:top]:
        lines.append(f"  {cum / 1000:>7.1f} ms cumulative {self_us / 1000:>6.1f} ms self  {name}")
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="0,1000,100000", help="queue sizes (images), comma-separated")
    ap.add_argument("--attempts", type=int, default=10_000, help="capture_attempts rows (at most #images)")
    ap.add_argument("--runs", type=int, default=10, help="timed runs per command")
    ap.add_argument("--seed", type=int, default=1, help="seed of the states, sizes and md5s")
    ap.add_argument("--dir", type=Path, default=None, help="parent of the temporary folder")
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    ctl = [str(STICKYCTL)] if STICKYCTL.exists() else [sys.executable, "-m", "agent.cli"]
    print(machine())
    print(f"command: {' '.join(ctl)} --config CFG status [--json]; {args.runs} runs + 1 untimed each\n")

    from agent.status import collect_status

    lines, inproc, summary = [], [], {}
    with tempfile.TemporaryDirectory(prefix="bench-status-", dir=args.dir) as tmp:
        for n in sizes:
            t = time.perf_counter()
            cfg = build_queue(Path(tmp) / f"q{n}", n, min(n, args.attempts), args.seed)
            build_s = time.perf_counter() - t
            for extra in ([], ["--json"]):
                ms = wall([*ctl, "--config", str(cfg), "status", *extra], args.runs)
                lines.append(row(f"status {' '.join(extra):<6} {n:>9,} images", ms))
                summary[n, bool(extra)] = statistics.median(ms)
            config = load_config(cfg, environ={})
            q_ms = []
            for _ in range(args.runs):
                t = time.perf_counter()
                collect_status(config)
                q_ms.append(1000 * (time.perf_counter() - t))
            inproc.append(row(f"collect_status() in-process {n:>9,} images", q_ms))
            print(f"built {n:,} images + {min(n, args.attempts):,} attempts in {build_s:.1f} s", file=sys.stderr)
    py = sys.executable
    base = [
        row("python -c pass", wall([py, "-c", "pass"], args.runs)),
        row("python -c 'import agent.cli'", wall([py, "-c", "import agent.cli"], args.runs)),
        row("python -c 'import agent.cli, agent.status'", wall([py, "-c", "import agent.cli, agent.status"], args.runs)),
    ]  # fmt: skip
    print(f"{'wall time, ms':<44} {'min':>8} {'median':>8} {'max':>8}")
    print("\n".join([*base, *lines, *inproc]))
    print("\n-X importtime, 'import agent.cli, agent.status' (what status imports), top 10 cumulative:")
    print("\n".join(importtime_top("import agent.cli, agent.status", 10)))
    lo, hi = min(sizes), max(sizes)
    print(
        f"\nsummary: stickyctl status takes {summary[hi, False]:.0f} ms median at {hi:,} images "
        f"vs {summary[lo, False]:.0f} ms at {lo:,} (--json: {summary[hi, True]:.0f} vs {summary[lo, True]:.0f} ms)"
    )


if __name__ == "__main__":
    main()
