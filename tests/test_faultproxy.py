"""The fault-injecting proxy (tests/helpers/faultproxy.py) against a real DevServer on 127.0.0.1.

Each fault must give the client the symptom a flaky field network gives (connection error, read
timeout, 5xx/429), per request on kept-alive connections, and be logged by the proxy.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from helpers.faultproxy import FAULTS, Fault, FaultProxy, scripted

from agent.devserver import parse_user
from agent.devserver.app import DevServer

TIMEOUT = (2, 1)  # connect, read
AUTH = ("alice", "secret")
FAST = tuple(f for f in FAULTS if f is not Fault.STALL)

MakeProxy = Callable[..., FaultProxy]


@pytest.fixture
def server(tmp_path: Path) -> Iterator[DevServer]:
    with DevServer(tmp_path / "srv", [parse_user("alice:secret")]) as srv:
        yield srv


@pytest.fixture
def make_proxy(server: DevServer) -> Iterator[MakeProxy]:
    """Return a function starting a proxy to the server; all are stopped, with no thread left."""
    proxies: list[FaultProxy] = []

    def make(**kwargs: Any) -> FaultProxy:
        kwargs.setdefault("stall_seconds", 5)
        proxies.append(FaultProxy.for_url(server.url, **kwargs).start())
        return proxies[-1]

    yield make
    started = time.monotonic()
    for proxy in proxies:
        proxy.stop()
    assert time.monotonic() - started < 1, "stop() must interrupt stalls and blocked reads"
    assert not [t for t in threading.enumerate() if t.name.startswith("faultproxy")]


def token(session: requests.Session, proxy: FaultProxy, **kwargs: Any) -> requests.Response:
    return session.post(f"{proxy.url}/get_token", auth=AUTH, timeout=TIMEOUT, **kwargs)


def outcome(session: requests.Session, proxy: FaultProxy) -> str:
    """Return the status code, or the exception's name, of one /get_token."""
    try:
        return str(token(session, proxy).status_code)
    except requests.RequestException as exc:
        return type(exc).__name__


def test_none_relays_keep_alive_requests(server: DevServer, make_proxy: MakeProxy) -> None:
    proxy = make_proxy()
    with requests.Session() as session:
        tokens = []
        for _ in range(5):
            r = token(session, proxy)
            assert r.status_code == 200, r.text
            tokens.append(r.json()["token"])
    assert all(tokens)
    assert proxy.connections == 1  # one kept-alive connection, five requests
    assert proxy.log == [(n, "POST", "/get_token", Fault.NONE) for n in range(1, 6)]
    assert proxy.counts == {Fault.NONE: 5}
    assert server.requests["/get_token"] == 5


def _check_symptom(fault: Fault, session: requests.Session, proxy: FaultProxy) -> None:
    body = b"x" * 4000  # RESET cuts the request in the middle of this
    if fault in (Fault.DROP_BEFORE, Fault.DROP_AFTER, Fault.RESET):
        with pytest.raises(requests.ConnectionError):
            token(session, proxy, data=body)
        return
    if fault is Fault.STALL:
        with pytest.raises(requests.ReadTimeout):
            token(session, proxy, data=body)
        return
    r = token(session, proxy, data=body)
    assert r.headers["Content-Type"].startswith("text/html")
    if fault is Fault.HTTP_500:
        assert (r.status_code, r.headers["Connection"]) == (500, "close")
        assert "<html" in r.text
    else:
        assert r.status_code == {Fault.HTTP_503_RETRY_AFTER: 503, Fault.HTTP_429_RETRY_AFTER: 429}[fault]
        assert r.headers["Retry-After"] == "1"


@pytest.mark.parametrize("fault", FAULTS, ids=lambda f: f.name)
def test_each_fault_gives_its_symptom_then_recovers(
    fault: Fault, server: DevServer, make_proxy: MakeProxy
) -> None:
    proxy = make_proxy(schedule=scripted(Fault.NONE, fault))  # fault the 2nd, kept-alive, request
    with requests.Session() as session:
        assert token(session, proxy).status_code == 200
        _check_symptom(fault, session, proxy)
        seen = server.requests["/get_token"]
        assert seen == (2 if fault is Fault.DROP_AFTER else 1)  # only DROP_AFTER reaches the server
        assert token(session, proxy).status_code == 200  # the same session recovers
    assert server.requests["/get_token"] == seen + 1
    assert [(n, f) for n, _, _, f in proxy.log] == [(1, Fault.NONE), (2, fault), (3, Fault.NONE)]
    assert proxy.log[1][1:3] == ("POST", "/get_token")


def test_drop_after_is_processed_by_the_server_but_lost_by_the_client(
    server: DevServer, make_proxy: MakeProxy
) -> None:
    proxy = make_proxy(schedule=scripted(Fault.DROP_AFTER))
    before = server.requests["/get_token"]
    with requests.Session() as session, pytest.raises(requests.ConnectionError):
        token(session, proxy)
    assert server.requests["/get_token"] == before + 1
    assert proxy.log == [(1, "POST", "/get_token", Fault.DROP_AFTER)]


def test_offline_refuses_then_recovers(server: DevServer, make_proxy: MakeProxy) -> None:
    proxy = make_proxy()
    with requests.Session() as session:
        assert token(session, proxy).status_code == 200
        proxy.offline = True
        assert proxy.offline
        for s in (session, requests.Session()):  # the kept-alive connection and a new one
            with pytest.raises(requests.ConnectionError):
                token(s, proxy)
        proxy.offline = False
        assert token(session, proxy).status_code == 200
    assert server.requests["/get_token"] == 2
    assert proxy.faults == [Fault.NONE, Fault.NONE]


def test_seeded_random_faults_are_deterministic(make_proxy: MakeProxy) -> None:
    def run(seed: int) -> tuple[list[Fault], list[str]]:
        proxy = make_proxy(seed=seed, fault_rate=0.5, kinds=FAST)
        with requests.Session() as session:
            outcomes = [outcome(session, proxy) for _ in range(24)]
        return proxy.faults, outcomes

    faults, outcomes = run(7)
    assert run(7) == (faults, outcomes)
    assert run(8)[0] != faults
    assert 0 < faults.count(Fault.NONE) < len(faults)
    assert len(set(faults)) > 3
    for fault, got in zip(faults, outcomes, strict=True):
        expected = {Fault.NONE: "200", Fault.HTTP_500: "500", Fault.HTTP_503_RETRY_AFTER: "503"}
        expected |= {Fault.HTTP_429_RETRY_AFTER: "429"}
        assert got == expected.get(fault, "ConnectionError"), fault


def test_random_without_rate_is_transparent(make_proxy: MakeProxy) -> None:
    proxy = make_proxy(seed=1)
    with requests.Session() as session:
        assert [outcome(session, proxy) for _ in range(3)] == ["200"] * 3


def test_chunked_request_is_relayed_without_fault(server: DevServer, make_proxy: MakeProxy) -> None:
    proxy = make_proxy(schedule=lambda n: Fault.HTTP_500)
    with requests.Session() as session:
        r = token(session, proxy, data=iter([b"ab", b"cd"]))  # a generator body is sent chunked
        assert r.status_code == 200 and r.json()["token"]
    assert proxy.faults == [Fault.NONE]
    assert server.requests["/get_token"] == 1


def test_upstream_must_be_loopback() -> None:
    with pytest.raises(ValueError, match="loopback"):
        FaultProxy(("192.0.2.1", 80))
