"""The Sticky Pi API client against a hostile server (issue 9, items 3, 5, 8, 9 and 12).

A :class:`HostileServer` on 127.0.0.1 answers what each test tells it: bodies that are not JSON,
JSON of the wrong shape, redirects to another host, huge and slow bodies, tokens already
expired. Every bad answer must end as one typed error (``SinkProtocolError``, a kind of
``SinkUnreachable``: back off, probe again, count no image as refused), in one line that names
the route and holds neither the body nor a secret; no worker thread may die of anything.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import logging
import os
import random
import resource
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import REPO, run_stickyctl
from helpers.hostile_server import (
    BODY_MARKER,
    Answer,
    HostileServer,
    dribble,
    dribble_headers,
    huge_answer,
    json_answer,
    raw_answer,
    redirect,
    stall,
)
from pydantic import ValidationError

from agent.background import BackgroundWorker
from agent.config import Config, load_config
from agent.errors import ConfigError, CredentialsError, SinkProtocolError, SinkUnreachable, SyncError
from agent.service import Pipeline
from agent.sinks import answers
from agent.sinks.base import ImageRecord
from agent.sinks.credentials import Credentials, load_credentials
from agent.sinks.stickypi import StickyPiSettings, StickyPiSink, make_sink
from agent.sinks.worker import SyncWorker

PASSWORD = "pw-Hunter2-s3cret"
CREDS = Credentials("alice", PASSWORD)
KEY = ("0a1b2c3d", dt.datetime(2026, 1, 1, 12, 0, tzinfo=dt.UTC))


def record(folder: Path) -> ImageRecord:
    """Return KEY's image as a sink sees it (a tiny stand-in file)."""
    path = folder / "0a1b2c3d.2026-01-01_12-00-00.jpg"
    return ImageRecord(KEY, path, "0" * 32, 6, 2592, 1944)


METADATA = "/get_images/metadata"
CAP = 1 << 20  # the answer limit of the sinks under test: 1 MiB


@pytest.fixture
def server() -> Iterator[HostileServer]:
    with HostileServer() as srv:
        yield srv


@pytest.fixture
def sink(server: HostileServer) -> Iterator[StickyPiSink]:
    s = StickyPiSink(server.url, CREDS, connect_timeout=2, read_timeout=5, max_answer_bytes=CAP)
    yield s
    s.close()


def html(text: str) -> Answer:
    return raw_answer(f"<!doctype html><title>Login</title><p>{BODY_MARKER} {text}".encode())


def row(**fields: Any) -> dict[str, Any]:
    """An image row of the metadata answer with ``fields`` changed (None: left out)."""
    good = {"device": KEY[0], "datetime": "2026-01-01T12:00:00Z", "md5": "0" * 32, "id": 1}
    return {k: v for k, v in {**good, **fields}.items() if v is not None}


def with_length(value: str) -> Answer:
    """``[]`` with a ``Content-Length`` header of ``value``, the connection closed after it."""
    return Answer(200, {"Content-Length": value}, lambda: [b"[]"], length=False)


# -- every bad answer is one typed, clean error (item 3) -------------------------------------

