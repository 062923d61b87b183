"""``stickyctl sync`` with the agent stopped: counts, progress, the real cause of a failure, Ctrl-C.

A real DevServer on 127.0.0.1, images captured through the real pipeline, and ``stickyctl`` as a
separate process (the real entry point) where exit codes and Ctrl-C matter; the progress display is
driven in-process with a fake terminal.
"""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import REPO, run_stickyctl
from helpers import sinkview
from helpers.clocks import SteppingClock
from helpers.faultproxy import Fault, FaultProxy
from helpers.sickserver import answer_500

from agent.config import Config, load_config
from agent.devserver import parse_user
from agent.devserver.app import DevServer
from agent.doctor.checks import UNIT_CREDENTIALS, with_unit_credentials
from agent.errors import StickyAgentError
from agent.queue import Queue
from agent.service import Pipeline
from agent.sinks import oneshot

PASSWORD = "pw-Hunter2-s3cret"
USERS = [parse_user(f"alice:{PASSWORD}"), parse_user(f"reader:{PASSWORD}:read")]


@pytest.fixture
def server(tmp_path: Path) -> Iterator[DevServer]:
    with DevServer(tmp_path / "srv", USERS) as srv:
        yield srv


@pytest.fixture
def trap(tmp_path: Path, write_config: Callable[..., Path]) -> Callable[..., Config]:
    """Return a function: write a config syncing to ``url`` (credentials ``line`` in a 0600 file,
    or none at all), capture ``n`` images, and return the config."""

    def make(url: str, n: int = 3, line: str | None = f"alice:{PASSWORD}", **sync: Any) -> Config:
        table: dict[str, Any] = {"url": url, "probe_interval": "1s", "backoff_max": "5s", **sync}
        if line is not None:
            creds = tmp_path / "api-credentials"
            creds.write_text(line + "\n")
            creds.chmod(0o600)
            table["credentials"] = str(creds)
        config = load_config(write_config(sync=table), environ={})
        pipeline = Pipeline.build(config)
        pipeline.capturer.now = SteppingClock()
        try:
            for _ in range(n):
                assert pipeline.capturer.capture().ok
        finally:
            pipeline.close()
        return config

    return make


def states(config: Config) -> dict[str, int]:
    """Return how many images stand in each state with the (one) sink."""
    queue = Queue(config.storage.queue_path, create=False)
    try:
        return dict(Counter(sinkview.image_state(queue, i.id) for i in queue.images(10_000)))
    finally:
        queue.close()


def stickyctl_sync(config: Config, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return run_stickyctl("--config", str(config.source), "sync", env=env)


def test_sync_reports_what_it_did(server: DevServer, trap: Callable[..., Config]) -> None:
    config = trap(server.url)
    done = stickyctl_sync(config)
    assert done.returncode == 0, done.stderr
    assert f"synced with {server.url}: 3 of 3 images synced" in done.stdout
    assert "0 image(s) (0.0 MB) still waiting" in done.stdout
    assert done.stderr == ""  # not a terminal: no progress, no log chatter
    assert states(config) == {"verified": 3}
    again = stickyctl_sync(config)
    assert "0 of 0 images synced" in again.stdout
    assert server.requests["/_put_new_images"] == 3


def test_missing_credentials_are_named_not_unreachable(
    server: DevServer, trap: Callable[..., Config]
) -> None:
    config = trap(server.url, line=None)  # no credentials key: $CREDENTIALS_DIRECTORY, else the unit's file
    done = stickyctl_sync(config, env={"CREDENTIALS_DIRECTORY": str(config.storage.data_dir / "nowhere")})
    assert done.returncode == 1
    assert "no credentials file at" in done.stderr and "unreachable" not in done.stderr
    assert "Traceback" not in done.stderr
    assert states(config) == {"captured": 3}


def test_systemd_credentials_are_found_like_the_doctor_does(
    server: DevServer, trap: Callable[..., Config], tmp_path: Path
) -> None:
    config = trap(server.url, line=None)
    # outside systemd: the file the unit loads, as the doctor reads it
    assert with_unit_credentials(config.sinks[0], {}).credentials == UNIT_CREDENTIALS
    # under systemd (or given the folder): $CREDENTIALS_DIRECTORY/sticky-api
    folder = tmp_path / "creds"
    folder.mkdir()
    (folder / "sticky-api").write_text(f"alice:{PASSWORD}\n")
    (folder / "sticky-api").chmod(0o600)
    env = {"CREDENTIALS_DIRECTORY": str(folder)}
    assert with_unit_credentials(config.sinks[0], env).credentials is None
    done = stickyctl_sync(config, env=env)
    assert done.returncode == 0, done.stderr
    assert states(config) == {"verified": 3}


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (f"alice:wrong-{PASSWORD}", "refused the username/password of 'alice' (401)"),
        (f"reader:{PASSWORD}", "may not do this (403)"),
    ],
)
def test_401_and_403_are_explained(
    server: DevServer, trap: Callable[..., Config], line: str, expected: str
) -> None:
    config = trap(server.url, line=line)
    done = stickyctl_sync(config)
    assert done.returncode == 1
    assert expected in done.stderr and "unreachable" not in done.stderr
    assert "the queue is kept" in done.stderr
    assert states(config) == {"captured": 3}


