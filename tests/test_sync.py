"""Sync to the Sticky Pi API over real HTTP: SyncWorker + StickyPiSink against a DevServer.

Every test starts its own DevServer on 127.0.0.1 (port 0, unless it must come back on the same
port), writes the API credentials to a 0600 file in tmp_path, captures synthetic 320x240 images
through the real pipeline with a stepping fake clock (capture seconds from 2026-01-01 12:00:00
UTC), and drives ``SyncWorker.cycle()`` by hand: no worker thread, no sleep. What the server
holds is checked with the test's own HTTP client (:class:`Api`). Tokens, the bandwidth bucket and
the daily budget get injected clocks.
"""

from __future__ import annotations

import collections
import contextlib
import datetime as dt
import hashlib
import io
import json
import logging
import random
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests
from conftest import run_stickyctl
from helpers import sinkview
from helpers.clocks import SteppingClock
from helpers.faultproxy import Fault, FaultProxy, scripted
from helpers.sickserver import answer_500
from helpers.sinkview import State as ImageState
from PIL import Image as PILImage

from agent.capture.naming import image_path, thumbnail_path
from agent.capture.retention import enforce
from agent.config import Config, load_config
from agent.devserver import parse_user
from agent.devserver.app import DevServer
from agent.errors import CredentialsError, SinkAuthError
from agent.queue import Image
from agent.queue.deliveries import pending_annotations
from agent.queue.schema import Annotation
from agent.queue.syncrows import add_annotation
from agent.service import Pipeline
from agent.sinks.credentials import Credentials, load_credentials
from agent.sinks.passes import backoff_delay
from agent.sinks.stickypi import StickyPiSink, make_sink
from agent.sinks.throttle import Bandwidth, DailyBudget
from agent.sinks.worker import SyncWorker

UTC = dt.UTC
PASSWORD = "pw-Hunter2-s3cret"
USERS = [parse_user(f"alice:{PASSWORD}"), parse_user(f"reader:{PASSWORD}:read")]
T0 = 1_800_000_000.0  # unix seconds of the injected token clocks
BACKOFF_MAX = 60.0
ALGO, ALGO_VERSION = "test-algo", "1700000000-" + "0123456789abcdef" * 2
CONTOUR = [[[1, 2]], [[3, 4]], [[5, 6]]]
OUTLINES = [
    {"contour": CONTOUR, "name": "insect", "fill_colour": "#ff0000", "stroke_colour": "#0000ff", "value": 0}
]


# -- clocks ------------------------------------------------------------------------------------


class Clock:
    """A settable clock in unix seconds; ``sleep`` advances it (and records the sleeps)."""

    def __init__(self, now: float = T0) -> None:
        self.now = now
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


# -- the server side, seen by the test ---------------------------------------------------------