BAD_ANSWERS: dict[str, tuple[str, Answer]] = {
    "token: a 200 with an HTML body (a captive portal)": ("/get_token", html("please log in")),
    "token: {'tok': 1}": ("/get_token", json_answer({"tok": 1, "note": BODY_MARKER})),
    "token: a list": ("/get_token", json_answer([BODY_MARKER])),
    "token: expiration unparsable": ("/get_token", json_answer({"token": "t", "expiration": BODY_MARKER})),
    "token: expiration NaN": ("/get_token", raw_answer(b'{"token": "t", "expiration": NaN}', 200, "x")),
    "token: expiration true": ("/get_token", json_answer({"token": "t", "expiration": True})),
    "token: not Latin-1": ("/get_token", json_answer({"token": "токен", "expiration": 2e9})),
    "token: with a colon": ("/get_token", json_answer({"token": "a:b", "expiration": 2e9})),
    "token: not UTF-8": ("/get_token", raw_answer(b'{"token": "\xff\xfe", "expiration": 2e9}')),
    "metadata: a dict": (METADATA, json_answer({"device": "0a1b2c3d", "md5": BODY_MARKER})),
    "metadata: rows without md5": (METADATA, json_answer([row(md5=None)])),
    "metadata: [null]": (METADATA, json_answer([None])),
    "metadata: a bad datetime": (METADATA, json_answer([row(datetime=BODY_MARKER)])),
    "metadata: md5 a number": (METADATA, json_answer([row(md5=5)])),
    "metadata: md5 not hex": (METADATA, json_answer([row(md5=BODY_MARKER)])),
    "metadata: id a string": (METADATA, json_answer([row(id=BODY_MARKER)])),
    "metadata: device a list": (METADATA, json_answer([row(device=[BODY_MARKER])])),
    "metadata: HTML": (METADATA, html("oops")),
    "metadata: nested 100000 deep": (METADATA, raw_answer(b"[" * 100_000 + b"]" * 100_000, 200, "x")),
    "metadata: a 304": (METADATA, Answer(304, {}, lambda: [b""])),
    "metadata: redirect to a bad URL": (METADATA, redirect("http://[" + BODY_MARKER)),
    "metadata: Content-Length '²'": (METADATA, with_length("\xb2")),
    "metadata: two Content-Lengths": (METADATA, with_length("2, 2")),
}  # fmt: skip


@pytest.mark.parametrize("route, answer", BAD_ANSWERS.values(), ids=BAD_ANSWERS.keys())
def test_a_bad_answer_is_one_clean_protocol_error(
    server: HostileServer, sink: StickyPiSink, route: str, answer: Answer
) -> None:
    server.serve(route, answer)
    with pytest.raises(SinkProtocolError) as caught:
        sink.lookup_keys([KEY])
    message = str(caught.value)
    assert message.startswith(route), message
    assert "\n" not in message and len(message) < 200
    assert BODY_MARKER not in message and PASSWORD not in message and "hostile-token" not in message
    assert isinstance(caught.value, SinkUnreachable)  # back off and probe: no image counted


def test_good_rows_are_read_and_an_md5_in_upper_case_is_the_same_md5(
    server: HostileServer, sink: StickyPiSink
) -> None:
    md5 = "ABCDEF0123456789ABCDEF0123456789"
    server.serve(
        METADATA, json_answer([{"device": KEY[0], "datetime": "2026-01-01T12:00:00Z", "md5": md5, "id": 7}])
    )
    (held,) = sink.lookup_keys([KEY]).values()
    assert (held.md5, held.remote_id) == (md5.lower(), 7)


# -- redirects (item 9) -------------------------------------------------------------------------


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_a_redirect_to_another_host_is_a_protocol_error_and_nothing_goes_there(
    server: HostileServer, sink: StickyPiSink, status: int, tmp_path: Path
) -> None:
    with HostileServer() as elsewhere:
        server.serve("/_put_new_images", redirect(elsewhere.url + "/_put_new_images", status))
        with pytest.raises(SinkProtocolError, match=rf"redirect \({status}\) to http://127.0.0.1"):
            sink.upload_image(record(tmp_path), b"\xff\xd8jpeg")
        assert sum(elsewhere.requests.values()) == 0
    assert server.requests["/_put_new_images"] == 1


# -- huge and slow answers (item 8) -------------------------------------------------------------


def test_a_huge_answer_is_cut_at_the_limit_not_read_into_memory(
    server: HostileServer, sink: StickyPiSink
) -> None:
    server.serve(METADATA, huge_answer(600 * 2**20))  # 600 MB, no Content-Length
    with pytest.raises(SinkProtocolError, match="over the 1048576-byte limit"):
        sink.lookup_keys([KEY])
    # The client hung up after the limit: the server could not push much more into the socket.
    assert server.bytes_sent[METADATA] < CAP + 16 * 2**20


