"""The HTTP transport every sink shares: one session, timeouts, typed failures, capped answers.

One ``requests.Session`` per sink (keep-alive, a connection pool sized for the upload
workers), a connect and a read timeout on every call, a deadline for the whole answer
(:mod:`agent.sinks.deadline`), TLS verification always on (optionally with a private CA
bundle), a ``User-Agent`` naming the agent, no proxies from the environment, and no
redirects followed: a platform that redirects is misconfigured, and a redirect could carry
credentials elsewhere.

Every failure is a subclass of :class:`agent.errors.SyncError`:

- no connection, a timeout, a cut answer, 429/502/503/504 -> :class:`SinkUnreachable`
  (with the ``Retry-After`` it asked for, capped at :data:`MAX_RETRY_AFTER_S`);
- a redirect, an answer over the byte cap, a malformed Content-Length ->
  :class:`SinkProtocolError`;
- 401 -> :class:`SinkAuthError`; 403 -> :class:`SinkForbidden`;
- any other error status -> :class:`SinkRejected` (with the platform's own short message when
  the sink asks for it, never the credentials).

:meth:`HttpTransport.close` cuts every request in flight at once; no request starts after it.
"""

from __future__ import annotations

import base64
import json
import math
import re
import ssl
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import requests
from requests.auth import AuthBase
from urllib3.exceptions import HTTPError

from agent import __version__
from agent.errors import (
    ConfigError,
    SinkAuthError,
    SinkForbidden,
    SinkProtocolError,
    SinkRejected,
    SinkUnreachable,
)
from agent.sinks import deadline
from agent.sinks.base import MAX_ANSWER_BYTES
from agent.sinks.deadline import Deadlines
from agent.sinks.throttle import TokenBucket

#: The longest ``Retry-After`` obeyed: a server (or a proxy) cannot stop the sync for days.
MAX_RETRY_AFTER_S = 3600.0
#: The most of an error's body read for its message.
MAX_ERROR_BYTES = 4096
_READ_PIECE = 65536
_TRANSIENT_STATUS = {429, 502, 503, 504}
_MOVED_LOCATION = "X-Sticky-Agent-Location"


def retry_after(response: requests.Response) -> float | None:
    """Given a response, return the seconds its ``Retry-After`` asks for (capped), or None."""
    value = response.headers.get("Retry-After")
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None  # an HTTP date: back off as usual
    return min(max(0.0, seconds), MAX_RETRY_AFTER_S) if math.isfinite(seconds) else None


def _set_location_aside(response: requests.Response, *args: Any, **kwargs: Any) -> requests.Response:
    """A response hook: move ``Location`` aside. ``requests`` works out where a redirect goes even
    when not following it, and raises ValueError on a malformed one; no platform we talk to
    redirects an API call, so :meth:`HttpTransport.check` reports it, naming its target."""
    location = response.headers.pop("Location", None)
    if location is not None:
        response.headers[_MOVED_LOCATION] = location
    return response


def check_timeouts(section: str, connect_timeout: float, read_timeout: float) -> None:
    """Raise ConfigError if a timeout is not a positive finite number of seconds."""
    for key, value in (("connect_timeout", connect_timeout), ("read_timeout", read_timeout)):
        if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
            raise ConfigError(f"{section}.{key}: must be a positive number of seconds, got {value!r}")


def error_message(body: bytes) -> str:
    """Given an error answer's body, return its short one-line message (JSON ``message`` and
    ``details`` as Tator and the data lake send them, else the text), at most 200 characters."""
    text = body.decode("utf-8", "replace")
    try:
        answer = json.loads(text)
    except ValueError:
        answer = None
    if isinstance(answer, dict) and isinstance(answer.get("error"), dict):
        answer = answer["error"]  # LoopBack's {"error": {"statusCode", "name", "message"}}
    if isinstance(answer, dict):
        parts = [answer.get(k) for k in ("message", "error", "details", "detail")]
        text = ": ".join(str(p) for p in parts if isinstance(p, str | int | float) and str(p))
        if not text:
            text = json.dumps(answer)[:200]
    text = " ".join("".join(ch if ch.isprintable() else " " for ch in text).split())
    return text[:200]


