"""A fault-injecting HTTP/1.1 proxy for tests, between a client and a server on 127.0.0.1 only.

    with FaultProxy.for_url(devserver.url, schedule=scripted(Fault.NONE, Fault.DROP_AFTER)) as proxy:
        session.post(f"{proxy.url}/get_token", ...)  # the 2nd request: server answers, client errors

It frames HTTP/1.1 (request line, headers, ``Content-Length`` body) so faults apply per REQUEST,
numbered from 1 across all connections: request *n* gets ``schedule(n)``, or else with probability
``fault_rate`` a fault drawn uniformly from ``kinds`` by ``random.Random(seed)``. Chunked requests
are tunnelled untouched (logged NONE). Each request goes upstream on its own ``Connection: close``
connection, but framed responses keep the client connection alive, so faults hit reused ones.
"""

from __future__ import annotations

import contextlib
import enum
import ipaddress
import random
import select
import socket
import struct
import threading
import urllib.parse
from collections import Counter
from collections.abc import Callable, Sequence

MAX_HEAD = 65536


class Fault(enum.Enum):
    """What the proxy does to one request."""

    NONE = "none"  # relay the request and the response
    DROP_BEFORE = "drop_before"  # read the request, close the client: the server never sees it
    DROP_AFTER = "drop_after"  # the server answers, the client connection is closed instead
    RESET = "reset"  # TCP RST to the client after half the request body
    STALL = "stall"  # hold the request stall_seconds without answering, then close
    HTTP_500 = "http_500"  # 500 with an HTML body and Connection: close, not forwarded
    HTTP_503_RETRY_AFTER = "http_503"  # 503 with Retry-After: 1, not forwarded
    HTTP_429_RETRY_AFTER = "http_429"  # 429 with Retry-After: 1, not forwarded


#: Given a request number (from 1), return its fault.
Schedule = Callable[[int], Fault]
#: Every fault but NONE: what a random schedule picks from by default.
FAULTS: tuple[Fault, ...] = tuple(f for f in Fault if f is not Fault.NONE)


def scripted(*faults: Fault) -> Schedule:
    """Return a schedule giving request *n* (from 1) ``faults[n - 1]``, then NONE."""
    return lambda n: faults[n - 1] if 0 < n <= len(faults) else Fault.NONE


def _page(status: str, extra: str = "") -> bytes:
    body = f"<!doctype html>\n<html lang=en>\n<title>{status}</title>\n<h1>{status[4:]}</h1>\n</html>\n"
    head = f"HTTP/1.1 {status}\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: {len(body)}\r\n"
    return (head + extra + "\r\n" + body).encode()


_CANNED: dict[Fault, bytes] = {
    Fault.HTTP_500: _page("500 Internal Server Error", "Connection: close\r\n"),
    Fault.HTTP_503_RETRY_AFTER: _page("503 Service Unavailable", "Retry-After: 1\r\n"),
    Fault.HTTP_429_RETRY_AFTER: _page("429 Too Many Requests", "Retry-After: 1\r\n"),
}