def test_a_huge_declared_length_is_refused_before_reading(server: HostileServer, sink: StickyPiSink) -> None:
    server.serve(METADATA, huge_answer(600 * 2**20, declare_length=True))
    with pytest.raises(SinkProtocolError, match="over the 1048576-byte limit"):
        sink.lookup_keys([KEY])
    assert server.bytes_sent[METADATA] < CAP + 16 * 2**20


def test_the_default_limit_is_a_few_megabytes() -> None:
    sink = StickyPiSink("https://api.example.org", CREDS)
    assert 2**20 <= sink.http.max_answer_bytes <= 16 * 2**20


def test_an_answer_dribbled_slower_than_the_read_timeout_allows_is_abandoned(server: HostileServer) -> None:
    # One byte every 50 ms never trips the socket's read timeout (1 s), but the whole answer
    # (120 s at that pace) must not take longer than it.
    server.serve(METADATA, dribble(b"[" + b" " * 2400 + b"]", every=0.05))
    sink = StickyPiSink(server.url, CREDS, connect_timeout=1, read_timeout=1)
    t0 = time.monotonic()
    with pytest.raises(SinkUnreachable, match="took over 1s"):
        sink.lookup_keys([KEY])
    assert time.monotonic() - t0 < 5


def test_no_answer_at_all_is_unreachable_after_the_read_timeout(server: HostileServer) -> None:
    server.serve(METADATA, stall())
    sink = StickyPiSink(server.url, CREDS, connect_timeout=1, read_timeout=0.5)
    with pytest.raises(SinkUnreachable) as caught:
        sink.lookup_keys([KEY])
    assert not isinstance(caught.value, SinkProtocolError)


def in_thread(call: Callable[[], object]) -> tuple[threading.Thread, list[BaseException]]:
    """Start ``call`` in a daemon thread; return it and the list its exception goes to."""
    errors: list[BaseException] = []

    def run() -> None:
        try:
            call()
        except BaseException as e:
            errors.append(e)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, errors


def test_headers_dribbled_forever_are_abandoned_after_the_read_timeout(server: HostileServer) -> None:
    server.serve(METADATA, dribble_headers(every=0.05))
    sink = StickyPiSink(server.url, CREDS, connect_timeout=1, read_timeout=1)
    t0 = time.monotonic()
    thread, errors = in_thread(lambda: sink.lookup_keys([KEY]))
    thread.join(10)
    assert not thread.is_alive(), "still reading headers after 10 s"
    assert time.monotonic() - t0 < 5
    assert len(errors) == 1 and isinstance(errors[0], SinkUnreachable)
    assert "took over 1s" in str(errors[0])


@pytest.mark.parametrize(
    "answer, started",
    [(stall(), "received"), (dribble(b"[" + b" " * 100_000 + b"]", every=0.01, piece=100), "sending")],
    ids=["waiting-for-the-answer", "reading-a-slow-body"],  # the body would take ~10 s
)
def test_closing_the_sink_stops_a_request_in_flight_at_once(
    server: HostileServer, answer: Answer, started: str
) -> None:
    """What a SIGTERM does through SyncWorker.stop: no wait for the answer or the rest of it."""
    server.serve(METADATA, answer)
    sink = StickyPiSink(server.url, CREDS, connect_timeout=1, read_timeout=60)
    thread, errors = in_thread(lambda: sink.lookup_keys([KEY]))
    assert getattr(server, started).wait(10)
    t0 = time.monotonic()
    sink.close()
    thread.join(10)
    assert not thread.is_alive() and time.monotonic() - t0 < 2
    assert len(errors) == 1 and isinstance(errors[0], SinkUnreachable)
    assert "stopping" in str(errors[0])


def test_a_sync_worker_stop_ends_a_slow_answer_at_once(
    server: HostileServer, config_for: Callable[..., Config]
) -> None:
    config = config_for(server.url)
    pipeline = Pipeline.build(config)
    try:
        assert pipeline.capturer.capture().ok
        server.serve(METADATA, dribble(b"[" + b" " * 100_000 + b"]", every=0.01, piece=100))
        sync = config.sinks[0]
        worker = SyncWorker(config, pipeline.queue, lambda: make_sink(sync))
        worker.start()
        assert server.sending.wait(10)
        t0 = time.monotonic()
        assert worker.stop(timeout=5)
        assert time.monotonic() - t0 < 2
    finally:
        pipeline.close()


