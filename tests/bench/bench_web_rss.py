"""Peak RSS of the agent with its web page open and the live preview running, vs without.

Two runs of ``stickyctl run`` as a real process each, one after the other, on the demo's
setup (synthetic camera ``--size``, mock flash, fake sensors, the built-in detector, no
sync), capturing every ``--interval`` seconds for ``--minutes`` each:

- **without**: ``[web] enabled = false``;
- **with**: ``[web] enabled = true`` and a client in this process that keeps a browser's
  load on it: one ``/preview.mjpg`` stream read continuously (the preview restarted before its
  timeout, as a technician pressing *Start preview* again would), the dashboard fragment every
  5 s, and every 30 s the captures page, its thumbnails, the counts page, ``/export.csv`` and
  ``/metrics``.

Read it: ``peak`` is the kernel's high-water mark (VmHWM) of the agent process at the end of
the run (each run lasts ``--minutes`` and then until it has taken ``minutes * 60 / interval``
captures, so both compare the same work); ``end`` its VmRSS then; ``frames`` how many
preview frames the client received. The issue asks ``with - without <= 30 MB`` over 10
minutes: ``--minutes 10``. The default (2 min each) is a quick look. Prints the machine
first and a one-line ``summary:`` last.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def status_kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def write_config(folder: Path, args: argparse.Namespace, web: bool, port: int) -> Path:
    width, height = args.size.lower().split("x")
    text = f"""
[device]
id = "be0c0005"
[storage]
data_dir = "{folder / "data"}"
[capture]
interval = "{args.interval}s"
[camera]
type = "synthetic"
width = {width}
height = {height}
seed = {args.seed}
insects_per_capture = 0.8
[flash]
type = "gpio"
pin = 23
pin_factory = "mock"
[sensors]
type = "fake"
[detector]
type = "builtin"
[web]
enabled = {"true" if web else "false"}
port = {port}
preview_timeout = "5m"
"""
    path = folder / "agent.toml"
    path.write_text(text)
    return path


class Browser:
    """A browser's load on the page: the MJPEG stream, the dashboard refresh, the other pages."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.frames = 0
        self.requests = 0
        self.errors: list[str] = []
        self.stop = threading.Event()
        self.token = ""

    def get(self, path: str) -> bytes:
        with urllib.request.urlopen(self.url + path, timeout=30) as r:
            self.requests += 1
            return bytes(r.read())

    def post(self, path: str) -> None:
        req = urllib.request.Request(self.url + path, data=b"", headers={"X-CSRF-Token": self.token})
        with urllib.request.urlopen(req, timeout=30) as r:
            r.read()
            self.requests += 1

    def stream(self) -> None:
        while not self.stop.is_set():
            try:
                self.post("preview/start")
                with urllib.request.urlopen(self.url + "preview.mjpg", timeout=60) as r:
                    started = time.monotonic()
                    while not self.stop.is_set() and time.monotonic() - started < 240:
                        line = r.readline()
                        if not line:
                            break
                        if line.startswith(b"--frame"):
                            self.frames += 1
            except OSError as e:
                self.errors.append(f"stream: {e}")
                self.stop.wait(1)

    def pages(self) -> None:
        tick = 0
        while not self.stop.wait(5):
            tick += 1
            try:
                self.get("fragment/dashboard")
                if tick % 6 == 0:
                    html = self.get("captures").decode()
                    for thumb in re.findall(r'src="/(thumb/\d+)"', html)[:24]:
                        self.get(thumb)
                    for path in ("counts?days=3", "export.csv", "metrics"):
                        self.get(path)
            except OSError as e:
                self.errors.append(f"pages: {e}")

    def run(self) -> list[threading.Thread]:
        html = self.get("aim").decode()
        m = re.search(r'name="csrf-token" content="([^"]+)"', html)
        self.token = m.group(1) if m else ""
        threads = [threading.Thread(target=f, daemon=True) for f in (self.stream, self.pages)]
        for t in threads:
            t.start()
        return threads


