"""Serving a protocol double on loopback in a background thread (the Tator and Data Lake doubles)."""

from __future__ import annotations

import functools
import threading
from collections.abc import Iterable
from typing import TYPE_CHECKING, Protocol, Self

from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment


class DoubleApp(Protocol):
    """A WSGI application that hands out URLs to itself (presigned URLs): ``base_url`` is set
    once the server listens."""

    base_url: str

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]: ...


class QuietHandler(WSGIRequestHandler):
    """A request handler that does not log every request."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass


class BackgroundServer:
    """``app`` served on ``host:port`` (0: any free port) in a daemon thread; a context manager."""

    #: Named in the thread's name and in errors.
    label = "double"

    def __init__(self, app: DoubleApp, host: str = "127.0.0.1", port: int = 0) -> None:
        self.app = app
        self.host, self.port = host, port
        self._server: BaseWSGIServer | None = None

    @property
    def url(self) -> str:
        """Return the base URL (no trailing slash). Raise RuntimeError if not started."""
        if self._server is None:
            raise RuntimeError(f"the {self.label} is not started")
        return f"http://{self.host}:{self._server.server_port}"

    def start(self) -> Self:
        """Listen and serve in a daemon thread; return self."""
        if self._server is None:
            self._server = make_server(
                self.host, self.port, self.app, threaded=True, request_handler=QuietHandler
            )
            self.app.base_url = self.url
            serve = functools.partial(self._server.serve_forever, poll_interval=0.05)
            name = self.label.replace(" ", "-").lower()
            threading.Thread(target=serve, name=name, daemon=True).start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
