"""A hostile Sticky Pi API double for tests: a real HTTP/1.1 server on 127.0.0.1, in a thread,
that answers each route what the test tells it to, however wrong.

    with HostileServer() as server:
        server.serve("/get_token", json_answer({"tok": 1}))
        sink = StickyPiSink(server.url, ...)

Unless told otherwise it answers like a server that holds nothing: ``/get_token`` a token valid
24 h, lookups ``[]``, uploads ``[]``. ``serve(route, a, b, ...)`` answers the route's requests
with ``a``, then ``b``, ..., the last one repeating. It records what it received (requests by
route, the ``Authorization`` headers, the bodies) and how many body bytes it sent by route.

Answers it can give: any status, headers and body (:func:`json_answer`, :func:`raw_answer`), a
redirect (:func:`redirect`), a body generated on the fly of any size, with or without a
``Content-Length`` (:func:`huge_answer`), a body dribbled slowly (:func:`dribble`), or no answer
at all (:func:`stall`). Slow answers wait on the server's stop event, not on sleeps the test
cannot cut: :meth:`HostileServer.stop` ends them at once.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

#: A marker put in bad bodies: it must never reach a log line or an error message.
BODY_MARKER = "HOSTILE-BODY-7f3a"


@dataclass
class Answer:
    """One answer: status, headers, and a body given as pieces (made when the answer is sent)."""

    status: int = 200
    headers: dict[str, str] = field(default_factory=lambda: {"Content-Type": "application/json"})
    pieces: Callable[[], Iterable[bytes]] = lambda: [b"[]"]
    #: Send ``Content-Length`` (the sum of the pieces, or this number if given); else close-delimited.
    length: bool | int = True
    #: Seconds to wait between pieces (on the server's stop event).
    every: float = 0.0
    #: Never answer: hold the request until the server stops.
    stalls: bool = False


def raw_answer(body: bytes, status: int = 200, content_type: str = "text/html") -> Answer:
    return Answer(status, {"Content-Type": content_type}, lambda: [body])


def json_answer(value: Any, status: int = 200) -> Answer:
    return raw_answer(json.dumps(value).encode(), status, "application/json")


def redirect(location: str, status: int = 302) -> Answer:
    return Answer(status, {"Location": location, "Content-Type": "text/html"}, lambda: [b"moved"])


def huge_answer(total: int, declare_length: bool = False) -> Answer:
    """A JSON list of image rows about ``total`` bytes long, made on the fly (never held in
    memory); with ``declare_length`` its ``Content-Length`` says ``total``."""
    row = b'{"device": "0a1b2c3d", "datetime": "2026-01-01T12:00:00Z", "md5": "' + b"0" * 32 + b'"},'
    block = row * (65536 // len(row))

    def pieces() -> Iterator[bytes]:
        yield b"["
        for _ in range(max(0, total - 4) // len(block)):
            yield block
        yield b"{}]"

    return Answer(pieces=pieces, length=total if declare_length else False)


def dribble(body: bytes, every: float, piece: int = 1) -> Answer:
    """``body`` sent ``piece`` bytes at a time, ``every`` seconds apart, with its length."""
    return Answer(
        pieces=lambda: [body[i : i + piece] for i in range(0, len(body), piece)],
        length=len(body),
        every=every,
    )


def stall() -> Answer:
    return Answer(stalls=True)


class HostileServer:
    """The server; a context manager (``stop`` on exit)."""

    def __init__(self) -> None:
        self.stopping = threading.Event()
        self.requests: Counter[str] = Counter()
        self.bytes_sent: Counter[str] = Counter()
        self.authorizations: list[str] = []
        self.bodies: list[tuple[str, bytes]] = []
        #: Set when an answer's first body piece went out (to act while a body is in flight).
        self.sending = threading.Event()
        self._answers: dict[str, list[Answer]] = {}
        self._lock = threading.Lock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="hostile-server", daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    def serve(self, route: str, *answers: Answer) -> None:
        """Answer ``route`` with ``answers`` in turn, the last one repeating."""
        with self._lock:
            self._answers[route] = list(answers)

    def answer_for(self, route: str) -> Answer:
        with self._lock:
            queue = self._answers.get(route)
            if queue:
                return queue.pop(0) if len(queue) > 1 else queue[0]
        if route == "/get_token":
            return json_answer({"token": "hostile-token", "expiration": int(time.time()) + 86400})
        return json_answer([])

    def stop(self) -> None:
        self.stopping.set()
        self._httpd.shutdown()
        self._httpd.server_close()

    def __enter__(self) -> HostileServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _handler(server: HostileServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:  # quiet
            pass

        def do_GET(self) -> None:
            self._answer()

        def do_POST(self) -> None:
            self._answer()

        def _answer(self) -> None:
            route = self.path.split("?")[0]
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            with server._lock:
                server.requests[route] += 1
                server.authorizations.append(self.headers.get("Authorization", ""))
                server.bodies.append((route, body))
            answer = server.answer_for(route)
            if answer.stalls:
                server.stopping.wait()
                self.close_connection = True
                return
            pieces = list(answer.pieces()) if answer.length is True else answer.pieces()
            self.send_response(answer.status)
            for name, value in answer.headers.items():
                self.send_header(name, value)
            if answer.length is True:
                self.send_header("Content-Length", str(sum(len(p) for p in pieces)))
            elif answer.length is not False:
                self.send_header("Content-Length", str(answer.length))
            if answer.length is False:
                self.send_header("Connection", "close")
                self.close_connection = True
            self.end_headers()
            try:
                for piece in pieces:
                    if answer.every and server.stopping.wait(answer.every):
                        break
                    self.wfile.write(piece)
                    server.bytes_sent[route] += len(piece)
                    server.sending.set()
                    if server.stopping.is_set():
                        break
                self.wfile.flush()
            except OSError:  # the client hung up: what a client reading too much should do
                self.close_connection = True

    return Handler