def test_a_500_is_reported_as_the_servers_answer(
    server: DevServer, trap: Callable[..., Config], monkeypatch: pytest.MonkeyPatch
) -> None:
    answer_500(monkeypatch, server.app, "get_token", "database down")
    config = trap(server.url)
    done = stickyctl_sync(config)
    assert done.returncode == 1
    assert f"the API at {server.url} answered with an error: /get_token: the API answered 500" in done.stderr
    assert "unreachable" not in done.stderr


def test_nothing_listening_is_unreachable(trap: Callable[..., Config]) -> None:
    config = trap("http://127.0.0.1:9")
    done = stickyctl_sync(config)
    assert done.returncode == 1
    assert "the API at http://127.0.0.1:9 is unreachable" in done.stderr
    assert "3 image(s) (" in done.stderr and "still waiting; the queue is kept" in done.stderr


def test_progress_on_a_terminal_and_quiet_otherwise(server: DevServer, trap: Callable[..., Config]) -> None:
    config = trap(server.url, n=4)
    quiet = io.StringIO()
    outcome = oneshot.run(config, config.sinks[0], out=quiet, tty=False)
    assert quiet.getvalue() == ""
    assert oneshot.verdict(outcome, config.sinks[0]).startswith(f"synced with {server.url}: 4 of 4 images")

    config = trap(server.url, n=2)  # two more
    term = io.StringIO()
    outcome = oneshot.run(config, config.sinks[0], out=term, tty=True)
    last = term.getvalue().rstrip("\n").split("\r")[-1]
    assert last.startswith("2 of 2 images, ") and " MB, " in last and "ETA" in last
    assert outcome.waiting == 0 and outcome.error is None


def test_progress_line() -> None:
    p = oneshot.Progress(total_images=10, total_bytes=10_000_000, started=0.0)
    p.add(4, 4_000_000)
    assert p.line(now=2.0) == "4 of 10 images, 4.0 of 10.0 MB, 2.00 MB/s, ETA 0:00:03"


def test_ctrl_c_stops_within_two_seconds_without_a_traceback(
    server: DevServer, trap: Callable[..., Config], tmp_path: Path
) -> None:
    with FaultProxy.for_url(server.url, schedule=lambda n: Fault.STALL, stall_seconds=60) as proxy:
        config = trap(proxy.url, read_timeout="120s")
        env = {k: v for k, v in os.environ.items() if not k.startswith("STICKY_AGENT_")}
        proc = subprocess.Popen(
            [sys.executable, "-m", "agent", "--config", str(config.source), "sync"],
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            deadline = time.monotonic() + 30
            while not proxy.log and time.monotonic() < deadline:  # wait for its first request
                time.sleep(0.05)
            assert proxy.log, "stickyctl sync never reached the server"
            t0 = time.monotonic()
            proc.send_signal(signal.SIGINT)
            _, err = proc.communicate(timeout=10)
            elapsed = time.monotonic() - t0
        finally:
            if proc.poll() is None:
                proc.kill()
    assert proc.returncode == 130, err
    assert elapsed < 2.0
    assert "Traceback" not in err
    assert "interrupted after 0 of 3 images; the rest stays queued" in err
    assert states(config) == {"captured": 3}


def test_a_server_refusing_every_upload_is_named(
    server: DevServer, trap: Callable[..., Config], monkeypatch: pytest.MonkeyPatch
) -> None:
    answer_500(monkeypatch, server.app.store, "put_image", "storage unavailable")
    config = trap(server.url)
    outcome = oneshot.run(config, config.sinks[0])
    with pytest.raises(StickyAgentError, match="refuses every upload") as caught:
        oneshot.verdict(outcome, config.sinks[0])
    assert "0 of 3 images synced" in str(caught.value) and "the queue is kept" in str(caught.value)
    assert states(config) == {"captured": 3}
    queue = Queue(config.storage.queue_path, create=False)
    try:
        assert all(img.attempts == 0 for img in queue.images(limit=10))  # an outage: nothing counted
    finally:
        queue.close()
