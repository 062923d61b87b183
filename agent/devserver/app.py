"""The devserver's HTTP side: a Werkzeug WSGI application speaking the Sticky Pi API.

Behaviour (``../shared/specs/sticky-pi-api.md``, quirks included, and the real server as
measured by probing a rebuild of it): every API route is a ``POST`` behind HTTP Basic
(``user:password``, or a token as the user name: the token is tried first and, when it verifies,
the password is ignored, so ``token:anything`` works as the real server's does); a wrong password
or a bad or expired token is a 401 ``Unauthorized Access``; a read-only user uploading is a 403,
and so is a non-admin deleting or calling ``/get_users`` (flask-httpauth's ``Unauthorized
Access`` body, checked before the body is read).

JSON routes without ``Content-Type: application/json`` are a 415, as the spec says (the real
server's answer depends on its Flask version: Flask 2.2, the newest that installs on its
``python:3.7-alpine`` image, answers 400). JSON answers are labelled ``application/json`` (the
real Flask 2.2 labels them ``text/html``; clients must read the body as JSON either way).

Lookups (``/get_images``, ``/get_uid_annotations``, ``/delete_images``): an empty key list on
``/get_images/<what>`` is a 500 (the real server's ``WHERE`` with no condition); a key asked
twice matches its image once; device ids compare case-insensitively (MariaDB); a key's
``datetime`` in one of the API's two forms is parsed, any other string is compared as text with
the stored ``YYYY-MM-DD HH:MM:SS`` (so that form finds its image and unparsed forms such as
``...T21:33:24`` without ``Z`` silently find nothing), a non-string is a 500. An unknown image
``<what>`` is a 500 only when a key matches an image (the real server fails making its URL), else
``[]``; any annotation ``<what>`` other than ``metadata`` returns the rows with ``json``.

Every other failure, upload failures above all, is a 500 with Werkzeug's HTML error page, never
JSON; ``/put_uid_annotations`` stores all its items or, on a 500, none. Download URLs are
``GET /files/<kind>/<device>/<file name>`` signed with the data folder's secret, valid 7 days
(the real server's are presigned S3 URLs).

:func:`make_app` builds the application, :func:`serve` runs it in the foreground
(``stickyctl devserver``) and :class:`DevServer` runs it in a background thread for tests.
"""

from __future__ import annotations

import collections
import datetime as dt
import functools
import hmac
import logging
import sys
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from werkzeug.exceptions import (
    Forbidden,
    HTTPException,
    InternalServerError,
    NotFound,
)
from werkzeug.routing import Map, Rule
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server
from werkzeug.wrappers import Request, Response

from agent.devserver import User
from agent.devserver.store import Store
from agent.devserver.values import StoreError, parse_datetime
from agent.devserver.wire import (
    forbidden,
    json_list,
    json_response,
    like_regex,
    string_field,
    unauthorized,
    unique_keys,
)

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

log = logging.getLogger("agent.devserver")

Clock = Callable[[], float]
#: A token lives 24 h on the real server.
TOKEN_LIFETIME = 86400.0
#: Presigned download URLs are valid 7 days.
URL_LIFETIME = 7 * 86400
#: nginx's ``client_max_body_size 100M`` in front of the real server.
MAX_CONTENT_LENGTH = 100 * 1024 * 1024
IMAGE_WHATS = ("metadata", "image", "thumbnail", "thumbnail-mini")

_ROUTES = Map(
    [
        Rule("/get_token", endpoint="get_token", methods=["POST"]),
        Rule("/get_images/<what>", endpoint="get_images", methods=["POST"]),
        Rule("/get_image_series/<what>", endpoint="get_image_series", methods=["POST"]),
        Rule("/_put_new_images", endpoint="put_new_images", methods=["POST"]),
        Rule("/put_uid_annotations", endpoint="put_uid_annotations", methods=["POST"]),
        Rule("/get_uid_annotations/<what>", endpoint="get_uid_annotations", methods=["POST"]),
        Rule("/get_uid_annotations_series/<what>", endpoint="get_uid_annotations_series", methods=["POST"]),
        Rule("/get_users", endpoint="get_users", methods=["POST"]),
        Rule("/delete_images", endpoint="delete_images", methods=["POST"]),
        Rule("/files/<path:key>", endpoint="files", methods=["GET"]),
    ]
)