# -- tokens (item 12) ---------------------------------------------------------------------------


def test_a_token_already_expired_by_our_clock_is_fetched_once_not_before_every_request(
    server: HostileServer, sink: StickyPiSink, caplog: pytest.LogCaptureFixture
) -> None:
    server.serve("/get_token", json_answer({"token": "old-token", "expiration": int(time.time()) - 86400}))
    with caplog.at_level(logging.WARNING):
        for _ in range(25):
            sink.lookup_keys([KEY])
    assert server.requests["/get_token"] == 1
    assert server.requests[METADATA] == 25
    assert sum("is the clock right?" in r.getMessage() for r in caplog.records) == 1


def test_a_401_still_renews_a_token_taken_despite_the_clock(
    server: HostileServer, sink: StickyPiSink
) -> None:
    server.serve("/get_token", json_answer({"token": "old-token", "expiration": 1}))
    server.serve(METADATA, json_answer([]), raw_answer(b"Unauthorized Access", 401), json_answer([]))
    sink.lookup_keys([KEY])
    sink.lookup_keys([KEY])
    assert server.requests["/get_token"] == 2


def test_credentials_outside_latin1_go_as_utf8_basic_auth(server: HostileServer) -> None:
    sink = StickyPiSink(server.url, Credentials("jürgen", "пароль-密码"), connect_timeout=1, read_timeout=5)
    sink.lookup_keys([KEY])
    first = server.authorizations[0]
    assert base64.b64decode(first.removeprefix("Basic ")).decode("utf-8") == "jürgen:пароль-密码"


# -- configuration the sink cannot use: typed errors (item 3) ---------------------------------


@pytest.mark.parametrize("timeout", [0.0, -1.0, float("nan"), float("inf")])
def test_an_unusable_timeout_is_a_config_error(timeout: float) -> None:
    with pytest.raises(ConfigError, match="read_timeout: must be a positive number"):
        StickyPiSink("https://api.example.org", CREDS, read_timeout=timeout)


def test_a_missing_or_broken_ca_bundle_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"ca_bundle: cannot use .*No such file"):
        StickyPiSink("https://api.example.org", CREDS, ca_bundle=tmp_path / "missing.pem")
    junk = tmp_path / "junk.pem"
    junk.write_text(f"{BODY_MARKER}\n")
    with pytest.raises(ConfigError, match="not a PEM bundle") as caught:
        StickyPiSink("https://api.example.org", CREDS, ca_bundle=junk)
    assert BODY_MARKER not in str(caught.value)


# -- credentials files that are not files (item 12) -------------------------------------------


def sync_config(path: Path) -> StickyPiSettings:
    return StickyPiSettings(name="stickypi", type="stickypi", url="https://api.example.org", credentials=path)


def test_non_utf8_credentials_are_a_credentials_error(tmp_path: Path) -> None:
    path = tmp_path / "creds"
    path.write_bytes(b"alice:\xff\xfe" + PASSWORD.encode() + b"\n")
    path.chmod(0o600)
    with pytest.raises(CredentialsError, match="is not UTF-8 text") as caught:
        load_credentials(sync_config(path))
    assert PASSWORD not in str(caught.value)


def test_credentials_with_a_byte_order_mark_are_read(tmp_path: Path) -> None:
    path = tmp_path / "creds"
    path.write_bytes(b"\xef\xbb\xbfalice:" + PASSWORD.encode() + b"\r\n")
    path.chmod(0o600)
    assert load_credentials(sync_config(path)) == CREDS


def test_a_fifo_as_credentials_file_is_refused_without_hanging(tmp_path: Path) -> None:
    fifo = tmp_path / "creds"
    os.mkfifo(fifo, 0o600)
    outcome: list[BaseException | Credentials] = []

    def load() -> None:
        try:
            outcome.append(load_credentials(sync_config(fifo)))
        except BaseException as e:
            outcome.append(e)

    loader = threading.Thread(target=load, daemon=True)
    loader.start()
    loader.join(10)
    if loader.is_alive():  # hung in open(): release it before failing
        fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
        os.close(fd)
        loader.join(10)
        pytest.fail("loading credentials from a FIFO hung")
    assert len(outcome) == 1 and isinstance(outcome[0], CredentialsError)
    assert "not a regular file" in str(outcome[0])