def api_time(when: dt.datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def api_key(img: Image) -> dict[str, str]:
    return {"device": img.device, "datetime": api_time(img.datetime)}


def name_of(img: Image) -> str:
    return Path(img.path).name


class Api:
    """The test's own client of the server: what a user of the platform sees."""

    def __init__(self, server: DevServer, user: str = "alice", password: str = PASSWORD) -> None:
        self.url = server.url
        answer = requests.post(f"{self.url}/get_token", auth=(user, password), timeout=10)
        answer.raise_for_status()
        self.auth = (answer.json()["token"], "")

    def post(self, route: str, **kwargs: Any) -> requests.Response:
        return requests.post(self.url + route, auth=self.auth, timeout=10, **kwargs)

    def rows(self, route: str, body: list[dict[str, Any]]) -> list[dict[str, Any]]:
        answer = self.post(route, json=body)
        answer.raise_for_status()
        rows = answer.json()
        assert isinstance(rows, list)
        return rows

    def all_images(self) -> list[dict[str, Any]]:
        """Return every image row the server holds."""
        series = {
            "device": "%",
            "start_datetime": "2019-11-01T00:00:00Z",
            "end_datetime": "2100-01-01T00:00:00Z",
        }
        return self.rows("/get_image_series/metadata", [series])

    def image(self, img: Image) -> dict[str, Any] | None:
        rows = self.rows("/get_images/metadata", [api_key(img)])
        return rows[0] if rows else None

    def original(self, img: Image) -> bytes:
        (row,) = self.rows("/get_images/image", [api_key(img)])
        answer = requests.get(row["url"], timeout=10)
        answer.raise_for_status()
        return answer.content

    def annotations(self, img: Image, what: str = "data") -> list[dict[str, Any]]:
        return self.rows(f"/get_uid_annotations/{what}", [api_key(img)])

    def put_image(self, name: str, data: bytes) -> requests.Response:
        """Upload ``data`` as the file ``name`` (field name = file name, as the server wants)."""
        md5 = hashlib.md5(data).hexdigest()
        return self.post(
            "/_put_new_images", files={name: (name, data, "image/jpeg")}, data={f"{name}.md5": md5}
        )

    def put_annotation(self, img: Image) -> requests.Response:
        meta = {"algo_name": ALGO, "algo_version": ALGO_VERSION, "md5": img.md5, **api_key(img)}
        return self.post("/put_uid_annotations", json=[{"metadata": meta, "annotations": OUTLINES}])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# -- the trap side ----------------------------------------------------------------------------


@dataclass
class Trap:
    """A trap's pipeline (queue + capturer) and the sync workers made for it in a test."""

    config: Config
    pipeline: Pipeline
    workers: list[SyncWorker] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.pipeline.capturer.now = SteppingClock()

    @property
    def queue(self) -> Any:
        return self.pipeline.queue

    @property
    def data_dir(self) -> Path:
        return self.config.storage.data_dir

    def capture(self, n: int = 1) -> list[Image]:
        results = [self.pipeline.capturer.capture() for _ in range(n)]
        assert all(r.ok for r in results), [r.error for r in results]
        return [r.image for r in results if r.image is not None]

    def worker(
        self,
        config: Config | None = None,
        sink_factory: Callable[[], Any] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> SyncWorker:
        config = config or self.config
        sync = config.sinks[0]
        assert sync is not None
        factory = sink_factory or (lambda: make_sink(sync))
        worker = SyncWorker(config, self.queue, factory, rng=random.Random(7), clock=clock)
        self.workers.append(worker)
        return worker

    def row(self, img: Image) -> sinkview.Row:
        """Return how ``img`` stands with the sink (the file's state if it is gone or bad)."""
        return sinkview.row(self.queue, img.id)

    def state(self, img: Image) -> str:
        return self.row(img).state

    def states(self) -> collections.Counter[str]:
        return collections.Counter(self.state(r) for r in self.queue.images(limit=10_000))

    def original(self, img: Image) -> Path:
        return self.data_dir / img.path

    def thumbnails(self, img: Image) -> list[Path]:
        return [thumbnail_path(self.original(img), kind) for kind in ("thumbnail", "thumbnail-mini")]

    def add_unparseable_image(self, when: dt.datetime) -> Image:
        """Queue a JPEG without EXIF (the server refuses it with a 500 every time) whose row's
        md5 matches its bytes, so the agent itself has no reason to hold it back."""
        path = image_path(self.data_dir, self.pipeline.device, when)
        buffer = io.BytesIO()
        PILImage.new("RGB", (320, 240), (200, 180, 40)).save(buffer, format="JPEG")
        data = buffer.getvalue()
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        return self.queue.add_image(
            device=self.pipeline.device,
            when=when,
            path=str(path.relative_to(self.data_dir)),
            md5=hashlib.md5(data).hexdigest(),
            size=len(data),
            width=320,
            height=240,
            metadata={},
            manual=False,
        )

    def close(self) -> None:
        for worker in self.workers:
            worker.stop()
        self.pipeline.close()


def drain(worker: SyncWorker, max_cycles: int = 30) -> float:
    """Run cycles until one asks to wait (queue drained, or back off); return that delay."""
    for _ in range(max_cycles):
        delay = worker.cycle()
        if delay > 0:
            return delay
    raise AssertionError(f"still more to do after {max_cycles} cycles")


def delta(server: DevServer, before: collections.Counter[str]) -> collections.Counter[str]:
    """Return the requests the server received since ``before`` (a copy of its counter)."""
    return server.requests - before


# -- fixtures ----------------------------------------------------------------------------------


@pytest.fixture
def start_server(tmp_path: Path) -> Iterator[Callable[..., DevServer]]:
    """Return a function starting a DevServer on ``tmp_path/srv`` (the same data each time)."""
    servers: list[DevServer] = []

    def start(port: int = 0, users: list[Any] = USERS, **kwargs: Any) -> DevServer:
        server = DevServer(tmp_path / "srv", users, port=port, **kwargs).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def server(start_server: Callable[..., DevServer]) -> DevServer:
    return start_server()


@pytest.fixture
def credentials(tmp_path: Path) -> Callable[..., Path]:
    """Return a function writing ``user:password`` to a private file; return its path."""

    def write(line: str = f"alice:{PASSWORD}", path: Path | None = None, mode: int = 0o600) -> Path:
        path = path or tmp_path / "api-credentials"
        path.write_text(line + "\n")
        path.chmod(mode)
        return path

    return write


@pytest.fixture
def make_config(write_config: Callable[..., Path], credentials: Callable[..., Path]) -> Callable[..., Config]:
    """Return a function giving a Config with ``[sync]`` (and optionally ``[retention]``) set:
    ``creds`` names the credentials file (default: alice's, written now); ``systemd=True`` leaves
    the key out (``$CREDENTIALS_DIRECTORY`` then)."""

    def make(
        url: str,
        creds: Path | None = None,
        systemd: bool = False,
        retention: dict[str, Any] | None = None,
        **sync: Any,
    ) -> Config:
        table: dict[str, Any] = {"url": url, "probe_interval": "1s", "backoff_max": f"{BACKOFF_MAX:g}s"}
        if not systemd:
            table["credentials"] = str(creds or credentials())
        tables: dict[str, Any] = {"sync": {**table, **sync}}
        if retention is not None:
            tables["retention"] = retention
        return load_config(write_config(**tables), environ={})

    return make


@pytest.fixture
def make_trap(make_config: Callable[..., Config]) -> Iterator[Callable[..., Trap]]:
    """Return a function building a Trap for a config made by ``make_config``'s arguments."""
    traps: list[Trap] = []

    def make(url: str, **kwargs: Any) -> Trap:
        config = make_config(url, **kwargs)
        trap = Trap(config, Pipeline.build(config))
        traps.append(trap)
        return trap

    yield make
    for trap in traps:
        trap.close()


# -- the normal path ---------------------------------------------------------------------------


def test_first_sync_uploads_every_image_once_and_a_second_sync_sends_nothing(
    server: DevServer, make_trap: Callable[..., Trap]
) -> None:
    trap = make_trap(server.url)
    images = trap.capture(5)
    worker = trap.worker()

    assert drain(worker) == trap.config.sinks[0].probe_interval

    assert server.requests["/_put_new_images"] == 5  # one request per image, no retry
    held = Api(server).all_images()
    assert sorted((r["device"], r["datetime"], r["md5"]) for r in held) == sorted(
        (i.device, api_time(i.datetime), i.md5) for i in images
    )
    assert trap.states() == {"verified": 5}
    published = trap.queue.published()
    assert published["sink.stickypi.reachable"] == "yes" and "sink.stickypi.error" not in published
    last = json.loads(published["sink.stickypi.last"])
    assert (last["images_sent"], last["verified"], last["outcome"]) == (5, 5, "ok")

    # The same worker, again: nothing waits, so it asks the server nothing at all.
    before = collections.Counter(server.requests)
    assert drain(worker) > 0
    assert delta(server, before) == {}
    # A restarted agent (a new worker): a probe (one /get_token, never an empty key list), no upload.
    assert drain(trap.worker()) > 0
    assert delta(server, before) == {"/get_token": 1}
    assert trap.states() == {"verified": 5}


def test_an_image_the_server_already_holds_is_verified_without_upload(
    server: DevServer, make_trap: Callable[..., Trap]
) -> None:
    trap = make_trap(server.url)
    first, second = trap.capture(2)
    api = Api(server)
    assert api.put_image(name_of(first), trap.original(first).read_bytes()).status_code == 200
    before = collections.Counter(server.requests)

    drain(trap.worker())

    assert delta(server, before)["/_put_new_images"] == 1  # only `second`
    assert trap.state(first) == trap.state(second) == ImageState.VERIFIED
    assert len(api.all_images()) == 2


def test_a_conflict_is_never_overwritten_and_is_shown(
    server: DevServer, make_trap: Callable[..., Trap]
) -> None:
    trap = make_trap(server.url)
    a, b = trap.capture(2)
    api = Api(server)
    # The server holds a's (device, datetime) with other bytes: b's, under a's file name.
    b_bytes = trap.original(b).read_bytes()
    assert api.put_image(name_of(a), b_bytes).status_code == 200
    assert api.image(a)["md5"] == b.md5 != a.md5  # type: ignore[index]
    before = collections.Counter(server.requests)

    drain(trap.worker())

    assert delta(server, before)["/_put_new_images"] == 1  # b only: a is never sent
    assert api.original(a) == b_bytes  # never overwritten
    row = trap.row(a)
    assert row.state == ImageState.CONFLICT
    assert a.md5 in (row.last_error or "") and b.md5 in (row.last_error or "")
    assert trap.state(b) == ImageState.VERIFIED
    assert trap.original(a).exists()  # a conflict keeps its original

    cfg = str(trap.config.source)
    status = json.loads(run_stickyctl("--config", cfg, "status", "--json").stdout)
    assert status["queue"]["states"]["conflict"]["count"] == 1
    assert "conflict" in run_stickyctl("--config", cfg, "status").stdout
    listing = run_stickyctl("--config", cfg, "queue", "ls", "--state", "conflict")
    assert listing.returncode == 0, listing.stderr
    line = next(x for x in listing.stdout.splitlines() if name_of(a) in x)
    assert "conflict" in line and a.md5 in line and b.md5 in line


def test_a_lost_upload_answer_is_found_on_the_server_not_sent_again(
    server: DevServer, make_trap: Callable[..., Trap]
) -> None:
    # Requests: 1 get_token (the probe), 2 lookup, 3 the upload: stored, then the connection drops.
    proxy = FaultProxy.for_url(server.url, schedule=scripted(*[Fault.NONE] * 2, Fault.DROP_AFTER))
    with proxy:
        trap = make_trap(proxy.url, parallelism=1)
        (img,) = trap.capture(1)
        worker = trap.worker()
        assert worker.cycle() > 0  # unreachable: back off
        assert trap.state(img) == ImageState.CAPTURED
        assert drain(worker) == 1.0
    assert proxy.faults.count(Fault.DROP_AFTER) == 1
    assert server.requests["/_put_new_images"] == 1  # found by the metadata query, not re-sent
    assert trap.state(img) == ImageState.VERIFIED


# -- accounts, credentials, tokens -------------------------------------------------------------


def test_a_read_only_account_uploads_nothing_and_reports_403(
    server: DevServer, make_trap: Callable[..., Trap], credentials: Callable[..., Path]
) -> None:
    trap = make_trap(server.url, creds=credentials(f"reader:{PASSWORD}"))
    images = trap.capture(3)

    assert drain(trap.worker()) == BACKOFF_MAX

    assert server.requests["/_put_new_images"] >= 1  # tried, refused
    assert Api(server).all_images() == []
    assert trap.states() == {"captured": 3}
    assert all(trap.original(i).exists() for i in images)
    error = trap.queue.published()["sink.stickypi.error"]
    assert "403" in error and "reader" in error and "read-write" in error


def test_a_wrong_password_is_an_auth_error_and_nothing_is_lost(
    server: DevServer, make_trap: Callable[..., Trap], credentials: Callable[..., Path]
) -> None:
    trap = make_trap(server.url, creds=credentials("alice:wrong-password"))
    images = trap.capture(2)

    with pytest.raises(SinkAuthError, match="401"):
        make_sink(trap.config.sinks[0]).probe()
    worker = trap.worker()
    assert drain(worker) == BACKOFF_MAX

    assert "401" in trap.queue.published()["sink.stickypi.error"]
    assert server.requests["/_put_new_images"] == 0
    assert trap.states() == {"captured": 2}
    assert all(trap.original(i).exists() for i in images)

    # An operator fixes the file: the same worker reads it again (no restart), everything goes.
    credentials(f"alice:{PASSWORD}")
    assert drain(worker) == 1.0
    assert trap.states() == {"verified": 2}
    assert "sink.stickypi.error" not in trap.queue.published()


def token_sink(config: Config, clock: Clock, tokens: list[str] | None = None) -> Callable[[], StickyPiSink]:
    """Return a sink factory whose sink reads ``clock`` for token expiry (and records its tokens)."""
    assert config.sinks[0] is not None
    sync = config.sinks[0]

    def factory() -> StickyPiSink:
        sink = StickyPiSink(sync.url, load_credentials(sync), clock=clock)
        if tokens is not None:
            ensure = sink._ensure_token

            def recording(force: bool = False) -> str:
                token = ensure(force)
                if token not in tokens:
                    tokens.append(token)
                return token

            sink._ensure_token = recording  # type: ignore[method-assign]
        return sink

    return factory


def test_the_token_is_renewed_before_it_expires(
    start_server: Callable[..., DevServer], make_trap: Callable[..., Trap]
) -> None:
    clock = Clock()
    server = start_server(clock=clock, token_lifetime=3600)
    trap = make_trap(server.url)
    trap.capture(2)
    tokens: list[str] = []
    worker = trap.worker(sink_factory=token_sink(trap.config, clock, tokens))
    drain(worker)
    assert server.requests["/get_token"] == 1

    trap.capture(2)
    clock.now += 3600 - 30  # still valid for the server, but within the 60 s margin
    before = collections.Counter(server.requests)
    drain(worker)

    sent = delta(server, before)
    assert sent["/get_token"] == 1  # renewed first...
    assert sent["/_put_new_images"] == 2  # ...so no request was refused and repeated
    assert sent["/get_images/metadata"] == 2  # lookup + verify, nothing repeated
    assert len(tokens) == 2
    assert trap.states() == {"verified": 4}


def test_an_expired_token_is_renewed_once_after_a_401(
    start_server: Callable[..., DevServer], make_trap: Callable[..., Trap]
) -> None:
    server_clock, trap_clock = Clock(), Clock()
    server = start_server(clock=server_clock, token_lifetime=3600)
    trap = make_trap(server.url)
    trap.capture(2)
    worker = trap.worker(sink_factory=token_sink(trap.config, trap_clock))
    drain(worker)

    trap.capture(2)
    server_clock.now += 3601  # the token expired, but the trap's clock does not know it
    before = collections.Counter(server.requests)
    drain(worker)

    sent = delta(server, before)
    assert sent["/get_token"] == 1
    assert sent["/get_images/metadata"] == 3  # the first lookup got a 401 and was repeated once
    assert sent["/_put_new_images"] == 2
    assert trap.states() == {"verified": 4}
    assert "sink.stickypi.error" not in trap.queue.published()


def test_credentials_readable_by_others_are_refused(
    server: DevServer, make_trap: Callable[..., Trap], credentials: Callable[..., Path]
) -> None:
    path = credentials(mode=0o644)
    trap = make_trap(server.url, creds=path)
    trap.capture(1)

    with pytest.raises(CredentialsError, match="chmod 600") as caught:
        make_sink(trap.config.sinks[0])
    assert str(path) in str(caught.value) and PASSWORD not in str(caught.value)
    assert trap.worker().cycle() > 0
    assert "chmod 600" in trap.queue.published()["sink.stickypi.error"]
    assert server.requests["/_put_new_images"] == 0 and trap.states() == {"captured": 1}


def test_credentials_come_from_the_systemd_credentials_directory(
    tmp_path: Path, server: DevServer, make_trap: Callable[..., Trap], credentials: Callable[..., Path]
) -> None:
    trap = make_trap(server.url, systemd=True)
    trap.capture(2)
    sync = trap.config.sinks[0]
    assert sync is not None
    with pytest.raises(CredentialsError, match="LoadCredential=sticky-api"):
        make_sink(sync, environ={})
    directory = tmp_path / "systemd-credentials"
    directory.mkdir()
    credentials(path=directory / "sticky-api")

    drain(
        trap.worker(sink_factory=lambda: make_sink(sync, environ={"CREDENTIALS_DIRECTORY": str(directory)}))
    )

    assert trap.states() == {"verified": 2}


def test_neither_password_nor_token_is_logged_or_in_an_error(
    start_server: Callable[..., DevServer],
    make_trap: Callable[..., Trap],
    credentials: Callable[..., Path],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    server_clock, trap_clock = Clock(), Clock()
    server = start_server(clock=server_clock, token_lifetime=3600)
    trap = make_trap(server.url)
    trap.capture(3)
    tokens: list[str] = []
    worker = trap.worker(sink_factory=token_sink(trap.config, trap_clock, tokens))
    drain(worker)  # a full sync
    trap.capture(1)
    server_clock.now += 3601
    drain(worker)  # a 401 on an expired token, renewed
    assert len(tokens) == 2 and trap.states() == {"verified": 4}

    errors: list[str] = []
    credentials("alice:wrong-" + PASSWORD)  # a 401 on the password itself
    with pytest.raises(SinkAuthError) as caught:
        make_sink(trap.config.sinks[0]).probe()
    errors.append(str(caught.value))
    trap.capture(1)
    drain(trap.worker())
    errors.append(trap.queue.published()["sink.stickypi.error"])
    credentials(mode=0o644)
    with pytest.raises(CredentialsError) as refused:
        make_sink(trap.config.sinks[0])
    errors.append(str(refused.value))
    creds = Credentials("alice", PASSWORD)
    errors += [repr(creds), str(creds)]

    logged = [r.getMessage() for r in caplog.records]
    assert any("401" in m for m in logged)  # the failures were logged...
    texts = logged + errors + list(trap.queue.published().values())
    for secret in [PASSWORD, *tokens]:
        assert not [t for t in texts if secret in t]  # ...without a secret


# -- what the agent refuses to send, and what the server refuses to take -----------------------


def test_a_file_corrupted_on_disk_is_quarantined_and_never_uploaded(
    server: DevServer, make_trap: Callable[..., Trap]
) -> None:
    trap = make_trap(server.url)
    good, bad = trap.capture(2)
    path = trap.original(bad)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01  # one bit flipped in the image data
    path.write_bytes(bytes(data))

    drain(trap.worker())

    row = trap.row(bad)
    assert row.state == ImageState.QUARANTINED and "md5" in (row.last_error or "")
    assert trap.state(good) == ImageState.VERIFIED
    assert server.requests["/_put_new_images"] == 1
    assert [r["md5"] for r in Api(server).all_images()] == [good.md5]


def test_a_file_gone_before_upload_is_missing_and_not_sent(
    server: DevServer, make_trap: Callable[..., Trap]
) -> None:
    trap = make_trap(server.url)
    good, gone = trap.capture(2)
    trap.original(gone).unlink()

    drain(trap.worker())

    assert (trap.state(good), trap.state(gone)) == (ImageState.VERIFIED, ImageState.MISSING)
    assert server.requests["/_put_new_images"] == 1


def test_a_file_the_server_keeps_refusing_fails_after_max_attempts_and_retry_requeues_it(
    server: DevServer, make_trap: Callable[..., Trap]
) -> None:
    trap = make_trap(server.url, max_attempts=3)
    others = trap.capture(2)
    bad = trap.add_unparseable_image(dt.datetime(2026, 1, 1, 11, 0, 0, tzinfo=UTC))  # the oldest
    worker = trap.worker()

    assert worker.cycle() == 1.0  # one pass: the others go, the bad one is refused once
    assert [trap.state(i) for i in others] == [ImageState.VERIFIED] * 2
    assert (trap.state(bad), trap.row(bad).attempts) == (ImageState.CAPTURED, 1)
    for _ in range(2):  # the trap captures on; the server takes those, so it is the image
        trap.capture(1)
        worker.cycle()

    row = trap.row(bad)
    assert row.state == ImageState.FAILED and row.attempts == 3
    assert "gave up after 3 tries" in (row.last_error or "") and "500" in (row.last_error or "")
    assert server.requests["/_put_new_images"] == 4 + 3
    before = collections.Counter(server.requests)
    drain(worker)
    assert delta(server, before)["/_put_new_images"] == 0  # the queue moved on
    assert len(Api(server).all_images()) == 4

    retried = run_stickyctl("--config", str(trap.config.source), "retry")
    assert retried.returncode == 0, retried.stderr
    assert "1 failed image(s) re-queued" in retried.stdout
    assert (trap.state(bad), trap.row(bad).attempts) == (ImageState.CAPTURED, 0)
    trap.capture(1)
    worker.cycle()
    assert server.requests["/_put_new_images"] == 7 + 2  # tried again (with a new capture)
    assert trap.row(bad).attempts == 1


def test_a_batch_the_server_refuses_entirely_is_an_outage_counted_against_no_image(
    server: DevServer, make_trap: Callable[..., Trap]
) -> None:
    trap = make_trap(server.url, batch_size=2, max_attempts=3)
    bad = [trap.add_unparseable_image(dt.datetime(2026, 1, 1, 11, m, 0, tzinfo=UTC)) for m in (0, 1)]
    worker = trap.worker()
    # a full batch, every image refused: maybe an outage. Back off, count nothing against them.
    assert 2.5 <= worker.cycle() <= 5.0
    assert [trap.row(b).attempts for b in bad] == [0, 0]
    assert [trap.state(b) for b in bad] == [ImageState.CAPTURED] * 2
    assert "refuses every upload" in trap.queue.published()["sink.stickypi.error"]


def outage(server: DevServer, monkeypatch: pytest.MonkeyPatch) -> Callable[[bool], None]:
    """Return a switch: on, the server answers every upload with its 500 (its storage is down)
    while it still answers metadata queries."""

    def switch(down: bool) -> None:
        if down:
            answer_500(monkeypatch, server.app.store, "put_image", "storage unavailable")
        else:
            monkeypatch.undo()

    return switch


def test_sixty_seconds_of_500s_leave_no_image_failed(
    server: DevServer, make_trap: Callable[..., Trap], monkeypatch: pytest.MonkeyPatch
) -> None:
    trap = make_trap(server.url, batch_size=8, max_attempts=3)
    trap.capture(6)
    worker = trap.worker()
    down = outage(server, monkeypatch)
    down(True)
    elapsed, cycles = 0.0, 0
    while elapsed < 60:  # a minute of outage, the trap capturing on
        trap.capture(1)
        elapsed += worker.cycle()
        cycles += 1
    assert cycles >= 4
    assert trap.states()["failed"] == 0
    assert all(trap.row(r).attempts == 0 for r in trap.queue.images(limit=100))
    # while refusing, a pass sends one canary (the newest image), not the whole batch
    before = collections.Counter(server.requests)
    worker.cycle()
    assert delta(server, before)["/_put_new_images"] == 1

    down(False)
    drain(worker)
    assert set(trap.states()) == {"verified"}
    assert len(Api(server).all_images()) == sum(trap.states().values())
    assert worker.failures == 0 and "sink.stickypi.error" not in trap.queue.published()


def test_images_the_server_refuses_do_not_block_the_queue(
    server: DevServer, make_trap: Callable[..., Trap]
) -> None:
    trap = make_trap(server.url, batch_size=2, max_attempts=2)
    bad = [trap.add_unparseable_image(dt.datetime(2026, 1, 1, 11, m, 0, tzinfo=UTC)) for m in (0, 1)]
    good = trap.capture(3)  # newer than the bad ones, behind them in the queue
    worker = trap.worker()
    for _ in range(12):
        worker.cycle()
        if all(trap.state(g) == ImageState.VERIFIED for g in good):
            break
    assert [trap.state(g) for g in good] == [ImageState.VERIFIED] * 3
    for _ in range(6):
        worker.cycle()
    assert [trap.state(b) for b in bad] == [ImageState.FAILED] * 2  # counted once the server took others


def test_failed_images_get_one_more_try_by_themselves_on_a_slow_schedule(
    server: DevServer, make_trap: Callable[..., Trap]
) -> None:
    trap = make_trap(server.url, max_attempts=2, retry_failed_interval="1h")
    bad = trap.add_unparseable_image(dt.datetime(2026, 1, 1, 11, 0, 0, tzinfo=UTC))
    clock = Clock()
    worker = trap.worker(clock=clock)
    for _ in range(2):
        trap.capture(1)
        worker.cycle()
    assert trap.state(bad) == ImageState.FAILED
    uploads = server.requests["/_put_new_images"]
    clock.now += 3599
    trap.capture(1)
    worker.cycle()
    assert server.requests["/_put_new_images"] == uploads + 1  # the new capture only
    assert trap.state(bad) == ImageState.FAILED

    clock.now += 2  # an hour since the last retry: one more try, by itself
    trap.capture(1)
    worker.cycle()
    assert server.requests["/_put_new_images"] == uploads + 1 + 2
    row = trap.row(bad)
    assert (row.state, row.attempts) == (ImageState.FAILED, 2)  # refused again: failed again at once

    # a restarted agent keeps the schedule (kept in the queue)
    later = trap.worker(clock=clock)
    trap.capture(1)
    later.cycle()
    assert trap.state(bad) == ImageState.FAILED and trap.row(bad).attempts == 2


def test_a_500_is_an_answer_not_unreachable(
    server: DevServer, make_trap: Callable[..., Trap], monkeypatch: pytest.MonkeyPatch
) -> None:
    from agent.errors import SinkRejected

    answer_500(monkeypatch, server.app, "get_token", "database down")
    trap = make_trap(server.url)
    trap.capture(1)
    worker = trap.worker()
    assert 2.5 <= worker.cycle() <= 5.0  # back off
    published = trap.queue.published()
    assert published["sink.stickypi.reachable"] == "yes"
    assert "/get_token: the API answered 500 INTERNAL SERVER ERROR" in published["sink.stickypi.error"]
    assert isinstance(worker.last_error, SinkRejected)
    monkeypatch.undo()
    drain(worker)
    assert trap.states() == {"verified": 1} and worker.last_error is None


# -- annotations -------------------------------------------------------------------------------


def annotation_state(trap: Trap, annotation: Annotation) -> str:
    return sinkview.annotation_state(trap.queue, annotation.id)[0]


def recording_sink(config: Config, routes: list[str]) -> Callable[[], StickyPiSink]:
    """Return a sink factory whose sinks record the route of every request, in order."""
    assert config.sinks[0] is not None
    sync = config.sinks[0]

    def factory() -> StickyPiSink:
        sink = make_sink(sync)
        send = sink._send

        def recording(route: str, auth: tuple[str, str], **kw: Any) -> requests.Response:
            routes.append(route)
            return send(route, auth, **kw)

        sink._send = recording  # type: ignore[method-assign]
        return sink

    return factory


def test_annotations_go_after_their_image_is_verified_and_only_once(
    server: DevServer, make_trap: Callable[..., Trap]
) -> None:
    trap = make_trap(server.url)
    (img,) = trap.capture(1)
    annotation = add_annotation(trap.queue, img.id, ALGO, ALGO_VERSION, OUTLINES)
    assert pending_annotations(trap.queue, "stickypi", 10) == []  # the image is not on the server yet
    routes: list[str] = []

    drain(trap.worker(sink_factory=recording_sink(trap.config, routes)))

    assert routes.count("/_put_new_images") == 1 and routes.count("/put_uid_annotations") == 1
    upload, put = routes.index("/_put_new_images"), routes.index("/put_uid_annotations")
    assert "/get_images/metadata" in routes[upload:put]  # verified before the annotation went
    assert trap.state(img) == ImageState.VERIFIED
    assert annotation_state(trap, annotation) == "uploaded"
    (row,) = Api(server).annotations(img, "data")
    assert (row["algo_name"], row["algo_version"], row["n_objects"]) == (ALGO, ALGO_VERSION, 1)
    body = json.loads(row["json"])
    assert body["metadata"]["md5"] == img.md5
    assert body["annotations"][0]["contour"] == CONTOUR

    before = collections.Counter(server.requests)
    drain(trap.worker())
    sent = delta(server, before)
    assert sent["/put_uid_annotations"] == 0 and sent["/_put_new_images"] == 0
    assert len(Api(server).annotations(img)) == 1


def test_an_annotation_outage_counts_against_no_annotation(
    server: DevServer, make_trap: Callable[..., Trap], monkeypatch: pytest.MonkeyPatch
) -> None:
    trap = make_trap(server.url, max_attempts=2)
    (img,) = trap.capture(1)
    worker = trap.worker()
    drain(worker)  # the image is verified
    annotation = add_annotation(trap.queue, img.id, ALGO, ALGO_VERSION, OUTLINES)

    answer_500(monkeypatch, server.app.store, "put_annotations", "database down")
    for _ in range(5):  # nothing else is accepted meanwhile: an outage, not this annotation
        worker.cycle()
    assert sinkview.annotation_state(trap.queue, annotation.id) == ("pending", 0)
    monkeypatch.undo()
    drain(worker)
    assert annotation_state(trap, annotation) == "uploaded"


def test_an_annotation_the_server_already_holds_is_not_sent(
    server: DevServer, make_trap: Callable[..., Trap]
) -> None:
    trap = make_trap(server.url)
    (img,) = trap.capture(1)
    worker = trap.worker()
    drain(worker)
    api = Api(server)
    assert api.put_annotation(img).status_code == 200
    annotation = add_annotation(trap.queue, img.id, ALGO, ALGO_VERSION, OUTLINES)
    before = collections.Counter(server.requests)

    drain(worker)

    assert delta(server, before)["/put_uid_annotations"] == 0
    assert annotation_state(trap, annotation) == "uploaded"
    assert len(api.annotations(img, "metadata")) == 1


def test_a_duplicate_annotation_500_is_resolved_by_the_metadata_check(
    server: DevServer, make_trap: Callable[..., Trap]
) -> None:
    trap = make_trap(server.url)
    (img,) = trap.capture(1)
    annotation = add_annotation(trap.queue, img.id, ALGO, ALGO_VERSION, OUTLINES)
    api = Api(server)
    assert api.put_image(name_of(img), trap.original(img).read_bytes()).status_code == 200

    def factory() -> StickyPiSink:
        # Someone puts the same triple between the agent's check and its put: the put is a 500.
        sink = make_sink(trap.config.sinks[0])
        put = sink.upload_annotations

        def racing(image: Any, batch: Any) -> None:
            assert api.put_annotation(img).status_code == 200
            put(image, batch)

        sink.upload_annotations = racing  # type: ignore[method-assign]
        return sink

    drain(trap.worker(sink_factory=factory))

    assert server.requests["/put_uid_annotations"] == 2  # ours and the agent's refused one
    assert annotation_state(trap, annotation) == "uploaded"
    assert sinkview.annotation_state(trap.queue, annotation.id)[1] == 0
    assert len(api.annotations(img, "metadata")) == 1


# -- retention ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "policy", [{"keep_days": 0}, {"max_data_gb": 1e-9}], ids=["keep_days", "max_data_gb"]
)
def test_retention_deletes_only_verified_originals(
    server: DevServer, make_trap: Callable[..., Trap], policy: dict[str, Any]
) -> None:
    trap = make_trap(server.url, retention=policy, batch_size=2)
    images = trap.capture(3)

    assert trap.worker().cycle() == 0.0  # one pass of a full batch: the two oldest

    synced, waiting = images[:2], images[2]
    for img in synced:
        assert trap.state(img) == ImageState.EVICTED
        assert not trap.original(img).exists()
        assert all(t.exists() for t in trap.thumbnails(img))
    assert trap.state(waiting) == ImageState.CAPTURED and trap.original(waiting).exists()
    assert len(Api(server).all_images()) == 2

    # Retention by itself never touches an unsynced original either.
    report = enforce(trap.config.retention, trap.queue, trap.data_dir, trap.config.sinks)
    assert report.evicted == [] and trap.original(waiting).exists()


def test_retention_deletes_nothing_while_the_server_is_unreachable(
    server: DevServer, make_trap: Callable[..., Trap], make_config: Callable[..., Config]
) -> None:
    trap = make_trap(server.url)
    images = trap.capture(3)
    drain(trap.worker())
    assert trap.states() == {"verified": 3}

    offline = make_config(f"http://127.0.0.1:{free_port()}", retention={"keep_days": 0})
    assert trap.worker(offline).cycle() > 0
    assert trap.queue.published()["sink.stickypi.reachable"] == "no"
    assert trap.states() == {"verified": 3}
    assert all(trap.original(i).exists() for i in images)

    online = make_config(server.url, retention={"keep_days": 0})
    drain(trap.worker(online))
    assert trap.states() == {"evicted": 3}
    assert not any(trap.original(i).exists() for i in images)
    assert server.requests["/_put_new_images"] == 3


# -- offline, back off, come back --------------------------------------------------------------


def test_backoff_delay_is_exponential_with_jitter_capped_and_honours_retry_after() -> None:
    rng = random.Random(1)
    for failures in range(1, 12):
        ceiling = min(BACKOFF_MAX, 5.0 * 2 ** (failures - 1))
        delays = [backoff_delay(failures, BACKOFF_MAX, rng) for _ in range(200)]
        assert all(ceiling / 2 <= d <= ceiling for d in delays)
        assert len(set(delays)) > 100  # jittered
    assert backoff_delay(1, BACKOFF_MAX, rng, retry_after=45.0) == 45.0
    assert backoff_delay(10, BACKOFF_MAX, rng, retry_after=600.0) == 600.0  # the server knows best
    assert 2.5 <= backoff_delay(1, BACKOFF_MAX, rng, retry_after=0.5) <= 5.0


def test_offline_for_long_then_back_drains_the_backlog_by_itself(
    start_server: Callable[..., DevServer], make_trap: Callable[..., Trap]
) -> None:
    port = free_port()
    server = start_server(port=port)
    trap = make_trap(server.url)
    trap.capture(2)
    worker = trap.worker()
    drain(worker)
    server.stop()  # the link goes down

    delays = []
    for _ in range(8):
        trap.capture(2)  # the trap keeps capturing
        delays.append(worker.cycle())
    # 5, 10, 20, 40 s ceilings with "equal jitter" (each delay in [ceiling/2, ceiling]), then the cap.
    assert delays[:4] == sorted(delays[:4]) and delays[3] > 4 * delays[0]
    assert 2.5 <= delays[0] <= 5.0
    assert all(BACKOFF_MAX / 2 <= d <= BACKOFF_MAX for d in delays[4:])
    assert trap.queue.published()["sink.stickypi.reachable"] == "no"
    assert "127.0.0.1" in trap.queue.published()["sink.stickypi.error"]
    assert trap.states() == {"verified": 2, "captured": 16}  # nothing lost

    back = start_server(port=port)  # the link is back, same server
    assert drain(worker) == 1.0  # no manual step
    assert trap.states() == {"verified": 18}
    assert back.requests["/_put_new_images"] == 16
    assert len(Api(back).all_images()) == 18
    assert trap.queue.published()["sink.stickypi.reachable"] == "yes"
    assert worker.failures == 0


# -- metered links -----------------------------------------------------------------------------


def test_uploads_under_a_bandwidth_cap_succeed(server: DevServer, make_trap: Callable[..., Trap]) -> None:
    trap = make_trap(server.url, bandwidth_kbps=200)  # 25 kB/s, 25 kB of burst
    images = trap.capture(3)
    worker = trap.worker()
    assert worker.bandwidth is not None
    taken: list[int] = []
    take = worker.bandwidth.take

    def counting(n: int) -> None:
        taken.append(n)
        take(n)

    worker.bandwidth.take = counting  # type: ignore[method-assign]
    started = time.monotonic()
    drain(worker)
    elapsed = time.monotonic() - started

    assert trap.states() == {"verified": 3}
    total = sum(i.size for i in images)
    assert sum(taken) > total and max(taken) <= 16384  # every body byte went through the bucket
    assert elapsed >= (sum(taken) - 25_000) / 25_000 - 0.05  # the cap held
    assert elapsed < 5


def test_the_bandwidth_bucket_waits_for_its_tokens() -> None:
    clock = Clock(100.0)
    bucket = Bandwidth(80, clock=clock, sleep=clock.sleep)  # 10,000 B/s, 10,000 B of burst
    bucket.take(10_000)
    assert clock.sleeps == []  # the burst is free
    bucket.take(5_000)
    assert 0.5 <= clock.now - 100.0 <= 0.56  # then 10,000 B/s
    clock.now += 3600  # idle: the bucket refills to its capacity, no more
    clock.sleeps.clear()
    bucket.take(10_000)
    assert clock.sleeps == []
    bucket.take(1)
    assert clock.sleeps != []


def test_a_daily_budget_stops_uploads_and_is_kept_in_the_queue(
    server: DevServer, make_trap: Callable[..., Trap], make_config: Callable[..., Config]
) -> None:
    probe = make_trap(server.url)
    images = probe.capture(3)
    sizes = [i.size for i in images]
    limit_mb = (sizes[0] + sizes[1] // 2) / 1e6  # one image fits, not two
    config = make_config(server.url, daily_budget_mb=limit_mb, parallelism=1)

    worker = probe.worker(config)
    assert worker.cycle() == 1.0

    assert probe.state(images[0]) == ImageState.VERIFIED
    assert [probe.state(i) for i in images[1:]] == [ImageState.CAPTURED] * 2
    assert "budget" in probe.queue.published()["sink.stickypi.error"]
    assert server.requests["/_put_new_images"] == 1
    assert DailyBudget(probe.queue, limit_mb).used() == sizes[0]  # persisted
    assert DailyBudget(probe.queue, limit_mb).remaining() == int(limit_mb * 1e6) - sizes[0]
    worker.cycle()
    assert server.requests["/_put_new_images"] == 1  # still spent

    # A restarted agent reads what today already used; tomorrow starts afresh.
    restarted = probe.worker(config)
    assert restarted.budget.used() == sizes[0]
    assert restarted.cycle() == 1.0
    assert server.requests["/_put_new_images"] == 1
    tomorrow = dt.datetime.now(UTC) + dt.timedelta(days=1)
    assert DailyBudget(probe.queue, limit_mb, now=lambda: tomorrow).used() == 0


def test_parallel_uploads_do_not_overshoot_the_daily_budget(
    server: DevServer, make_trap: Callable[..., Trap], make_config: Callable[..., Config]
) -> None:
    trap = make_trap(server.url)
    images = trap.capture(2)
    limit_mb = (images[0].size + images[1].size // 2) / 1e6  # one image fits, not two
    config = make_config(server.url, daily_budget_mb=limit_mb, parallelism=2)
    sync = config.sinks[0]
    assert sync is not None
    both_checked = threading.Barrier(2)

    def factory() -> StickyPiSink:
        sink = make_sink(sync)
        upload = sink.upload_image

        def together(*args: Any, **kwargs: Any) -> None:
            with contextlib.suppress(threading.BrokenBarrierError):
                both_checked.wait(timeout=2)  # both threads are past the budget check
            upload(*args, **kwargs)

        sink.upload_image = together  # type: ignore[method-assign]
        return sink

    trap.worker(config, sink_factory=factory).cycle()

    assert server.requests["/_put_new_images"] == 1


# -- what status says about sync ---------------------------------------------------------------


def test_status_never_shows_a_stale_reachable_as_current(
    server: DevServer, make_trap: Callable[..., Trap]
) -> None:
    from agent.status import collect_status, format_status

    trap = make_trap(server.url, max_attempts=1)
    trap.capture(1)
    trap.add_unparseable_image(dt.datetime(2026, 1, 1, 11, 0, 0, tzinfo=UTC))
    drain(trap.worker())
    later = dt.datetime.now(UTC) + dt.timedelta(hours=3)
    data = collect_status(trap.config, now=later)
    assert data["agent"]["running"] is False
    text = format_status(data)
    flat = " ".join(text.split())  # long lines wrap under their label
    assert "agent not running; reachable at the last check, 3 h ago" in flat
    assert "reachable since" not in text
    assert "failed images   1: one more try by themselves, next when the agent runs" in text
    assert data["sync"]["failed"] == 1 and data["sync"]["next_failed_retry"] is not None

    # the same data from a running agent: current state, and when the failed image is tried again
    data["agent"]["running"] = True
    text = format_status(data)
    assert f"api             {server.url} reachable since" in text
    assert "failed images   1: one more try by themselves, next" in text


def test_status_says_the_server_answered_with_an_error(
    server: DevServer, make_trap: Callable[..., Trap], monkeypatch: pytest.MonkeyPatch
) -> None:
    from agent.status import collect_status, format_status

    answer_500(monkeypatch, server.app, "get_token", "database down")
    trap = make_trap(server.url)
    trap.capture(1)
    trap.worker().cycle()
    data = collect_status(trap.config)
    data["agent"]["running"] = True
    text = format_status(data)
    assert f"{server.url} answers, with an error since" in text
    assert "sync problem    /get_token: the API answered 500 INTERNAL SERVER ERROR" in text
    data["agent"]["running"] = False
    text = format_status(data)
    assert "agent not running; answers, with an error at the last check, " in " ".join(text.split())
    assert "last problem    /get_token: the API answered 500" in text


def test_each_pass_is_logged_with_counts_bytes_rate_and_what_remains(
    server: DevServer, make_trap: Callable[..., Trap], caplog: pytest.LogCaptureFixture
) -> None:
    trap = make_trap(server.url, batch_size=2)
    images = trap.capture(3)
    size = sum(i.size for i in images[:2]) / 1e6
    caplog.set_level(logging.INFO, logger="agent.sinks.worker")
    drain(trap.worker())
    passes = [r.getMessage() for r in caplog.records if r.getMessage().startswith("sync pass to stickypi:")]
    assert len(passes) == 2
    assert passes[0].startswith(f"sync pass to stickypi: 2 image(s) sent ({size:.1f} MB, ")
    assert "MB/s), 2 verified, 0 annotation(s) sent, 0 refused; 1 image(s) (" in passes[0]
    assert passes[1].endswith("; 0 image(s) (0.0 MB) waiting")


def test_sixty_seconds_of_500s_on_every_route_leave_no_image_failed(
    server: DevServer, make_trap: Callable[..., Trap]
) -> None:
    down = threading.Event()

    def schedule(n: int) -> Fault:
        return Fault.HTTP_500 if down.is_set() else Fault.NONE

    with FaultProxy.for_url(server.url, schedule=schedule) as proxy:
        trap = make_trap(proxy.url, max_attempts=2)
        trap.capture(3)
        worker = trap.worker()
        drain(worker)
        down.set()
        elapsed = 0.0
        while elapsed < 60:
            trap.capture(1)
            elapsed += worker.cycle()
        published = trap.queue.published()
        assert published["sink.stickypi.reachable"] == "yes"  # a 500 is an answer
        assert "500" in published["sink.stickypi.error"]
        assert trap.states()["failed"] == 0
        down.clear()
        drain(worker)
    assert set(trap.states()) == {"verified"}
    assert len(Api(server).all_images()) == sum(trap.states().values())