class WSGIApp:
    """The devserver application: a WSGI callable over one data folder and a set of users.

    ``requests`` counts the requests per path (``/files`` for all downloads), for tests.
    """

    def __init__(self, data_dir: Path, users: list[User], token_lifetime: float, clock: Clock) -> None:
        names = [u.name for u in users]
        if len(set(names)) != len(names):
            raise ValueError(f"user names must be unique, got {names}")
        self.store = Store(data_dir)
        self.users = {u.name: u for u in users}
        self.user_ids = {u.name: self.store.user_id(u.name) for u in users}
        self.token_lifetime = token_lifetime
        self.clock = clock
        self.requests: collections.Counter[str] = collections.Counter()
        self._count_lock = threading.Lock()

    def close(self) -> None:
        """Close the database."""
        self.store.close()

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        """Given a WSGI environment, answer the request."""
        request = Request(environ)
        request.max_content_length = MAX_CONTENT_LENGTH
        return self.dispatch(request)(environ, start_response)

    def dispatch(self, request: Request) -> Response:
        """Given a request, return the response (errors included: this never raises)."""
        adapter = _ROUTES.bind_to_environ(request.environ)
        try:
            endpoint, args = adapter.match()
        except HTTPException as exc:
            self._count(request.path)
            return exc.get_response()
        self._count("/files" if endpoint == "files" else request.path)
        try:
            if endpoint == "files":
                return self.files(request, args["key"])
            user = self.authenticate(request)
            if user is None:
                return unauthorized()
            if not self.allowed(endpoint, user):
                return forbidden()
            handler: Callable[..., Response] = getattr(self, endpoint)
            return handler(request, user, **args)
        except HTTPException as exc:
            return exc.get_response()
        except (StoreError, KeyError, TypeError, ValueError) as exc:
            log.warning("500 on %s (%s): %s", request.path, type(exc).__name__, exc)
        except Exception:
            log.exception("500 on %s: unexpected error", request.path)
        return InternalServerError().get_response()

    def _count(self, route: str) -> None:
        with self._count_lock:
            self.requests[route] += 1

    def _now(self) -> dt.datetime:
        return dt.datetime.fromtimestamp(self.clock(), dt.UTC).replace(microsecond=0)

    def authenticate(self, request: Request) -> User | None:
        """Given a request, return its user (Basic ``name:password`` or ``token:``), else None."""
        auth = request.authorization
        if auth is None or auth.type != "basic" or not auth.username:
            return None
        name = self.store.signer.token_user(auth.username, self.clock())
        if name is not None:  # the real server tries the token first and then ignores the password
            return self.users.get(name)
        if not auth.password:
            return None
        user = self.users.get(auth.username)
        if user is None or not hmac.compare_digest(user.password.encode(), auth.password.encode()):
            return None
        return user

    @staticmethod
    def allowed(endpoint: str, user: User) -> bool:
        """Given a route and its authenticated user, return whether the user's role may call it
        (checked before the body is read, as ``login_required(role=...)`` does)."""
        if endpoint in ("put_new_images", "put_uid_annotations"):
            return user.can_write
        if endpoint in ("delete_images", "get_users"):
            return user.is_admin
        return True

    # -- routes (each given the request, the user and the URL's arguments) --------------------

    def get_token(self, request: Request, user: User) -> Response:
        """Return ``{"token", "expiration"}`` for the authenticated user."""
        expiration = int(self.clock() + self.token_lifetime)
        return json_response(
            {"token": self.store.signer.make_token(user.name, expiration), "expiration": expiration}
        )

    def get_images(self, request: Request, user: User, what: str) -> Response:
        """Return one row per ``{"device", "datetime"}`` found; absent images are left out.

        An unknown ``<what>`` fails (500) only on a found image, as the real server fails only
        when it makes a row's URL: with no image found the answer is ``[]``.
        """
        queries = json_list(request)
        if not queries:  # the real server builds "... WHERE " with no condition
            raise StoreError("an empty key list: the SQL query has an empty WHERE clause")
        rows = []
        for device, when in unique_keys(queries):  # one SQL query: each image once
            row = self.store.get_image(device, when)
            if row is not None:
                rows.append(self._with_url(request, row, what))
        return json_response(rows)

    def get_image_series(self, request: Request, user: User, what: str) -> Response:
        """Return the rows of each ``{"device" (LIKE pattern), "start_datetime", "end_datetime"}``."""
        queries = json_list(request)
        if what not in IMAGE_WHATS:
            raise StoreError(f"unknown image kind {what!r}")
        rows: list[dict[str, Any]] = []
        for q in queries:
            start, end = parse_datetime(q.get("start_datetime")), parse_datetime(q.get("end_datetime"))
            series = self.store.image_series(string_field(q, "device"), start, end)
            rows.extend(self._with_url(request, row, what) for row in series)
        return json_response(rows)

    def put_new_images(self, request: Request, user: User) -> Response:
        """Store each multipart file part (field name = file name), each committed on its own."""
        parts = list(request.files.items())  # as Flask's files.items(): the first part of each name
        if not parts:
            raise StoreError("no file in the request")
        rows = []
        for name, storage in parts:
            blob = storage.read()
            md5 = request.form.get(f"{name}.md5")
            row = self.store.put_image(name, blob, md5, self.user_ids[user.name], self._now())
            rows.append(row)
        return json_response(rows)

    def put_uid_annotations(self, request: Request, user: User) -> Response:
        """Store every ``{"metadata", "annotations"}`` item, or none on a 500; return the rows
        with ``"json": ""`` and ``"api_user_id": null``."""
        return json_response(self.store.put_annotations(json_list(request), self._now()))

    def get_uid_annotations(self, request: Request, user: User, what: str) -> Response:
        """Return the annotation rows of each ``{"device", "datetime"}``; ``json`` is left out
        for ``metadata`` only (the real server includes it for any other ``<what>``)."""
        queries = json_list(request)
        rows: list[dict[str, Any]] = []
        for device, when in unique_keys(queries):
            rows.extend(self.store.get_annotations(device, when, with_json=what != "metadata"))
        return json_response(rows)

    def get_uid_annotations_series(self, request: Request, user: User, what: str) -> Response:
        """Return the annotation rows of the images of each ``{"device" (LIKE pattern),
        "start_datetime", "end_datetime"}``; ``json`` is left out for ``metadata`` only. The
        official client's ``get_images_with_uid_annotations_series`` calls it."""
        rows: list[dict[str, Any]] = []
        for q in json_list(request):
            start, end = parse_datetime(q.get("start_datetime")), parse_datetime(q.get("end_datetime"))
            series = self.store.annotation_series(string_field(q, "device"), start, end, what != "metadata")
            rows.extend(series)
        return json_response(rows)

    def get_users(self, request: Request, user: User) -> Response:
        """(admin only) Return the users whose name matches each ``{"username": <LIKE pattern>}``,
        as the real server does without its secrets: ``id``, ``username``, ``is_admin``,
        ``can_write`` (no ``email``, ``password_hash`` or creation date: the devserver keeps none)."""
        out: dict[str, dict[str, Any]] = {}
        for q in json_list(request):
            pattern = like_regex(string_field(q, "username"))
            for name in filter(pattern.fullmatch, self.users):
                u = self.users[name]
                out[name] = {"id": self.user_ids[name], "username": name, "is_admin": u.is_admin,
                             "can_write": u.can_write}  # fmt: skip
        return json_response(list(out.values()))

    def delete_images(self, request: Request, user: User) -> Response:
        """Delete each ``{"device", "datetime"}`` (admin only); return the deleted rows."""
        rows = []
        for device, when in unique_keys(json_list(request)):
            row = self.store.delete_image(device, when)
            if row is not None:
                rows.append(row)
        return json_response(rows)

    def files(self, request: Request, key: str) -> Response:
        """Serve a stored file through a signed URL; 403 if the signature is wrong or expired."""
        expires, signature = request.args.get("expires", ""), request.args.get("signature", "")
        if not expires.isdigit() or int(expires) <= self.clock():
            raise Forbidden("expired or missing 'expires'")
        if not self.store.signer.check(f"file\n{key}\n{expires}", signature):
            raise Forbidden("bad signature")
        path = self.store.object_path(key)
        if path is None:
            raise NotFound()
        return Response(path.read_bytes(), mimetype="image/jpeg")

    def _with_url(self, request: Request, row: dict[str, Any], what: str) -> dict[str, Any]:
        """Given an image row and a ``<what>``, return the row with its ``url``.

        Raise :class:`StoreError` for an unknown ``<what>``."""
        if what == "metadata":
            return dict(row, url="")
        if what not in IMAGE_WHATS:
            raise StoreError(f"unknown image kind {what!r}")
        stamp = parse_datetime(row["datetime"]).strftime("%Y-%m-%d_%H-%M-%S")
        key = f"{what}/{row['device']}/{row['device']}.{stamp}.jpg"
        expires = int(self.clock()) + URL_LIFETIME
        query = urlencode(
            {"expires": expires, "signature": self.store.signer.sign(f"file\n{key}\n{expires}")}
        )
        return dict(row, url=f"{request.host_url}files/{key}?{query}")