class BasicUtf8(AuthBase):
    """HTTP Basic auth encoded as UTF-8, as the real server (werkzeug) decodes it (``requests``
    would encode as Latin-1 and fail on any other character)."""

    def __init__(self, username: str, password: str) -> None:
        self._value = "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode("ascii")

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers["Authorization"] = self._value
        return request


class HttpTransport:
    """HTTP calls to one platform, safe to share between upload threads."""

    def __init__(
        self,
        platform: str,
        section: str,
        *,
        connect_timeout: float = 10.0,
        read_timeout: float = 120.0,
        ca_bundle: Path | None = None,
        pool_size: int = 4,
        max_answer_bytes: int = MAX_ANSWER_BYTES,
        requests_per_second: float | None = None,
    ) -> None:
        """``platform`` names the remote in messages ("the API", "Tator"); ``section`` is the
        config key path of this sink's settings; ``requests_per_second`` paces every request
        (a platform that throttles its users). Raise ConfigError if a timeout is not a positive
        number or the CA bundle is not a readable PEM file."""
        check_timeouts(section, connect_timeout, read_timeout)
        if ca_bundle is not None:
            try:
                ssl.create_default_context(cafile=str(ca_bundle))
            except (OSError, ssl.SSLError) as e:
                why = "not a PEM bundle of CA certificates" if isinstance(e, ssl.SSLError) else e.strerror
                raise ConfigError(f"{section}.ca_bundle: cannot use {ca_bundle}: {why}") from None
        self.platform = platform
        self.section = section
        self.timeout = (float(connect_timeout), float(read_timeout))
        self.max_answer_bytes = max_answer_bytes
        self._closing = threading.Event()
        self._deadlines = Deadlines()
        self.session = requests.Session()
        adapter = self._deadlines.adapter(pool_connections=2, pool_maxsize=pool_size, max_retries=0)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)
        self.session.verify = str(ca_bundle) if ca_bundle else True
        self.session.headers["User-Agent"] = f"sticky-agent/{__version__}"
        self.session.trust_env = False  # no surprise proxies or .netrc credentials
        self.session.hooks["response"].append(_set_location_aside)
        #: Requests sent (for status and benchmarks).
        self.requests_sent = 0
        self._count_lock = threading.Lock()
        self._pace = TokenBucket(requests_per_second) if requests_per_second else None

    @property
    def closing(self) -> bool:
        return self._closing.is_set()

    def close(self) -> None:
        """Stop: every request in flight is cut at once, and no request starts after."""
        self._closing.set()
        self._deadlines.close()
        self.session.close()

    def watch(self) -> Any:
        """Return a context in which an answer must arrive in full within the read timeout."""
        return self._deadlines.watch(self.timeout[1])

    def send(self, method: str, url: str, route: str, **kw: Any) -> requests.Response:
        """Send one request without following redirects; return the response, body unread.
        Raise SinkUnreachable if it cannot be sent or answered, or the sink is closing."""
        if self._pace is not None:
            self._pace.take(1)
        if self._closing.is_set():
            raise SinkUnreachable(f"{route}: not sent, the sync is stopping")
        with self._count_lock:
            self.requests_sent += 1
        try:
            return self.session.request(
                method, url, timeout=self.timeout, allow_redirects=False, stream=True, **kw
            )
        except (requests.RequestException, OSError, ValueError) as e:
            self.raise_if_cut(route)
            if isinstance(e, requests.Timeout):
                raise SinkUnreachable(f"{route}: no answer in time ({type(e).__name__})") from None
            if isinstance(e, requests.ConnectionError):
                where = urlsplit(url).netloc
                raise SinkUnreachable(f"{route}: cannot reach {where} ({type(e).__name__})") from None
            if isinstance(e, ValueError) and not isinstance(e, requests.RequestException):
                raise
            raise SinkUnreachable(f"{route}: request failed ({type(e).__name__})") from None

    def raise_if_cut(self, route: str) -> None:
        """Raise SinkUnreachable if the request being made was cut by its deadline or a stop."""
        request = deadline.current()
        if (request is not None and request.stopped) or self._closing.is_set():
            raise SinkUnreachable(f"{route}: stopped, the sync is stopping")
        if request is not None and request.expired:
            raise SinkUnreachable(f"{route}: the answer took over {self.timeout[1]:g}s")

    def check(
        self,
        route: str,
        response: requests.Response,
        *,
        forbidden: str | None = None,
        unauthorized: str | None = None,
        read_error: bool = False,
    ) -> requests.Response:
        """Given a response, return it if its status is 2xx; else raise the typed error (see
        the module's docstring). ``forbidden``/``unauthorized`` replace the default message of
        403/401; with ``read_error`` the error's body (up to 4 kB) gives the message."""
        status = response.status_code
        if 200 <= status < 300:
            return response
        detail = ""
        if read_error and status >= 400:
            try:
                detail = error_message(self._read_capped(response, MAX_ERROR_BYTES))
            except (requests.RequestException, OSError, ValueError, HTTPError):
                detail = ""
        response.close()
        who = self.platform
        if 300 <= status < 400:
            try:
                where = urlsplit(response.headers.get(_MOVED_LOCATION, ""))
                target = f" to {where.scheme}://{where.hostname}" if where.scheme and where.hostname else ""
            except ValueError:
                target = ""
            raise SinkProtocolError(
                f"{route}: {who} answered a redirect ({status}){target}; it never redirects: "
                f"check {self.section}"
            )
        suffix = f": {detail}" if detail else ""
        if status in _TRANSIENT_STATUS:
            raise SinkUnreachable(f"{route}: {who} is busy ({status}){suffix}", retry_after(response))
        if status == 401:
            why = unauthorized or f"{who} refused our credentials (401)"
            raise SinkAuthError(f"{route}: {why}{suffix}")
        if status == 403:
            why = forbidden or f"{who} does not allow this (403)"
            raise SinkForbidden(f"{route}: {why}{suffix}")
        if status < 200:
            raise SinkProtocolError(f"{route}: {who} answered an unexpected status ({status})")
        reason = " ".join((response.reason or "").split())[:60]
        raise SinkRejected(f"{route}: {who} answered {status} {reason}".rstrip() + suffix)

    def _read_capped(self, response: requests.Response, limit: int) -> bytes:
        raw = response.raw
        read: Callable[..., bytes] = getattr(raw, "read1", None) or raw.read
        body = bytearray()
        while len(body) <= limit and (piece := read(min(_READ_PIECE, limit + 1), decode_content=True)):
            body += piece
        return bytes(body[:limit])

    def read(self, route: str, response: requests.Response) -> bytes:
        """Return the body of ``response``. Raise SinkProtocolError if it is over
        ``max_answer_bytes``, SinkUnreachable if it takes longer than the read timeout, is cut,
        or the sink is closed meanwhile."""
        limit = self.max_answer_bytes
        too_big = f"{route}: {self.platform}'s answer is over the {limit}-byte limit"
        with response:
            declared = response.headers.get("Content-Length")
            if declared is not None:
                if not re.fullmatch(r"[0-9]{1,18}", declared.strip()):
                    raise SinkProtocolError(f"{route}: {self.platform} sent a malformed Content-Length")
                if int(declared) > limit:
                    raise SinkProtocolError(too_big)
            raw = response.raw
            read = getattr(raw, "read1", None) or raw.read
            body = bytearray()
            try:
                while piece := read(_READ_PIECE, decode_content=True):
                    body += piece
                    if len(body) > limit:
                        raise SinkProtocolError(too_big)
                    self.raise_if_cut(route)
            except (requests.RequestException, OSError, ValueError, HTTPError) as e:
                self.raise_if_cut(route)
                raise SinkUnreachable(f"{route}: the answer was cut ({type(e).__name__})") from None
            self.raise_if_cut(route)  # a cut socket reads as the end of a close-delimited body
        return bytes(body)

    def call(self, method: str, url: str, route: str, *, read_error: bool = True, **kw: Any) -> bytes:
        """Send one request, check its status and return its body, all within the deadline.
        Raise the typed errors of :meth:`send`, :meth:`check` and :meth:`read`."""
        with self.watch():
            response = self.send(method, url, route, **kw)
            return self.read(route, self.check(route, response, read_error=read_error))

    def call_json(self, method: str, url: str, route: str, **kw: Any) -> Any:
        """Like :meth:`call`, returning the parsed JSON. Raise SinkProtocolError if it is not JSON."""
        body = self.call(method, url, route, **kw)
        try:
            return json.loads(body) if body.strip() else None
        except ValueError:
            raise SinkProtocolError(f"{route}: {self.platform} answered something that is not JSON") from None
