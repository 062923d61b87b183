"""Sync throughput: the agent's SyncWorker against the reference client, over loopback and metered links.

N images are made once by the agent's capture pipeline (synthetic camera, a fake clock 1 s per
image). Each uploader syncs the same images to a fresh devserver in a process of its own, so the
client's CPU (``time.process_time()``, all threads) is the client's alone:

- agent: a copy of the data folder and queue (not timed), ``SyncWorker.cycle()`` until a cycle asks
  for a pause, default ``[sync]`` (parallelism 2, batch 32); then every image must be ``verified``.
- baseline: ``RemoteClient.put_images`` as ``shared/specs/sticky-pi-api.md`` describes it: a token;
  per chunk of 16 files its ``ImageParser`` on each (md5 of the file, a full decode as its
  ``imread_from_blob`` check, EXIF, both thumbnails with Pillow) and one ``/get_images/metadata``;
  then one POST per file, in sequence, each a new ``requests.post`` with ``Connection: close``, the
  file field named after the file plus ``<name>.md5``. Nothing fails, so it never retries.

Links (``--links``, Mbit/s): ``tc tbf`` on the loopback (MTU 1500) of a private network namespace
(``unshare --net``; both directions share the rate, no added delay) if that works, else a pacing
proxy in the server process (client->server only). N per link: ``--link-seconds`` of transfer.
With tbf, the ``tcp`` row is a bare TCP stream on the same link: the ceiling.

Read it: img/s, MB/s are image bytes over wall time, token and queries included; goodput is that
over the link rate. req/img: requests counted by the client / by the server; conn/img: TCP
connections the server accepted (Werkzeug closes every connection after one answer, so nobody
reuses one here; nginx in front of the real server keeps them open). The server checks it holds
every image once, with the right md5.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import functools
import hashlib
import io
import itertools
import json
import os
import platform
import random
import shutil
import socket
import socketserver
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import PIL
import requests
from PIL import Image

from agent import __version__
from agent.config import config_from_mapping
from agent.devserver import parse_user
from agent.devserver.app import DevServer
from agent.queue import Queue
from agent.queue import deliveries as dq
from agent.service import Pipeline
from agent.sinks.stickypi import make_sink
from agent.sinks.worker import SyncWorker

DEVICE = "be0c0005"
USER, PASSWORD = "bench", "bench-password"
CHUNK = 16  # the reference client's _put_chunk_size
THUMBS = ((512, 384), (128, 96))  # the reference ImageParser's thumbnail sizes
EVER = (dt.datetime(2000, 1, 1, tzinfo=dt.UTC), dt.datetime(2100, 1, 1, tzinfo=dt.UTC))


def tables(data_dir: Path, size: tuple[int, ...], seed: int) -> dict[str, Any]:
    return {
        "device": {"id": DEVICE},
        "storage": {"data_dir": str(data_dir)},
        "camera": {"type": "synthetic", "width": size[0], "height": size[1], "seed": seed},
        "sensors": {"type": "fake", "temperature": 21.5, "humidity": 55.0, "battery": 80},
        "location": {"lat": 49.26142, "lng": -123.25088, "alt": 97.3},
    }


def prepare(folder: Path, n: int, size: tuple[int, ...], seed: int) -> None:
    """Capture ``n`` images into ``folder`` with the agent's pipeline (a fake clock: 1 s apart)."""
    pipeline = Pipeline.build(config_from_mapping(tables(folder, size, seed), environ={}))
    start, tick = dt.datetime(2026, 6, 1, tzinfo=dt.UTC), itertools.count()
    pipeline.capturer.now = lambda: start + dt.timedelta(seconds=next(tick))
    for _ in range(n):
        assert pipeline.capturer.capture().ok
    pipeline.close()


def originals(folder: Path) -> list[Path]:
    return sorted(folder.glob(f"{DEVICE}/*/{DEVICE}.*.jpg"))  # thumbnails are one level deeper


# -- the server process: a DevServer, behind a pacing proxy without netns -----------------------