def make_app(
    data_dir: Path, users: list[User], token_lifetime: float = TOKEN_LIFETIME, *, clock: Clock = time.time
) -> WSGIApp:
    """Given a data folder (created if needed) and users, return the devserver WSGI application.

    ``clock`` returns unix seconds (tests inject one to expire tokens). Raise ``ValueError`` if
    two users share a name, :class:`StoreError` if the data folder's secret is unusable.
    """
    return WSGIApp(Path(data_dir), users, token_lifetime, clock)


class _QuietHandler(WSGIRequestHandler):
    """A request handler that does not log every request (tests)."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass


def _base_url(host: str, port: int) -> str:
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def serve(
    host: str, port: int, data_dir: Path, users: list[User], token_lifetime: float = TOKEN_LIFETIME
) -> None:
    """Given an address, a data folder and users, serve the devserver until interrupted."""
    app = make_app(data_dir, users, token_lifetime)
    try:
        server = make_server(host, port, app, threaded=True)
        accounts = ", ".join(f"{u.name} ({u.role})" for u in users) or "none"
        print(
            f"Sticky Pi devserver (development only, NOT for production) on "
            f"{_base_url(host, server.server_port)}, data in {data_dir}, users: {accounts}",
            file=sys.stderr,
        )
        server.serve_forever()  # returns on Ctrl-C and closes the socket
    finally:
        app.close()


class DevServer:
    """The devserver in a background thread, for tests: ``with DevServer(dir, users) as s: s.url``.

    ``port=0`` picks a free port; ``requests`` counts requests per path.
    """

    def __init__(
        self,
        data_dir: Path,
        users: list[User],
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        token_lifetime: float = TOKEN_LIFETIME,
        clock: Clock = time.time,
        quiet: bool = True,
    ) -> None:
        self.app = make_app(data_dir, users, token_lifetime, clock=clock)
        self.host, self.port, self.quiet = host, port, quiet
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None
        self._stopped = False

    @property
    def requests(self) -> collections.Counter[str]:
        """Return the per-path request counter."""
        return self.app.requests

    @property
    def url(self) -> str:
        """Return the base URL, without a trailing slash. Raise RuntimeError if not started."""
        if self._server is None:
            raise RuntimeError("the devserver is not started")
        return _base_url(self.host, self._server.server_port)

    def start(self) -> DevServer:
        """Listen and serve in a daemon thread; return self."""
        if self._stopped:
            raise RuntimeError("a stopped devserver cannot restart: make a new one on the same data folder")
        if self._server is None:
            handler = _QuietHandler if self.quiet else None
            self._server = make_server(self.host, self.port, self.app, threaded=True, request_handler=handler)
            serve = functools.partial(self._server.serve_forever, poll_interval=0.05)  # quick stop()
            self._thread = threading.Thread(target=serve, name="devserver", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, close the socket and the database (a stopped server cannot restart)."""
        if self._stopped:
            return
        self._stopped = True
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            if self._thread is not None:
                self._thread.join()
        self.app.close()

    def __enter__(self) -> DevServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
