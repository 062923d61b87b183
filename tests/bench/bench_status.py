"""``stickyctl status`` wall time, whole process (cold Python start included), by queue size.

For each queue size (default 0, 1,000 and 100,000 images) a queue database is built in
a temporary folder: the schema by ``Queue(path)``, then one bulk SQLAlchemy Core insert
in one transaction. One device, images 20 min apart ending at the current hour, states
mostly ``captured`` with some ``evicted``, sizes ~1 MB, the agent's metadata JSON, two sinks
(``stickypi``: a delivery row per image, mostly ``waiting`` with some ``uploaded``/``verified``/
``failed``; ``lab``: rows for half the images, the others not seen yet), and up to 10,000
``capture_attempts`` (one per latest image, ~3 % failed or clock). A config TOML shaped like
``config/demo.toml`` (two ``[[sink]]`` tables, so status reports every sink; no sink is
contacted) points
``storage.data_dir``/``queue`` at that folder.

Every command below runs once untimed, then ``--runs`` rounds round-robin (so a burst of
load elsewhere on the machine hits all of them alike); min/median/max wall ms are printed:
``stickyctl --config CFG status`` and ``status --json`` at each size, ``status`` at the
largest size with the queue file evicted from the page cache first (a cold read), and for
scale the bare interpreter (``python -c pass``) and the imports (``agent.cli`` alone, and
``agent.cli`` + ``agent.status``, which is what ``status`` imports). ``collect_status()``
timed in-process gives the queries alone, and ``-X importtime`` the heaviest imports.

Read it: status wall ~= interpreter + imports + queries. If the 0-row and 100,000-row
lines are close, queue size does not matter; the in-process lines say what it costs.
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
from agent.capture.exif import Record
from agent.config import load_config
from agent.queue import Queue
from agent.queue.schema import CaptureAttempt, Delivery, Image

DEVICE = "be0c0002"
STATES = {"captured": 0.9, "evicted": 0.1}
DELIVERIES = {"waiting": 0.8, "uploaded": 0.05, "verified": 0.12, "failed": 0.03}
OUTCOMES = {"ok": 0.97, "failed": 0.02, "clock": 0.01}
ENV = {k: v for k, v in os.environ.items() if not k.startswith("STICKY_AGENT_")}
STICKYCTL = Path(sys.executable).with_name("stickyctl")
CONFIG = """# the shape of config/demo.toml; the [sync] API is never contacted by status
device = { id = "DEVICE" }
storage = { data_dir = "DATA", queue = "DATA/queue.sqlite" }
capture = { interval = "20m", jpeg_quality = 90 }
camera = { type = "synthetic", width = 4056, height = 3040 }
flash = { type = "gpio", pin = 23, pin_factory = "mock" }
sensors = { type = "fake" }
location = { lat = 49.26142, lng = -123.25088, alt = 97.3 }
retention = { keep_days = 30, min_free_disk_mb = 200 }
log = { level = "info" }

[[sink]]
name = "stickypi"
type = "stickypi"
url = "http://127.0.0.1:8765"
credentials = "DATA/api-credentials"

