"""systemd notifications: READY=1 once the agent is up, WATCHDOG=1 only while it works, STOPPING=1.

A real unix datagram socket stands in for systemd's ``$NOTIFY_SOCKET``; every wait is a
socket timeout bounded by a deadline, never a sleep.
"""

from __future__ import annotations

import os
import socket
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from agent import sdnotify
from agent.capture.scheduler import CaptureScheduler
from agent.config import load_config
from agent.sdnotify import Notifier, notify, socket_address, watchdog_interval
from agent.service import HEARTBEAT_S, Agent


class NotifySocket:
    """The receiving end: what systemd would read from ``$NOTIFY_SOCKET``."""

    def __init__(self, address: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(address)
        self.received: list[str] = []

    def recv(self, timeout: float) -> str | None:
        """Return the next message, or None if none arrives within ``timeout`` seconds."""
        self.sock.settimeout(max(timeout, 0.001))
        try:
            msg = self.sock.recv(4096).decode()
        except TimeoutError:
            return None
        self.received.append(msg)
        return msg

    def wait_for(self, predicate: Callable[[str], bool], timeout: float = 20.0) -> str:
        """Return the first message matching ``predicate``; fail after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            msg = self.recv(left)
            if msg is not None and predicate(msg):
                return msg
        raise AssertionError(f"no matching notification within {timeout}s; got {self.received}")

    def quiet_for(self, predicate: Callable[[str], bool], seconds: float) -> list[str]:
        """Read for ``seconds``; fail if a message matching ``predicate`` arrives. Return what came."""
        got: list[str] = []
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            msg = self.recv(left)
            if msg is not None:
                assert not predicate(msg), f"unexpected notification {msg!r} (all: {got})"
                got.append(msg)
        return got

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def socket_dir(tmp_path: Path) -> Iterator[Path]:
    """tmp_path, or a shorter folder if tmp_path is too long for a unix socket address."""
    if len(str(tmp_path / "notify.sock")) < 100:
        yield tmp_path
        return
    with tempfile.TemporaryDirectory(prefix="sdn") as d:
        yield Path(d)


@pytest.fixture
def listener(socket_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[NotifySocket]:
    path = socket_dir / "notify.sock"
    sock = NotifySocket(str(path))
    monkeypatch.setenv("NOTIFY_SOCKET", str(path))
    # a 0.2 s watchdog: the agent's loop then wakes every 0.1 s
    monkeypatch.setenv("WATCHDOG_USEC", "200000")
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    yield sock
    sock.close()


def is_ping(msg: str) -> bool:
    return "WATCHDOG=1" in msg.split("\n")


# -- the client -------------------------------------------------------------------------


def test_notify_is_a_no_op_without_a_socket() -> None:
    assert notify("READY=1", environ={}) is False
    assert Notifier.from_env({}).enabled is False
    assert watchdog_interval({}) is None


def test_notify_sends_to_a_path_socket(listener: NotifySocket) -> None:
    assert notify("READY=1") is True
    assert notify("STATUS=hello\nWATCHDOG=1") is True
    assert listener.recv(5) == "READY=1"
    assert listener.recv(5) == "STATUS=hello\nWATCHDOG=1"


def test_notify_sends_to_an_abstract_socket() -> None:
    name = f"sticky-agent-test-{os.getpid()}-{time.monotonic_ns()}"
    sock = NotifySocket("\0" + name)
    try:
        assert socket_address("@" + name) == "\0" + name
        assert notify("STOPPING=1", environ={"NOTIFY_SOCKET": "@" + name}) is True
        assert sock.recv(5) == "STOPPING=1"
    finally:
        sock.close()


def test_a_socket_that_is_gone_is_logged_not_raised(tmp_path: Path) -> None:
    notifier = Notifier(str(tmp_path / "nobody-listens.sock"))
    assert notifier.notify("READY=1") is False
    assert socket_address("relative/path") is None


def test_watchdog_interval_is_half_the_period_and_only_for_us() -> None:
    assert watchdog_interval({"WATCHDOG_USEC": "60000000"}) == 30.0
    assert watchdog_interval({"WATCHDOG_USEC": "60000000", "WATCHDOG_PID": str(os.getpid())}) == 30.0
    assert watchdog_interval({"WATCHDOG_USEC": "60000000", "WATCHDOG_PID": "1"}, pid=2) is None
    assert watchdog_interval({"WATCHDOG_USEC": "0"}) is None
    assert watchdog_interval({"WATCHDOG_USEC": "soon"}) is None
    assert sdnotify.WATCHDOG_USEC_ENV == "WATCHDOG_USEC"


# -- the agent ------------------------------------------------------------------------


def start_agent(write_config: Callable[..., Path]) -> tuple[Agent, threading.Thread]:
    agent = Agent(load_config(write_config(), environ={}))
    assert agent.heartbeat_s == pytest.approx(0.1)  # half of WATCHDOG_USEC, below HEARTBEAT_S
    agent.start()
    thread = threading.Thread(target=agent.run_forever, name="agent-main")
    thread.start()
    return agent, thread


def stop_agent(agent: Agent, thread: threading.Thread) -> None:
    agent.request_stop()
    thread.join(60)
    assert not thread.is_alive()


def test_agent_is_ready_then_feeds_the_watchdog_then_stops(
    listener: NotifySocket, write_config: Callable[..., Path]
) -> None:
    agent, thread = start_agent(write_config)
    try:
        # READY=1 only at the end of start(): the queue and scheduler are up by then
        ready = listener.wait_for(lambda m: "READY=1" in m.split("\n"))
        assert agent.scheduler is not None and agent.scheduler.running
        before_ready = listener.received[: listener.received.index(ready)]
        assert not any(is_ping(m) for m in before_ready)
        assert any(m.startswith("STATUS=capturing; next capture 20") for m in before_ready)
        for _ in range(3):
            listener.wait_for(is_ping, timeout=10)
    finally:
        stop_agent(agent, thread)
    listener.wait_for(lambda m: "STOPPING=1" in m.split("\n"), timeout=10)


def test_no_watchdog_ping_while_the_scheduler_is_not_running(
    listener: NotifySocket, write_config: Callable[..., Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    agent, thread = start_agent(write_config)
    try:
        listener.wait_for(is_ping)
        state = {"running": False}
        monkeypatch.setattr(CaptureScheduler, "running", property(lambda _self: state["running"]))
        listener.wait_for(lambda m: m.startswith("STATUS=unhealthy: the capture scheduler is not running"))
        # the loop keeps waking every 0.1 s: a second's silence is ten withheld pings
        listener.quiet_for(is_ping, seconds=1.0)
        state["running"] = True  # the scheduler is back: the pings resume
        listener.wait_for(lambda m: m.startswith("STATUS=capturing"))
        listener.wait_for(is_ping)
    finally:
        stop_agent(agent, thread)


def test_no_watchdog_ping_after_the_scheduler_shut_down(
    listener: NotifySocket, write_config: Callable[..., Path]
) -> None:
    agent, thread = start_agent(write_config)
    try:
        listener.wait_for(is_ping)
        assert agent.scheduler is not None
        agent.scheduler.shutdown(wait=True)
        listener.wait_for(lambda m: m.startswith("STATUS=unhealthy"))
        listener.quiet_for(is_ping, seconds=1.0)
        assert thread.is_alive()
    finally:
        stop_agent(agent, thread)


def test_no_notifications_outside_systemd(
    write_config: Callable[..., Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    monkeypatch.delenv("WATCHDOG_USEC", raising=False)
    agent = Agent(load_config(write_config(), environ={}))
    assert not agent.notifier.enabled and agent.heartbeat_s == HEARTBEAT_S


def test_ready_comes_before_a_large_backlog_is_adopted_and_captures_wait_for_it(
    listener: NotifySocket, write_config: Callable[..., Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A crash left originals without queue rows: adopting 2,000 of them took 275 s on a Pi,
    longer than systemd lets a start take. READY=1 must come first, the watchdog stays fed while
    the backlog is adopted, and a capture asked for meanwhile waits for the adoption to finish."""
    from agent import service
    from agent.service import Pipeline

    config = load_config(write_config(capture={"interval": "1h"}), environ={})
    backlog = Pipeline.build(config)
    for _ in range(3):
        assert backlog.capturer.capture().ok
    backlog.close()
    for suffix in ("", "-wal", "-shm"):  # the queue is lost: the originals have no rows
        Path(f"{config.storage.queue_path}{suffix}").unlink(missing_ok=True)

    adopting = threading.Event()
    finish = threading.Event()  # the test decides when the (long) adoption is done
    real_reconcile = service.reconcile

    def slow_reconcile(*args: object, **kwargs: object) -> object:
        adopting.set()
        assert finish.wait(60)
        return real_reconcile(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(service, "reconcile", slow_reconcile)
    agent = Agent(config)
    starting = threading.Thread(target=agent.start, name="agent-start")
    starting.start()
    thread = threading.Thread(target=agent.run_forever, name="agent-main")
    try:
        listener.wait_for(lambda m: "READY=1" in m.split("\n"), timeout=20)
        assert adopting.wait(20) and not finish.is_set()  # ready while the backlog is adopted
        starting.join(20)
        assert not starting.is_alive()
        thread.start()
        agent.request_capture()  # `stickyctl capture` during the adoption
        for _ in range(3):  # the watchdog is fed all along
            listener.wait_for(is_ping, timeout=10)
        assert agent.pipeline is not None
        queue = agent.pipeline.queue
        assert queue.attempts(limit=5) == [] and not agent.reconciled.is_set()
        assert agent.sync is None or not agent.sync.alive
        finish.set()
        assert agent.reconciled.wait(30)
        for _ in range(300):  # each turn waits for the next heartbeat (0.1 s)
            if queue.attempts(limit=1):
                break
            listener.wait_for(is_ping, timeout=10)
        attempts = queue.attempts(limit=5)
        assert [(a.outcome, a.manual) for a in attempts] == [("ok", True)]  # after the adoption
        assert queue.totals_by_state()["captured"].count == 4  # 3 adopted + the manual one
    finally:
        finish.set()
        starting.join(60)
        if thread.is_alive():
            stop_agent(agent, thread)
        else:
            agent.stop()