def test_dev_zero_as_credentials_file_is_refused_without_reading_forever() -> None:
    # In a child process with 1 GB of address space: reading /dev/zero to its end must not be tried.
    code = (
        "import resource, sys\n"
        "resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))\n"
        "from pathlib import Path\n"
        "from agent.sinks.stickypi import StickyPiSettings\n"
        "from agent.errors import CredentialsError\n"
        "from agent.sinks.credentials import load_credentials\n"
        "try:\n"
        "    load_credentials(StickyPiSettings(\n"
        "        name='a', type='stickypi', url='https://a.example', credentials=Path('/dev/zero')))\n"
        "except CredentialsError as e:\n"
        "    print(e)\n"
    )
    assert resource.RLIMIT_AS  # Linux
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=REPO)
    assert done.returncode == 0, done.stderr[-500:]
    assert done.stdout.strip() == "the credentials file /dev/zero is not a regular file"


# -- the sync URL (item 5) ----------------------------------------------------------------------

GOOD_URLS = {
    "https://api.example.org": "https://api.example.org",
    "https://api.example.org/": "https://api.example.org",
    "https://lab.example.org:8443/sticky-api": "https://lab.example.org:8443/sticky-api",
    "http://127.0.0.1:8765": "http://127.0.0.1:8765",
    "http://localhost:8080/": "http://localhost:8080",
    "http://[::1]:8080": "http://[::1]:8080",
}
BAD_URLS = {
    "http://api.example.org": "plain http:// is allowed only to this machine",
    "http://192.168.1.10:8080": "plain http:// is allowed only to this machine",
    "http://u:p@host/junk": "must not hold a user or password",
    "https://u:p@api.example.org": "must not hold a user or password",
    "https://api.example.org\n": "without spaces or control characters",
    "https://api.example.org/a b": "without spaces or control characters",
    "https://api.example.org?next=x": "must not have a query or fragment",
    "https://api.example.org/#x": "must not have a query or fragment",
    "https://api.example.org:99999": "with a port from 1 to 65535",
    "https://api.example.org/../admin": "must have a plain path",
    "ftp://api.example.org": "must be an http",
    "https://": "must be an http",
}


@pytest.mark.parametrize("url, expected", GOOD_URLS.items())
def test_a_sync_url_is_accepted(url: str, expected: str) -> None:
    assert StickyPiSettings(name="a", type="stickypi", url=url).url == expected


@pytest.mark.parametrize("url, why", BAD_URLS.items())
def test_a_sync_url_is_refused_with_why(url: str, why: str) -> None:
    with pytest.raises(ValidationError) as caught:
        StickyPiSettings(name="a", type="stickypi", url=url)
    (error,) = caught.value.errors()
    message = str(error["msg"])  # what `config check` prints after the key path
    assert why in message
    assert "u:p@" not in message and "\n" not in message  # a password in a URL is not echoed


# -- no worker thread dies (item 3) ---------------------------------------------------------------


class Flaky(BackgroundWorker):
    """A worker whose cycles raise what the test queues, then record that they ran."""

    thread_name = "flaky"

    def __init__(self, *failures: BaseException) -> None:
        super().__init__()
        self.failures = list(failures)
        self.calls = 0
        self.ran_ok = threading.Event()

    def cycle(self) -> float:
        self.calls += 1
        if self.failures:
            raise self.failures.pop(0)
        self.ran_ok.set()
        return 3600.0


def test_an_unexpected_exception_does_not_kill_a_worker_thread() -> None:
    worker = Flaky(KeyError("md5"))
    worker.start()
    try:
        deadline = time.monotonic() + 10
        while not worker.ran_ok.is_set() and time.monotonic() < deadline:
            worker.wake()  # cut the backoff short
            worker.ran_ok.wait(0.05)
        assert worker.ran_ok.is_set() and worker.alive
        assert worker.calls == 2
    finally:
        worker.stop()