[[sink]]
name = "lab"
type = "memory"
required = false
"""


def machine() -> str:
    return (
        f"machine: {platform.platform()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
        f"Pillow {PIL.__version__}, sticky-agent {__version__}; load average {os.getloadavg()[0]:.2f}"
    )


def build_queue(folder: Path, n: int, n_attempts: int, seed: int) -> Path:
    """Create ``folder`` with a queue of ``n`` images and a config pointing at it; return the config."""
    rng = random.Random(seed)
    data = folder / "data"
    queue = Queue(data / "queue.sqlite")
    end = dt.datetime.now(dt.UTC).replace(minute=0, second=0, microsecond=0)
    record = Record.from_readings(__version__, temperature=21.5, humidity=55.0, battery=80, exposure_us=16e3)
    meta = {"record": record.as_dict(), "model": "RP_imx477", "exposure_us": 16e3, "analogue_gain": 1.2}
    meta_json = json.dumps(meta, sort_keys=True)
    images, attempts, deliveries = [], [], []
    for i in range(n):
        when = end - dt.timedelta(minutes=20 * (n - 1 - i))
        state = rng.choices(list(STATES), list(STATES.values()))[0]
        for sink in ("stickypi", "lab"):
            if sink == "lab" and rng.random() < 0.5:
                continue  # not seen by this sink yet: waiting for it
            to = rng.choices(list(DELIVERIES), list(DELIVERIES.values()))[0]
            to = "verified" if state == "evicted" else to
            failed = to == "failed"
            deliveries.append(
                {
                    **{"image_id": i + 1, "sink": sink, "state": to, "attempts": int(failed)},
                    **{"last_error": "HTTP 500 from the server" if failed else None, "created_at": when},
                    **{"updated_at": when, "verified_at": when if to == "verified" else None},
                }
            )
        images.append(
            {
                **{"id": i + 1, "device": DEVICE, "datetime": when, "created_at": when, "updated_at": when},
                "path": f"{DEVICE}/{when:%Y-%m-%d}/{DEVICE}.{when:%Y-%m-%d_%H-%M-%S}.jpg",
                "md5": f"{rng.getrandbits(128):032x}",
                "size": int(rng.gauss(1_000_000, 80_000)),
                **{"width": 4056, "height": 3040, "metadata": meta_json, "manual": 0, "state": state},
                **{"attempts": 0, "last_error": None},
            }
        )
    for img in images[max(0, n - n_attempts) :]:
        ok = rng.choices(list(OUTCOMES), list(OUTCOMES.values()))[0]
        attempts.append(
            {
                **{"started_at": img["datetime"], "finished_at": img["datetime"] + dt.timedelta(seconds=3)},
                **{"outcome": ok, "manual": 0, "image_id": img["id"] if ok == "ok" else None},
                "error": None if ok == "ok" else "camera: timed out waiting for a frame",
            }
        )
    with queue.engine.begin() as conn:
        if images:
            conn.execute(insert(Image.__table__), images)
        if attempts:
            conn.execute(insert(CaptureAttempt.__table__), attempts)
        if deliveries:
            conn.execute(insert(Delivery.__table__), deliveries)
    queue.publish(heartbeat=end.isoformat(), next_capture=(end + dt.timedelta(minutes=20)).isoformat())
    queue.close()
    config = folder / "agent.toml"
    config.write_text(CONFIG.replace("DEVICE", DEVICE).replace("DATA", str(data)))
    return config


def evict_from_page_cache(db: Path) -> None:
    """Drop this one database file (and its WAL) from the page cache."""
    for f in (db, db.with_name(db.name + "-wal")):
        if f.exists():
            fd = os.open(f, os.O_RDONLY)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            os.close(fd)


def timed_runs(cmds: dict[str, list[str]], runs: int, cold_db: Path) -> dict[str, list[float]]:
    """Run each command once untimed, then ``runs`` round-robin rounds; return wall ms per command."""
    out: dict[str, list[float]] = {label: [] for label in cmds}
    for i in range(runs + 1):
        for label, cmd in cmds.items():
            if label.endswith("evicted"):
                evict_from_page_cache(cold_db)
            t = time.perf_counter()
            p = subprocess.run(cmd, capture_output=True, text=True, env=ENV)
            ms = 1000 * (time.perf_counter() - t)
            if p.returncode != 0:
                sys.exit(f"{' '.join(cmd)} failed ({p.returncode}):\n{p.stderr}")
            if i:
                out[label].append(ms)
    return out


def status_label(extra: str, n: int) -> str:
    return f"status {extra:<6} {n:>9,} images"


def row(label: str, ms: list[float]) -> str:
    return f"{label:<52} {min(ms):>8.0f} {statistics.median(ms):>8.0f} {max(ms):>8.0f}"


def importtime_top(code: str, top: int) -> list[str]:
    """Return the ``top`` imports by cumulative time, and self time by package (best of 3 runs)."""
    best: list[tuple[int, int, str]] = []
    for _ in range(3):
        cmd = [sys.executable, "-X", "importtime", "-c", code]
        err = subprocess.run(cmd, capture_output=True, text=True, env=ENV).stderr
        rows = []
        for line in err.splitlines():
            if line.startswith("import time:") and "cumulative" not in line:
                self_us, cum_us, name = line.removeprefix("import time:").split("|")
                rows.append((int(cum_us), int(self_us), name.rstrip()))
        if not best or sum(r[1] for r in rows) < sum(r[1] for r in best):
            best = rows
    by_pkg: dict[str, int] = {}
    for _, self_us, name in best:
        pkg = name.strip().split(".")[0]
        by_pkg[pkg] = by_pkg.get(pkg, 0) + self_us
    lines = [f"  all imports: {sum(by_pkg.values()) / 1000:.0f} ms (sum of self), {len(best)} modules"]
    for cum, self_us, name in sorted(best, reverse=True)[:top]:
        lines.append(f"  {cum / 1000:>7.1f} cumulative {self_us / 1000:>6.1f} self  {name}")
    heavy = sorted(by_pkg.items(), key=lambda kv: -kv[1])[:8]
    lines.append("  self time by top-level package: " + ", ".join(f"{k} {v / 1000:.0f}" for k, v in heavy))
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="0,1000,100000", help="queue sizes (images), comma-separated")
    ap.add_argument("--attempts", type=int, default=10_000, help="capture_attempts rows (at most #images)")
    ap.add_argument("--runs", type=int, default=10, help="timed runs per command")
    ap.add_argument("--seed", type=int, default=1, help="seed of the states, sizes and md5s")
    ap.add_argument("--dir", type=Path, default=None, help="parent of the temporary folder")
    ap.add_argument(
        "--no-bytecode-cache",
        action="store_true",
        help="compile agent/ from source in every run (default: .pyc cached in the temp folder, "
        "as after a pip install on the Pi)",
    )
    args = ap.parse_args()
    sizes = sorted(int(s) for s in args.sizes.split(","))
    ctl = [str(STICKYCTL)] if STICKYCTL.exists() else [sys.executable, "-m", "agent"]
    py = sys.executable
    print(machine())
    from agent.status import collect_status

    with tempfile.TemporaryDirectory(prefix="bench-status-", dir=args.dir) as tmp:
        if args.no_bytecode_cache:
            ENV.update(PYTHONDONTWRITEBYTECODE="1")
        else:
            ENV.pop("PYTHONDONTWRITEBYTECODE", None)
            ENV["PYTHONPYCACHEPREFIX"] = str(Path(tmp) / "pycache")
        cache = "off" if args.no_bytecode_cache else "on (PYTHONPYCACHEPREFIX in the temp folder)"
        print(f"command: {' '.join(ctl)} --config CFG status [--json]; bytecode cache {cache}")
        print(f"{args.runs} timed runs + 1 untimed of each command, round-robin\n")
        cmds = {
            "python -c pass": [py, "-c", "pass"],
            "python -c 'import agent.cli'": [py, "-c", "import agent.cli"],
            "python -c 'import agent.cli, agent.status'": [py, "-c", "import agent.cli, agent.status"],
        }
        configs: dict[int, Path] = {}
        for n in sizes:
            t = time.perf_counter()
            cfg = configs[n] = build_queue(Path(tmp) / f"q{n}", n, min(n, args.attempts), args.seed)
            mb = (cfg.parent / "data" / "queue.sqlite").stat().st_size / 1e6
            built = time.perf_counter() - t
            na = min(n, args.attempts)
            print(f"queue {n:,} images + {na:,} attempts: {mb:.1f} MB ({built:.1f} s to build)")
            for extra in ("", "--json"):
                cmds[status_label(extra, n)] = [*ctl, "--config", str(cfg), "status", *extra.split()]
        big = sizes[-1]
        cmds[status_label("", big) + ", queue evicted"] = [*ctl, "--config", str(configs[big]), "status"]
        times = timed_runs(cmds, args.runs, configs[big].parent / "data" / "queue.sqlite")
        inproc = []
        for n in sizes:
            config = load_config(configs[n], environ={})
            q_ms = []
            for _ in range(args.runs + 1):
                t = time.perf_counter()
                collect_status(config)
                q_ms.append(1000 * (time.perf_counter() - t))
            inproc.append(row(f"collect_status() in-process {n:>9,} images", q_ms[1:]))
        top = importtime_top("import agent.cli, agent.status", 10)  # uses the bytecode cache in tmp
    print(f"\n{'wall time, ms':<52} {'min':>8} {'median':>8} {'max':>8}")
    print("\n".join([*(row(label, ms) for label, ms in times.items()), *inproc]))
    print("\n-X importtime of 'import agent.cli, agent.status' (what status imports), ms:")
    print("\n".join(top))
    med = {label: statistics.median(ms) for label, ms in times.items()}
    imports = med["python -c 'import agent.cli, agent.status'"]
    print(
        f"\nsummary: stickyctl status {med[status_label('', big)]:.0f} ms median at {big:,} images vs "
        f"{med[status_label('', sizes[0])]:.0f} ms at {sizes[0]:,}; bare interpreter "
        f"{med['python -c pass']:.0f} ms, imports {imports:.0f} ms"
        f" (load average now {os.getloadavg()[0]:.2f})"
    )


if __name__ == "__main__":
    main()