def one_run(args: argparse.Namespace, web: bool) -> dict[str, object]:
    with tempfile.TemporaryDirectory(prefix="bench-web-", dir=args.dir) as tmp:
        port = free_port()
        config = write_config(Path(tmp), args, web, port)
        env = {**os.environ, "MALLOC_ARENA_MAX": "2", "PYTHONDONTWRITEBYTECODE": "1"}
        agent = subprocess.Popen(
            [sys.executable, "-m", "agent", "--config", str(config), "run"],
            cwd=REPO,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        browser = None
        threads: list[threading.Thread] = []
        try:
            url = f"http://127.0.0.1:{port}/"
            deadline = time.monotonic() + 60
            while web:
                try:
                    urllib.request.urlopen(url + "status.json", timeout=5).read()
                    break
                except OSError:
                    if time.monotonic() > deadline or agent.poll() is not None:
                        raise SystemExit("the agent's web page did not come up") from None
                    time.sleep(0.2)
            if web:
                browser = Browser(url)
                threads = browser.run()
            # Both runs end after the same number of captures (the peak follows the captures):
            # the run's length, then up to two more intervals until the count is reached.
            want = max(1, int(args.minutes * 60 / args.interval))
            end = time.monotonic() + args.minutes * 60
            late = end + 2 * args.interval
            samples = []

            def taken() -> int:
                return len(list((Path(tmp) / "data").glob("*/*/*.jpg")))

            while agent.poll() is None and (
                time.monotonic() < end or (taken() < want and time.monotonic() < late)
            ):
                samples.append(status_kb(agent.pid, "VmRSS"))
                time.sleep(min(2.0, max(0.1, end - time.monotonic())))
            if agent.poll() is not None:
                raise SystemExit(f"the agent died: {agent.stderr.read() if agent.stderr else ''}")
            peak, rss = status_kb(agent.pid, "VmHWM"), status_kb(agent.pid, "VmRSS")
        finally:
            if browser is not None:
                browser.stop.set()
            agent.send_signal(signal.SIGTERM)
            try:
                agent.wait(timeout=120)
            except subprocess.TimeoutExpired:
                agent.kill()
            for t in threads:
                t.join(timeout=5)
        captures = len(list((Path(tmp) / "data").glob("*/*/*.jpg")))
    return {
        "peak_kb": peak,
        "end_kb": rss,
        "min_kb": min(samples) if samples else rss,
        "captures": captures,
        "frames": browser.frames if browser else 0,
        "requests": browser.requests if browser else 0,
        "errors": browser.errors[:3] if browser else [],
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--minutes", type=float, default=2.0, help="length of each run (10 for the issue's test)"
    )
    parser.add_argument("--interval", type=int, default=30, help="seconds between captures (>= 10)")
    parser.add_argument("--size", default="2592x1944", help="synthetic frame size")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--dir", default=None, help="parent folder of the temporary data folders")
    args = parser.parse_args()
    print(
        f"machine: {platform.platform()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
        f"load {os.getloadavg()[0]:.2f}"
    )
    print(f"each run: {args.minutes:g} min, a capture every {args.interval} s at {args.size}")
    results = {}
    for web in (False, True):
        r = one_run(args, web)
        results[web] = r
        name = "with the page + preview" if web else "without the page"
        print(
            f"{name:<24} peak {r['peak_kb'] / 1024:6.1f} MB  end {r['end_kb'] / 1024:6.1f} MB  "
            f"captures {r['captures']}  preview frames {r['frames']}  requests {r['requests']}"
            + (f"  errors {r['errors']}" if r["errors"] else "")
        )
    delta = (int(results[True]["peak_kb"]) - int(results[False]["peak_kb"])) / 1024  # type: ignore[call-overload]
    print(
        f"summary: peak RSS without the page {int(results[False]['peak_kb']) / 1024:.1f} MB, "  # type: ignore[call-overload]
        f"with the page open and the preview running {int(results[True]['peak_kb']) / 1024:.1f} MB "  # type: ignore[call-overload]
        f"({delta:+.1f} MB over {args.minutes:g} min; the issue's bound is +30 MB over 10 min)"
    )


if __name__ == "__main__":
    main()