def test_unexpected_failures_back_off_exponentially_and_log_one_line_each(
    caplog: pytest.LogCaptureFixture,
) -> None:
    worker = Flaky(*(TypeError(f"boom {i}") for i in range(10)))
    with caplog.at_level(logging.INFO, logger="agent.background"):
        delays = [worker.run_cycle() for _ in range(11)]
    assert delays == [5.0, 10.0, 20.0, 40.0, 80.0, 160.0, 320.0, 640.0, 900.0, 900.0, 3600.0]
    lines = [r for r in caplog.records if r.levelno >= logging.INFO]
    assert len(lines) == 10
    assert all(r.exc_info is None and "\n" not in r.getMessage() for r in lines)
    assert "TypeError: boom 0" in lines[0].getMessage()
    assert worker.crashes == 0 and worker.last_crash is None  # the 11th cycle returned


def test_the_traceback_is_logged_at_debug_level(caplog: pytest.LogCaptureFixture) -> None:
    worker = Flaky(ValueError("x"))
    with caplog.at_level(logging.DEBUG, logger="agent.background"):
        worker.run_cycle()
    assert any(r.exc_info is not None and r.levelno == logging.DEBUG for r in caplog.records)


# -- the sync worker against the hostile server -------------------------------------------------


@pytest.fixture
def config_for(write_config: Callable[..., Path], tmp_path: Path) -> Callable[..., Config]:
    def make(url: str, **sync: Any) -> Config:
        creds = tmp_path / "creds"
        creds.write_text(f"alice:{PASSWORD}\n")
        creds.chmod(0o600)
        table = {"url": url, "credentials": str(creds), "probe_interval": "1s", "backoff_max": "60s", **sync}
        return load_config(write_config(sync=table), environ={})

    return make


@pytest.mark.parametrize(
    "route, answer",
    [BAD_ANSWERS["token: {'tok': 1}"], BAD_ANSWERS["metadata: [null]"], BAD_ANSWERS["metadata: a dict"]],
    ids=["tok", "null-row", "dict"],
)
def test_the_sync_worker_backs_off_on_a_bad_answer_and_counts_no_image(
    server: HostileServer, config_for: Callable[..., Config], route: str, answer: Answer
) -> None:
    config = config_for(server.url)
    pipeline = Pipeline.build(config)
    try:
        assert pipeline.capturer.capture().ok
        sync = config.sinks[0]
        worker = SyncWorker(config, pipeline.queue, lambda: make_sink(sync))
        server.serve(route, answer)
        first, second = worker.run_cycle(), worker.run_cycle()
        assert worker.crashes == 0  # handled by the sync worker itself, not the safety net
        assert 0 < first < second  # exponential backoff
        assert worker.reachable is False
        error = pipeline.queue.published()["sink.stickypi.error"]
        assert error.startswith(route) and BODY_MARKER not in error
        assert [img.state for img in pipeline.queue.images(limit=10)] == ["captured"]
        assert server.requests["/_put_new_images"] == 0
    finally:
        pipeline.close()


def test_one_shot_sync_prints_one_error_line_not_a_traceback(
    server: HostileServer, config_for: Callable[..., Config], tmp_path: Path
) -> None:
    config = config_for(server.url)
    Pipeline.build(config).close()  # the queue exists
    server.serve("/get_token", json_answer({"tok": 1}))
    done = run_stickyctl("--config", str(tmp_path / "agent.toml"), "sync", timeout=60)
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("stickyctl: error:")]
    assert len(errors) == 1, done.stderr
    assert '/get_token: the API answered no "token" string' in errors[0]
    assert PASSWORD not in done.stderr