def proxy(upstream: int, rate: float) -> int:
    """Relay a new 127.0.0.1 port to ``upstream``, client->server paced at ``rate`` bytes/s shared
    by all connections (a virtual clock, 16 KB of burst); return the port."""
    listener, lock, clock = socket.create_server(("127.0.0.1", 0)), threading.Lock(), [0.0]

    def pump(src: socket.socket, dst: socket.socket, pace: bool) -> None:
        with contextlib.suppress(OSError):
            while data := src.recv(16384):
                if pace:
                    with lock:
                        now = time.monotonic()
                        clock[0] = max(clock[0], now - 16384 / rate) + len(data) / rate
                    time.sleep(max(0.0, clock[0] - now))
                dst.sendall(data)
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)

    def relay(client: socket.socket) -> None:
        with client, socket.create_connection(("127.0.0.1", upstream)) as server:
            up = threading.Thread(target=pump, args=(client, server, True), daemon=True)
            up.start()
            pump(server, client, False)
            up.join()

    def accept() -> None:
        while True:
            threading.Thread(target=relay, args=(listener.accept()[0],), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    return int(listener.getsockname()[1])


def serve(data_dir: str, rate: float) -> None:
    """Print the URL, serve until stdin closes, then print the server's figures as JSON."""
    conns = itertools.count()  # socketserver calls verify_request once per accepted connection
    count = lambda self, request, client_address: next(conns) >= 0  # noqa: E731
    socketserver.BaseServer.verify_request = count  # type: ignore[method-assign]
    srv = DevServer(Path(data_dir), [parse_user(f"{USER}:{PASSWORD}")]).start()
    port = int(srv.url.rsplit(":", 1)[1])
    print(f"http://127.0.0.1:{proxy(port, rate)}" if rate else srv.url, flush=True)
    cpu0 = time.process_time()  # imports and start-up left out
    sys.stdin.read()
    md5s = sorted(row["md5"] for row in srv.app.store.image_series("%", *EVER))
    out = {"requests": sum(srv.requests.values()), "conns": next(conns), "md5s": md5s}
    srv.stop()
    print(json.dumps(out | {"srv_cpu": time.process_time() - cpu0}))


class Server:
    """``serve`` in a process of its own, on a fresh data folder."""

    def __init__(self, folder: Path, rate: float) -> None:
        cmd = [sys.executable, __file__, "--serve", str(folder), "--rate", str(rate)]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        self.url = self.proc.stdout.readline().strip()
        if not self.url.startswith("http"):
            raise SystemExit("the devserver did not start")

    def stop(self) -> dict[str, Any]:
        return dict(json.loads(self.proc.communicate(timeout=60)[0]))


# -- the two uploaders: set up untimed, return a timed call that returns the requests sent --------


def agent_uploader(src: Path, work: Path, url: str, seed: int) -> Callable[[], int]:
    shutil.copytree(src, work / "data")
    (work / "credentials").write_text(f"{USER}:{PASSWORD}\n")
    (work / "credentials").chmod(0o600)
    table = {"sync": {"url": url, "credentials": str(work / "credentials")}}
    config = config_from_mapping(tables(work / "data", (64, 48), seed) | table, environ={})
    queue, sync = Queue(config.storage.queue_path), config.sinks[0]
    worker = SyncWorker(config, queue, lambda: make_sink(sync), rng=random.Random(seed))

    def upload() -> int:
        for _ in range(10_000):
            if worker.cycle() > 0:  # a pause: nothing left, or an error (checked below)
                break
        worker.stop()
        totals = dq.totals(queue, sync.name)
        if totals.waiting or totals.failed or totals.conflict:
            raise SystemExit(f"agent: the queue is not all verified: {totals}")
        queue.close()
        return getattr(worker.sink, "requests_sent", 0)  # one sink: it is remade only after a 401/403

    return upload


def reference_parse(path: Path) -> str:
    """What the reference ImageParser does with a file; return its md5."""
    with path.open("rb") as f:
        md5 = hashlib.md5(f.read()).hexdigest()
        f.seek(0)
        blob = f.read()
    Image.open(io.BytesIO(blob)).load()  # imread_from_blob: the whole JPEG decoded
    with Image.open(io.BytesIO(blob)) as img:
        img.getexif()
        for box in THUMBS:
            img.thumbnail(box)
            img.copy()
    return md5


def baseline_upload(src: Path, url: str, prep: list[float]) -> int:
    sent = 0

    def post(route: str, **kw: Any) -> requests.Response:
        nonlocal sent
        sent += 1
        r = requests.post(url + route, headers={"Connection": "close"}, timeout=120, **kw)
        r.raise_for_status()
        return r

    token = post("/get_token", auth=(USER, PASSWORD)).json()["token"]
    files, todo = originals(src), []
    for i in range(0, len(files), CHUNK):
        chunk, c0 = files[i : i + CHUNK], time.process_time()
        md5s = [reference_parse(f) for f in chunk]
        prep.append(time.process_time() - c0)
        stamps = [dt.datetime.strptime(f.name.split(".")[1], "%Y-%m-%d_%H-%M-%S") for f in chunk]
        body = [{"device": DEVICE, "datetime": t.strftime("%Y-%m-%dT%H:%M:%SZ")} for t in stamps]
        held = {r["datetime"] for r in post("/get_images/metadata", json=body, auth=(token, "")).json()}
        todo += [(f, m) for f, m, q in zip(chunk, md5s, body, strict=True) if q["datetime"] not in held]
    for f, md5 in todo:
        with f.open("rb") as fh:
            files_ = {f.name: (f.name, fh, "image/jpeg")}
            post("/_put_new_images", files=files_, data={f.name + ".md5": md5}, auth=(token, ""))
    return sent


def tcp_ceiling(nbytes: int) -> float:
    """Return the seconds a bare TCP stream of ``nbytes`` takes over this namespace's loopback."""
    with socket.create_server(("127.0.0.1", 0)) as ls, socket.create_connection(ls.getsockname()) as c:
        s, t0, got = ls.accept()[0], time.perf_counter(), 0
        threading.Thread(target=c.sendall, args=(bytes(nbytes),), daemon=True).start()
        while got < nbytes:
            got += len(s.recv(1 << 16))
        return time.perf_counter() - t0


def run(spec: dict[str, Any]) -> None:
    """Measure both uploaders on one link (this process may be in a private network namespace)."""
    src, work, mbit, tbf = Path(spec["src"]), Path(spec["work"]), spec["mbit"], spec["tbf"]
    files = originals(src)
    expected = sorted(hashlib.md5(f.read_bytes()).hexdigest() for f in files)
    out: dict[str, Any] = {"n": len(files), "bytes": sum(f.stat().st_size for f in files)}
    if tbf:
        subprocess.run(["ip", "link", "set", "lo", "up", "mtu", "1500"], check=True)
        shape = f"rate {mbit}mbit burst 32kb latency 300ms"
        subprocess.run(["tc", "qdisc", "add", "dev", "lo", "root", "tbf", *shape.split()], check=True)
        nbytes = int(mbit * 125e3 * 3)
        out["tcp"] = {"wall": tcp_ceiling(nbytes), "bytes": nbytes}
    for who in ("agent", "baseline"):
        (work / who).mkdir(parents=True)
        server, prep = Server(work / who / "server", 0 if tbf else mbit * 125e3), list[float]()
        if who == "agent":
            upload = agent_uploader(src, work / who, server.url, spec["seed"])
        else:
            upload = functools.partial(baseline_upload, src, server.url, prep)
        t0, c0 = time.perf_counter(), time.process_time()
        sent = upload()
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        srv = server.stop()
        if srv.pop("md5s") != expected:
            raise SystemExit(f"{who}: the server does not hold exactly the images sent")
        out[who] = {"wall": wall, "cpu": cpu, "sent": sent, "prep": sum(prep), **srv}
        shutil.rmtree(work / who)
    print(json.dumps(out))


# -- the parent: prepare, run each link in a child, print -----------------------------------------


def netns_works() -> bool:
    probe = "ip link set lo up mtu 1500 && tc qdisc add dev lo root tbf rate 1mbit burst 32kb latency 300ms"
    with contextlib.suppress(OSError):
        return subprocess.run(["unshare", "--net", "sh", "-c", probe], capture_output=True).returncode == 0
    return False


def report(rows: list[tuple[float, dict[str, Any]]]) -> None:
    fmt = "{:<9} {:<8} {:>4} {:>6} {:>6} {:>6} {:>7} {:>11} {:>8} {:>9} {:>11}"
    head = ("link", "uploader", "imgs", "wall s", "img/s", "MB/s", "goodput", "req/img c/s", "conn/img")
    print("\n" + fmt.format(*head, "CPU s/img", "srv CPU/img"))
    summary = []
    for mbit, r in rows:
        link, n = f"{mbit:g} Mbit/s" if mbit else "loopback", r["n"]
        for who in [w for w in ("tcp", "agent", "baseline") if w in r]:
            m = r[who]
            mbps = m.get("bytes", r["bytes"]) / 1e6 / m["wall"]
            m["goodput"] = f"{800 * mbps / mbit:.0f}%" if mbit else "-"
            cells = [n, f"{m['wall']:.1f}", f"{n / m['wall']:.2f}", f"{mbps:.2f}", m["goodput"]]
            if who == "tcp":  # a bare stream: no images, requests or CPU
                cells = ["-", cells[1], "-", cells[3], cells[4], "-", "-", "-", "-"]
            else:
                cells += [f"{m['sent'] / n:.2f}/{m['requests'] / n:.2f}", f"{m['conns'] / n:.2f}"]
                cells += [f"{m['cpu'] / n:.3f}", f"{m['srv_cpu'] / n:.3f}"]
            print(fmt.format(link, who, *cells))
        a, b = r["agent"], r["baseline"]
        print(
            f"{'':<9} agent/baseline throughput x{b['wall'] / a['wall']:.2f}; baseline/agent client CPU "
            f"x{b['cpu'] / a['cpu']:.2f}, requests x{b['sent'] / a['sent']:.2f}; the baseline's local "
            f"parsing alone {b['prep'] / n:.3f} CPU s/img"
        )
        if mbit:
            summary.append(f"{link}: goodput agent {a['goodput']}, baseline {b['goodput']}")
        else:
            summary.append(
                f"loopback: agent {n / a['wall']:.1f} img/s vs baseline {n / b['wall']:.1f} "
                f"(x{b['wall'] / a['wall']:.2f}), client CPU/img x{b['cpu'] / a['cpu']:.1f} lower"
            )
    print("\nsummary: " + "; ".join(summary))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--images", type=int, default=100, help="images on loopback (and the most per link)")
    ap.add_argument("--size", default="2592x1944", help="synthetic frame WxH (the HQ camera: 4056x3040)")
    ap.add_argument("--seed", type=int, default=1, help="synthetic camera and worker seed")
    ap.add_argument("--links", default="2,20", help="link rates in Mbit/s, comma-separated ('' for none)")
    ap.add_argument("--link-seconds", type=float, default=30, help="transfer time that sizes N per link")
    ap.add_argument("--shaper", choices=("auto", "netns", "proxy"), default="auto", help="auto: netns if ok")
    ap.add_argument("--dir", type=Path, default=None, help="parent of the temporary folder")
    ap.add_argument("--serve", help=argparse.SUPPRESS)
    ap.add_argument("--rate", type=float, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--run", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve:
        return serve(args.serve, args.rate)
    if args.run:
        return run(json.loads(args.run))

    size = tuple(int(x) for x in args.size.lower().split("x"))
    links = [float(x) for x in args.links.split(",") if x.strip()]
    shaper = args.shaper if args.shaper != "auto" else ("netns" if netns_works() else "proxy")
    print(
        f"machine: {platform.platform()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
        f"Pillow {PIL.__version__}, requests {requests.__version__}, sticky-agent {__version__}; "
        f"load average {os.getloadavg()[0]:.2f}"
    )
    with tempfile.TemporaryDirectory(prefix="bench-sync-", dir=args.dir) as tmp:
        t0, sets = time.perf_counter(), {args.images: Path(tmp, f"images-{args.images}")}
        prepare(sets[args.images], args.images, size, args.seed)
        mean = sum(f.stat().st_size for f in originals(sets[args.images])) / args.images
        how = "tc tbf in a private netns, MTU 1500" if shaper == "netns" else "a pacing proxy (upload only)"
        print(f"{args.images} images at {args.size}, mean {mean / 1e6:.2f} MB, captured in "
              f"{time.perf_counter() - t0:.0f} s; links shaped by {how}", flush=True)  # fmt: skip
        rows = []
        for i, mbit in enumerate([0.0, *links]):
            n = max(4, min(args.images, round(mbit * 125e3 * args.link_seconds / mean))) if mbit else 0
            n = n or args.images
            if n not in sets:
                sets[n] = Path(tmp, f"images-{n}")
                prepare(sets[n], n, size, args.seed)  # the same first n images
            tbf = bool(mbit) and shaper == "netns"
            spec = dict(src=str(sets[n]), work=f"{tmp}/run-{i}", mbit=mbit, tbf=tbf, seed=args.seed)
            netns = ["unshare", "--net"] if tbf else []
            cmd = [*netns, sys.executable, __file__, "--run", json.dumps(spec)]
            print(f"  {f'{mbit:g} Mbit/s' if mbit else 'loopback'}: {n} images", file=sys.stderr, flush=True)
            rows.append((mbit, json.loads(subprocess.run(cmd, stdout=subprocess.PIPE, check=True).stdout)))
    report(rows)


if __name__ == "__main__":
    main()
