"""Peak RSS of ``stickyctl run`` while the API answers every lookup with a huge body, and how
long a SIGTERM then takes to stop it (issue 9, item 8).

A :class:`HostileServer` (``tests/helpers``) in this process answers ``/get_images/metadata``
with ``--size-mb`` MB of JSON image rows made on the fly, without a ``Content-Length`` (or with
one: ``--declare-length``); ``/get_token`` is honest. The agent runs as ``stickyctl run`` in a
child process (synthetic camera, one capture waiting in the queue, ``probe_interval`` 1 s,
``backoff_max`` 2 s, so it asks again and again). For ``--seconds`` this samples the child's
VmRSS every 50 ms, then sends SIGTERM and times the exit.

Read it: ``peak`` is the child's VmHWM (the kernel's high-water mark). ``sent`` is what the
server managed to push into the sockets, per huge answer: about the agent's answer limit
(8 MiB) plus the socket buffers when the agent stops reading at the limit; the whole answer
when it reads everything. ``SIGTERM->exit`` is the stop time.

    python tests/bench/bench_hostile.py            # ~20 s
    python tests/bench/bench_hostile.py --size-mb 64 --seconds 30
"""

from __future__ import annotations

import argparse
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests"))

from helpers.hostile_server import HostileServer, huge_answer  # noqa: E402

CONFIG = """\
[device]
id = "0a1b2c3d"
[storage]
data_dir = "{data}"
[capture]
interval = "1h"
[camera]
type = "synthetic"
width = 320
height = 240
[flash]
type = "none"
[sensors]
type = "fake"
[sync]
url = "{url}"
credentials = "{creds}"
probe_interval = "1s"
backoff_max = "2s"
"""


def vm_kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size-mb", type=int, default=600, help="size of each metadata answer")
    parser.add_argument("--seconds", type=float, default=15.0, help="how long the agent runs")
    parser.add_argument("--declare-length", action="store_true", help="send a Content-Length")
    parser.add_argument("--dir", type=Path, default=None, help="parent of the temporary folder")
    args = parser.parse_args()
    print(f"machine: {platform.platform()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
          f"load {os.getloadavg()[0]:.2f}")  # fmt: skip

    with tempfile.TemporaryDirectory(dir=args.dir) as tmp, HostileServer() as server:
        root = Path(tmp)
        creds = root / "creds"
        creds.write_text("trap:secret\n")
        creds.chmod(0o600)
        config = root / "agent.toml"
        config.write_text(CONFIG.format(data=root / "data", url=server.url, creds=creds))
        server.serve("/get_images/metadata", huge_answer(args.size_mb * 2**20, args.declare_length))
        stickyctl = [sys.executable, "-m", "agent", "--config", str(config)]
        subprocess.run([*stickyctl, "capture"], check=True, capture_output=True, cwd=REPO)

        log = root / "agent.log"
        with log.open("w") as out:
            child = subprocess.Popen([*stickyctl, "run"], stdout=out, stderr=subprocess.STDOUT, cwd=REPO)
            rss_max = 0
            end = time.monotonic() + args.seconds
            while time.monotonic() < end and child.poll() is None:
                rss_max = max(rss_max, vm_kb(child.pid, "VmRSS"))
                time.sleep(0.05)
            peak = vm_kb(child.pid, "VmHWM")
            t0 = time.monotonic()
            child.send_signal(signal.SIGTERM)
            try:
                code = child.wait(120)
            except subprocess.TimeoutExpired:
                child.kill()
                code = child.wait()
            stop_s = time.monotonic() - t0

        answers = server.requests["/get_images/metadata"]
        sent_mb = server.bytes_sent["/get_images/metadata"] / 2**20
        errors = [line for line in log.read_text().splitlines() if "metadata" in line][-1:]
        length = "with" if args.declare_length else "no"
        each = sent_mb / max(1, answers)
        print(
            f"huge answers: {answers} of {args.size_mb} MB ({length} Content-Length), "
            f"sent {sent_mb:.1f} MB, {each:.1f} MB each"
        )
        print(f"agent: peak RSS {peak / 1024:.0f} MB (sampled max {rss_max / 1024:.0f} MB), exit code {code}")
        print(f"last log line about it: {errors[0] if errors else '-'}")
        print(f"summary: peak {peak / 1024:.0f} MB, SIGTERM->exit {stop_s:.2f} s, {answers} answers")


if __name__ == "__main__":
    main()
