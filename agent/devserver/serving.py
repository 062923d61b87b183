"""One way to serve a protocol double's WSGI application in a background thread (tests, demo)."""

from __future__ import annotations

import functools
import threading
from typing import TYPE_CHECKING

from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIApplication


class QuietHandler(WSGIRequestHandler):
    """A request handler that logs nothing per request."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass


class ServerThread:
    """Serve ``app`` on ``host:port`` (0: a free port) with Werkzeug's threaded server in a daemon
    thread. ``with ServerThread(app) as s: s.url``; ``on_listen`` gets the base URL once bound."""

    def __init__(
        self, app: WSGIApplication, host: str = "127.0.0.1", port: int = 0, name: str = "double"
    ) -> None:
        self.app, self.host, self.port, self.name = app, host, port, name
        self._server: BaseWSGIServer | None = None

    @property
    def url(self) -> str:
        """Return the base URL (no trailing slash). Raise RuntimeError if not started."""
        if self._server is None:
            raise RuntimeError(f"the {self.name} server is not started")
        return f"http://{self.host}:{self._server.server_port}"

    def start(self) -> str:
        """Listen and serve in a daemon thread; return the base URL."""
        if self._server is None:
            self._server = make_server(
                self.host, self.port, self.app, threaded=True, request_handler=QuietHandler
            )
            serve = functools.partial(self._server.serve_forever, poll_interval=0.05)  # quick stop()
            threading.Thread(target=serve, name=self.name, daemon=True).start()
        return self.url

    def stop(self) -> None:
        """Stop serving and close the socket. Idempotent."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