def test_one_shot_sync_turns_an_unexpected_exception_into_one_line(
    config_for: Callable[..., Config],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    from agent import cli

    config = config_for("https://api.example.org")
    Pipeline.build(config).close()
    monkeypatch.setattr(SyncWorker, "cycle", lambda self: {}["boom"])
    code = cli.main(["--config", str(tmp_path / "agent.toml"), "sync"])
    err = capsys.readouterr().err
    assert code == 1 and "Traceback" not in err
    assert err.strip() == "stickyctl: error: sync failed unexpectedly: KeyError: 'boom'"


def test_errors_are_sync_errors() -> None:
    assert issubclass(SinkProtocolError, SyncError)


# -- any JSON at all: only the typed error ------------------------------------------------------


def random_json(rng: random.Random, depth: int = 0) -> Any:
    """A random JSON value, biased towards the shapes the API uses (rows with its keys)."""
    keys = [
        "device",
        "datetime",
        "md5",
        "id",
        "token",
        "expiration",
        "parent_image_id",
        "algo_name",
        "algo_version",
    ]
    scalars: list[Any] = [None, True, False, 0, -1, 2**70, 1.5, float("nan"), float("inf"), "", "x",
                          "0" * 32, "2026-01-01T12:00:00Z", "2026-01-01_12-00-00", "0a1b2c3d", "токен",
                          "a:b", "\x00"]  # fmt: skip
    pick = rng.random()
    if depth > 3 or pick < 0.4:
        return rng.choice(scalars)
    if pick < 0.7:
        return {rng.choice(keys): random_json(rng, depth + 1) for _ in range(rng.randrange(6))}
    return [random_json(rng, depth + 1) for _ in range(rng.randrange(4))]


def test_any_json_answer_is_read_or_refused_with_the_typed_error_only() -> None:
    rng = random.Random(20261129)
    outcomes: Counter[str] = Counter()
    for _ in range(3000):
        body = json.dumps(random_json(rng), allow_nan=True).encode()
        for read in (
            lambda b: answers.token_answer(b),
            lambda b: answers.image_rows(METADATA, b),
            lambda b: answers.annotation_rows("/get_uid_annotations/metadata", b),
        ):
            try:
                read(body)
                outcomes["read"] += 1
            except SinkProtocolError as e:
                assert "\n" not in str(e) and len(str(e)) < 200
                outcomes["refused"] += 1
    assert outcomes["read"] > 100 and outcomes["refused"] > 1000  # both paths were exercised


@pytest.mark.parametrize(
    "change, error",
    [
        ({"ca_bundle": Path("/nonexistent/ca.pem")}, "sync.ca_bundle: cannot use /nonexistent/ca.pem"),
        ({"read_timeout": 0.0}, "sync.read_timeout: must be a positive number of seconds, got 0.0"),
        ({"connect_timeout": float("nan")}, "sync.connect_timeout: must be a positive number of seconds"),
    ],
    ids=["missing-ca-bundle", "zero-read-timeout", "nan-connect-timeout"],
)
def test_the_sync_worker_survives_a_sync_config_the_client_cannot_use(
    config_for: Callable[..., Config], change: dict[str, Any], error: str
) -> None:
    config = config_for("https://api.example.org")
    sync = config.sinks[0].model_copy(update=change)  # past config check, as issue 9 found them
    config = config.model_copy(update={"sink": [sync]})
    pipeline = Pipeline.build(config)
    try:
        worker = SyncWorker(config, pipeline.queue, lambda: make_sink(sync))
        assert worker.run_cycle() > 0 and worker.crashes == 0
        assert pipeline.queue.published()["sink.stickypi.error"].startswith(error)
    finally:
        pipeline.close()


@pytest.mark.parametrize(
    "value, obeyed", [("7", 7.0), ("1e308", 3600.0), ("inf", None), ("nan", None), ("Wed, 21 Oct 2015", None)]
)
def test_a_retry_after_is_obeyed_up_to_an_hour(
    server: HostileServer, sink: StickyPiSink, value: str, obeyed: float | None
) -> None:
    """A Retry-After of 1e308 s would stop the sync for good (or overflow the worker's wait)."""
    busy = Answer(503, {"Retry-After": value}, lambda: [b"busy"])
    server.serve(METADATA, busy)
    with pytest.raises(SinkUnreachable) as caught:
        sink.lookup_keys([KEY])
    assert caught.value.retry_after == obeyed