class _Reader:
    """A buffered reader over a socket."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock, self.buf = sock, bytearray()

    def _fill(self) -> bool:
        data = self.sock.recv(65536)
        self.buf += data
        return bool(data)

    def take(self, n: int) -> bytes:
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out

    def head(self) -> bytes | None:
        """Return the next HTTP head (through the blank line), or None if the peer closed first."""
        while (i := self.buf.find(b"\r\n\r\n")) < 0:
            if len(self.buf) > MAX_HEAD or not self._fill():
                return None
        return self.take(i + 4)

    def exact(self, n: int) -> bytes:
        """Return the next ``n`` bytes; raise EOFError if the peer closes first."""
        while len(self.buf) < n:
            if not self._fill():
                raise EOFError
        return self.take(n)

    def rest(self) -> bytes:
        """Return every byte until the peer closes."""
        while self._fill():
            pass
        return self.take(len(self.buf))


def _parse(head: bytes) -> tuple[list[str], dict[str, str]]:
    """Given an HTTP head, return its start line split in 3 and its headers (lower-case names)."""
    lines = head.decode("latin-1").split("\r\n")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if sep:
            key = name.strip().lower()
            headers[key] = f"{headers[key]}, {value.strip()}" if key in headers else value.strip()
    return lines[0].split(" ", 2), headers


def _with_connection(head: bytes, value: str | None) -> bytes:
    """Return ``head`` without its hop-by-hop Connection headers, plus ``Connection: value``."""
    hop = (b"connection", b"keep-alive")
    lines = [ln for ln in head[:-4].split(b"\r\n") if ln.split(b":", 1)[0].strip().lower() not in hop]
    return b"\r\n".join(lines + ([f"Connection: {value}".encode()] if value else [])) + b"\r\n\r\n"


def _read_response(up: _Reader, method: str) -> tuple[bytes, bytes, bool]:
    """Read one response from a ``Connection: close`` upstream; return its head, its body and
    whether it is framed (the client can find the body's end without a close)."""
    if (head := up.head()) is None:
        raise EOFError
    start, headers = _parse(head)
    if method == "HEAD" or start[1] in ("204", "304"):
        return head, b"", True
    if "content-length" in headers and "transfer-encoding" not in headers:
        return head, up.exact(int(headers["content-length"])), True
    return head, up.rest(), "chunked" in headers.get("transfer-encoding", "").lower()


class FaultProxy:
    """A threaded TCP proxy on 127.0.0.1 injecting a :class:`Fault` per HTTP request; ``log``,
    ``faults``, ``counts`` and ``connections`` (accepted client connections) say what happened."""

    def __init__(
        self,
        upstream: tuple[str, int],
        schedule: Schedule | None = None,
        seed: int | None = None,
        fault_rate: float = 0.0,
        stall_seconds: float = 30.0,
        *,
        kinds: Sequence[Fault] = FAULTS,
    ) -> None:
        if ipaddress.ip_address(upstream[0]) not in ipaddress.ip_network("127.0.0.0/8"):
            raise ValueError(f"upstream {upstream[0]!r}: loopback (127.x.x.x) only")
        self.upstream, self.schedule, self.fault_rate = upstream, schedule, fault_rate
        #: One-shot faults for the next request whose method and path match (see :meth:`once`).
        self._once: list[tuple[str, str, Fault]] = []
        self.stall_seconds, self.kinds = stall_seconds, tuple(kinds)
        self.connections = 0
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._log: list[tuple[int, str, str, Fault]] = []
        self._stopping, self._offline = threading.Event(), threading.Event()
        self._socks: set[socket.socket] = set()
        self._threads: list[threading.Thread] = []
        self._acceptor: threading.Thread | None = None
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.05)  # the accept loop polls _stopping
        self.port: int = self._listener.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"

    @classmethod
    def for_url(cls, url: str, **kwargs: object) -> FaultProxy:
        """Return a proxy to the server at ``http://127.0.0.1:PORT`` (keywords as for the class)."""
        parts = urllib.parse.urlsplit(url)
        return cls((parts.hostname or "", parts.port or 80), **kwargs)  # type: ignore[arg-type]

    @property
    def log(self) -> list[tuple[int, str, str, Fault]]:
        """Return a copy of the log: ``(n, method, target, fault)`` per request, in order."""
        with self._lock:
            return list(self._log)

    @property
    def faults(self) -> list[Fault]:
        """Return the fault given to each request, in order."""
        return [entry[3] for entry in self.log]

    @property
    def counts(self) -> Counter[Fault]:
        """Return how many requests got each fault."""
        return Counter(self.faults)

    @property
    def offline(self) -> bool:
        """Return whether the "network" is gone: set, every connection is closed (new ones as soon
        as accepted) until it is cleared."""
        return self._offline.is_set()

    @offline.setter
    def offline(self, value: bool) -> None:
        if value:
            self._offline.set()
            self._shutdown_all()  # kept-alive connections go too
        else:
            self._offline.clear()

    def start(self) -> FaultProxy:
        """Accept connections in a daemon thread; return self."""
        if self._acceptor is None:
            self._acceptor = self._spawn(self._accept_loop, "faultproxy-accept")
        return self

    def stop(self) -> None:
        """Stop accepting, interrupt stalls, close every socket and join every thread."""
        self._stopping.set()
        self._shutdown_all()
        if self._acceptor is not None:
            self._acceptor.join(timeout=5)  # no new connection thread after this
        with self._lock:
            threads = list(self._threads)
        for thread in threads:
            thread.join(timeout=5)
        self._listener.close()

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _spawn(self, target: Callable[..., None], name: str, *args: object) -> threading.Thread:
        thread = threading.Thread(target=target, args=args, name=name, daemon=True)
        with self._lock:
            self._threads = [t for t in self._threads if t.is_alive()] + [thread]
        thread.start()
        return thread

    def _track(self, sock: socket.socket) -> socket.socket:
        with self._lock:
            self._socks.add(sock)
        if self._stopping.is_set():
            self._shutdown_all()
        return sock

    def _connect(self) -> socket.socket:
        return self._track(socket.create_connection(self.upstream, timeout=30))

    def _close(self, sock: socket.socket | None) -> None:
        if sock is not None:
            with self._lock:
                self._socks.discard(sock)
            sock.close()

    def _shutdown_all(self) -> None:
        with self._lock:
            socks = list(self._socks)
        for sock in socks:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def _accept_loop(self) -> None:
        """Accept clients, each served in its own thread (which closes it at once if offline)."""
        while not self._stopping.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            client.settimeout(None)
            with self._lock:
                self.connections += 1
            self._spawn(self._serve, "faultproxy-conn", self._track(client))

    def once(self, method: str, path_part: str, fault: Fault) -> None:
        """Give ``fault`` to the next request whose method is ``method`` and whose path holds
        ``path_part`` (then forget it)."""
        with self._lock:
            self._once.append((method.upper(), path_part, fault))

    def _decide(self, method: str, target: str, chunked: bool) -> Fault:
        """Number the request, choose its fault and log it."""
        with self._lock:
            n, fault = len(self._log) + 1, Fault.NONE
            match = next((o for o in self._once if o[0] == method and o[1] in target), None)
            if match is not None and not chunked:
                self._once.remove(match)
                fault = match[2]
            elif not chunked and self.schedule is not None:
                fault = self.schedule(n)
            elif not chunked and self._rng.random() < self.fault_rate:
                fault = self._rng.choice(self.kinds)
            self._log.append((n, method, target, fault))
        return fault

    def _serve(self, client: socket.socket) -> None:
        """Serve one client connection, request after request, until a fault or a close."""
        reader, up = _Reader(client), None
        try:
            while not self._stopping.is_set() and not self._offline.is_set():
                if (head := reader.head()) is None:
                    return
                (method, target, _), headers = _parse(head)
                chunked = "chunked" in headers.get("transfer-encoding", "").lower()
                fault = self._decide(method, target, chunked)
                if chunked:
                    up = self._connect()
                    return self._tunnel(client, up, head + reader.take(len(reader.buf)))
                length = int(headers.get("content-length") or 0)
                if fault is Fault.RESET:
                    reader.exact(length // 2)
                    client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    return
                body = reader.exact(length)
                if fault is Fault.STALL:
                    self._stopping.wait(self.stall_seconds)
                if fault in (Fault.DROP_BEFORE, Fault.STALL):
                    return
                if fault in _CANNED:
                    client.sendall(_CANNED[fault])
                    if fault is Fault.HTTP_500:
                        return
                    continue
                up = self._connect()
                up.sendall(_with_connection(head, "close") + body)
                rhead, rbody, framed = _read_response(_Reader(up), method)
                self._close(up)
                if fault is Fault.DROP_AFTER:
                    return
                close = not framed or "close" in headers.get("connection", "").lower()
                client.sendall(_with_connection(rhead, "close" if close else None) + rbody)
                if close:
                    return
        except (OSError, EOFError, ValueError):
            pass
        finally:
            self._close(up)
            self._close(client)

    def _tunnel(self, client: socket.socket, up: socket.socket, first: bytes) -> None:
        """Relay bytes both ways, ``first`` upstream first, until either side closes."""
        up.sendall(first)
        while not self._stopping.is_set():
            for src in select.select([client, up], [], [], 0.1)[0]:
                data = src.recv(65536)
                if not data:
                    return
                (up if src is client else client).sendall(data)
