"""A deadline for each HTTP answer, and a way to stop every request in flight at once.

A socket's read timeout bounds each wait for bytes, not the whole answer: a server (or a
proxy) that dribbles one byte of its headers or body every 100 s would hold a sync thread
forever. :class:`Deadlines` makes a ``requests`` adapter whose connections register with the
request being made in this thread; from the moment the request is sent (``getresponse``) the
answer has ``seconds`` to arrive in full, after which a watchdog thread shuts the socket down
(the blocked read then fails at once). :meth:`Deadlines.close` shuts down every registered
socket: a stop does not wait for anything in flight.

    deadlines = Deadlines()
    session.mount("https://", deadlines.adapter(pool_maxsize=4))
    with deadlines.watch(120.0) as request:
        session.post(...)          # and read the body
    if request.expired: ...
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

_local = threading.local()


def current() -> Request | None:
    """Return the request being watched in this thread, if any."""
    return getattr(_local, "request", None)


class Request:
    """One request being made: its connections, and whether it was cut."""

    def __init__(self, owner: Deadlines, seconds: float) -> None:
        self.owner = owner
        self.seconds = seconds
        self.deadline: float | None = None  # armed when the request has been sent
        self.connections: list[Any] = []
        self.expired = False  # cut by its deadline
        self.stopped = False  # cut by Deadlines.close

    def cut(self) -> None:
        for conn in self.connections:
            sock = getattr(conn, "sock", None)
            if sock is not None:
                with contextlib.suppress(OSError):
                    # socket.socket's own shutdown: on an SSLSocket too (its override would
                    # unwrap TLS under the reading thread's feet).
                    socket.socket.shutdown(sock, socket.SHUT_RDWR)


class _Registering:
    """Connection mixin: attach this connection to the request made in the calling thread."""

    def _register(self, arm: bool) -> None:
        request = current()
        if request is not None:
            request.owner.register(request, self, arm)

    def request(self, *args: Any, **kwargs: Any) -> Any:
        self._register(arm=False)
        return super().request(*args, **kwargs)  # type: ignore[misc]

    def getresponse(self, *args: Any, **kwargs: Any) -> Any:
        self._register(arm=True)
        return super().getresponse(*args, **kwargs)  # type: ignore[misc]


class _HTTPConnection(_Registering, HTTPConnection):
    pass


class _HTTPSConnection(_Registering, HTTPSConnection):
    pass


class _HTTPPool(HTTPConnectionPool):
    ConnectionCls = _HTTPConnection


class _HTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _HTTPSConnection


class _Adapter(HTTPAdapter):
    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {"http": _HTTPPool, "https": _HTTPSPool}


class Deadlines:
    """Deadlines for the requests of one client, kept by one watchdog thread (started lazily)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._requests: set[Request] = set()
        self._closed = False
        self._thread: threading.Thread | None = None

    def adapter(self, **kwargs: Any) -> HTTPAdapter:
        """Return a ``requests`` adapter whose connections obey these deadlines."""
        return _Adapter(**kwargs)

    @contextlib.contextmanager
    def watch(self, seconds: float) -> Iterator[Request]:
        """Within the block, give the answer to the request made in this thread ``seconds``
        from the moment it is sent; yield the :class:`Request` (``expired``, ``stopped``)."""
        request = Request(self, seconds)
        with self._cond:
            if self._closed:
                request.stopped = True
            self._requests.add(request)
        outer, _local.request = current(), request
        try:
            yield request
        finally:
            _local.request = outer
            with self._cond:
                self._requests.discard(request)

    def register(self, request: Request, connection: Any, arm: bool) -> None:
        with self._cond:
            if connection not in request.connections:
                request.connections.append(connection)
            if arm:
                request.deadline = time.monotonic() + request.seconds
                if self._thread is None:
                    self._thread = threading.Thread(target=self._run, name="http-deadlines", daemon=True)
                    self._thread.start()
                self._cond.notify()
            if self._closed:
                request.stopped = True
                request.cut()

    def close(self) -> None:
        """Cut every request in flight, and every later one as soon as it connects."""
        with self._cond:
            self._closed = True
            for request in self._requests:
                request.stopped = True
                request.cut()
            self._cond.notify()

    def _run(self) -> None:
        with self._cond:
            while not self._closed:
                now = time.monotonic()
                next_deadline = None
                for request in self._requests:
                    if request.deadline is None or request.expired:
                        continue
                    if request.deadline <= now:
                        request.expired = True
                        request.cut()
                    elif next_deadline is None or request.deadline < next_deadline:
                        next_deadline = request.deadline
                self._cond.wait(None if next_deadline is None else next_deadline - now)
