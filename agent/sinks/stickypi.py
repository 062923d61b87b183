"""The Sticky Pi API sink: the wire protocol of ``shared/specs/sticky-pi-api.md``, quirks included.

One ``requests.Session`` (keep-alive, a connection pool sized for the upload workers),
a connect and a read timeout on every call, TLS verification always on (optionally
with a private CA bundle), a ``User-Agent`` naming the agent and its version.

Authentication: ``/get_token`` with Basic ``username:password``; every later call sends
Basic ``<token>:`` (empty password). The token is renewed 60 s before it expires and
once after a 401. Neither password nor token appears in an exception message.

Every failure of the real server is a 500 with an HTML body, whatever the cause: this
sink reports it as :class:`SinkRejected` and the worker asks ``/get_images/metadata``
what the server now holds.

Nothing the server sends is trusted (:mod:`agent.sinks.answers` checks every answer): a
redirect, a body over :data:`MAX_ANSWER_BYTES`, an answer not done within the read timeout,
JSON of the wrong shape, all raise :class:`SinkProtocolError`; the answer is read in pieces
and :meth:`StickyPiSink.close` stops a read in progress, so a stop never waits for it.
"""

from __future__ import annotations

import base64
import datetime as dt
import logging
import math
import re
import secrets
import ssl
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import requests
from requests.auth import AuthBase
from urllib3.exceptions import HTTPError

from agent import __version__
from agent.config import SyncConfig
from agent.errors import (
    ConfigError,
    SinkAuthError,
    SinkForbidden,
    SinkProtocolError,
    SinkRejected,
    SinkUnreachable,
)
from agent.sinks import answers, deadline
from agent.sinks.answers import parse_api_datetime
from agent.sinks.base import AnnotationBatch, ImageKey, RemoteImage
from agent.sinks.credentials import Credentials, load_credentials
from agent.sinks.deadline import Deadlines
from agent.sinks.throttle import Bandwidth

__all__ = ["StickyPiSink", "api_datetime", "make_sink", "parse_api_datetime"]

log = logging.getLogger(__name__)

TOKEN_MARGIN_S = 60
#: How long a token is used (unless refused first) when it arrives already expired by our
#: clock: the trap's clock or the server's is wrong, and asking again would not help.
SKEWED_TOKEN_USE_S = 3600.0
LOOKUP_CHUNK = 200
#: The longest ``Retry-After`` obeyed: a server (or a proxy) cannot stop the sync for days.
MAX_RETRY_AFTER_S = 3600.0
#: The largest answer read: 200 image rows are about 100 kB.
MAX_ANSWER_BYTES = 8 * 2**20
_READ_PIECE = 65536
_TRANSIENT_STATUS = {429, 502, 503, 504}


def api_datetime(when: dt.datetime) -> str:
    """Return ``YYYY-MM-DDTHH:MM:SSZ`` for an aware datetime (the API's form)."""
    return when.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _retry_after(response: requests.Response) -> float | None:
    value = response.headers.get("Retry-After")
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None  # an HTTP date: back off as usual
    return min(max(0.0, seconds), MAX_RETRY_AFTER_S) if math.isfinite(seconds) else None


class MultipartBody:
    """A ``multipart/form-data`` body for one image plus its ``<name>.md5`` field, streamed
    through the bandwidth cap. ``requests`` sends it with a Content-Length (no chunking)."""

    def __init__(self, name: str, data: bytes, md5: str, throttle: Bandwidth | None) -> None:
        self.boundary = "sticky-" + secrets.token_hex(12)
        b, n = self.boundary.encode(), name.encode()
        head = (
            b"--" + b + b'\r\nContent-Disposition: form-data; name="' + n + b'.md5"\r\n\r\n'
            + md5.encode() + b"\r\n"
            + b"--" + b + b'\r\nContent-Disposition: form-data; name="' + n
            + b'"; filename="' + n + b'"\r\nContent-Type: image/jpeg\r\n\r\n'
        )  # fmt: skip
        self._body = memoryview(head + data + b"\r\n--" + b + b"--\r\n")
        self._pos = 0
        self._throttle = throttle

    @property
    def content_type(self) -> str:
        return f"multipart/form-data; boundary={self.boundary}"

    def __len__(self) -> int:
        return len(self._body)

    def __iter__(self) -> Iterator[bytes]:
        while chunk := self.read(65536):
            yield chunk

    def read(self, n: int = -1) -> bytes:
        left = len(self._body) - self._pos
        n = left if n < 0 else min(n, left)
        if self._throttle is not None:
            n = min(n, 16384)
            self._throttle.take(n)
        chunk = bytes(self._body[self._pos : self._pos + n])
        self._pos += n
        return chunk


_MOVED_LOCATION = "X-Sticky-Agent-Location"


def _set_location_aside(response: requests.Response, *args: Any, **kwargs: Any) -> requests.Response:
    """A response hook: move ``Location`` aside. ``requests`` works out where a redirect goes even
    when not following it, and raises ValueError on a malformed one; the API never redirects,
    so :meth:`StickyPiSink._check` reports any redirect, naming its target from this copy."""
    location = response.headers.pop("Location", None)
    if location is not None:
        response.headers[_MOVED_LOCATION] = location
    return response


class _BasicUtf8(AuthBase):
    """HTTP Basic auth encoded as UTF-8, as the real server (werkzeug) decodes it (``requests``
    would encode as Latin-1 and fail on any other character)."""

    def __init__(self, username: str, password: str) -> None:
        self._value = "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode("ascii")

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers["Authorization"] = self._value
        return request


class StickyPiSink:
    """A client of one Sticky Pi API server, safe to share between upload threads."""

    name = "stickypi"

    def __init__(
        self,
        url: str,
        credentials: Credentials,
        *,
        connect_timeout: float = 10.0,
        read_timeout: float = 120.0,
        ca_bundle: Path | None = None,
        pool_size: int = 4,
        clock: Callable[[], float] = time.time,
        max_answer_bytes: int = MAX_ANSWER_BYTES,
    ) -> None:
        """Raise ConfigError if a timeout is not a positive number or the CA bundle is not a
        readable PEM file."""
        for key, value in (("connect_timeout", connect_timeout), ("read_timeout", read_timeout)):
            if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
                raise ConfigError(f"sync.{key}: must be a positive number of seconds, got {value!r}")
        if ca_bundle is not None:
            try:
                ssl.create_default_context(cafile=str(ca_bundle))
            except (OSError, ssl.SSLError) as e:
                why = "not a PEM bundle of CA certificates" if isinstance(e, ssl.SSLError) else e.strerror
                raise ConfigError(f"sync.ca_bundle: cannot use {ca_bundle}: {why}") from None
        self.url = url.rstrip("/")
        self._credentials = credentials
        self.timeout = (float(connect_timeout), float(read_timeout))
        self.max_answer_bytes = max_answer_bytes
        self._clock = clock
        self._token: str | None = None
        self._expiration = 0.0
        self._token_lock = threading.Lock()
        self._closing = threading.Event()
        self._warned_skew = False
        self.session = requests.Session()
        self._deadlines = Deadlines()
        adapter = self._deadlines.adapter(pool_connections=1, pool_maxsize=pool_size, max_retries=0)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)
        self.session.verify = str(ca_bundle) if ca_bundle else True
        self.session.headers["User-Agent"] = f"sticky-agent/{__version__}"
        self.session.trust_env = False  # no surprise proxies or .netrc credentials
        self.session.hooks["response"].append(_set_location_aside)
        #: Requests sent, by route (for status and benchmarks).
        self.requests_sent = 0

    def close(self) -> None:
        """Stop: every request in flight is cut at once, and no request starts after."""
        self._closing.set()
        self._deadlines.close()
        self.session.close()

    # -- transport ----------------------------------------------------------------------

    def _send(self, route: str, auth: tuple[str, str], **kw: Any) -> requests.Response:
        """POST ``route`` without following redirects; return the response, body unread."""
        if self._closing.is_set():
            raise SinkUnreachable(f"{route}: not sent, the sync is stopping")
        self.requests_sent += 1
        try:
            return self.session.post(
                self.url + route,
                auth=_BasicUtf8(*auth),
                timeout=self.timeout,
                allow_redirects=False,
                stream=True,
                **kw,
            )
        except (requests.RequestException, OSError, ValueError) as e:
            self._raise_if_cut(route)
            if isinstance(e, requests.Timeout):
                raise SinkUnreachable(f"{route}: no answer in time ({type(e).__name__})") from None
            if isinstance(e, requests.ConnectionError):
                raise SinkUnreachable(f"{route}: cannot reach {self.url} ({type(e).__name__})") from None
            if isinstance(e, ValueError) and not isinstance(e, requests.RequestException):
                raise
            raise SinkUnreachable(f"{route}: request failed ({type(e).__name__})") from None

    def _raise_if_cut(self, route: str) -> None:
        """Raise SinkUnreachable if the request being made was cut by its deadline or a stop."""
        request = deadline.current()
        if (request is not None and request.stopped) or self._closing.is_set():
            raise SinkUnreachable(f"{route}: stopped, the sync is stopping")
        if request is not None and request.expired:
            raise SinkUnreachable(f"{route}: the answer took over {self.timeout[1]:g}s")

    def _check(self, route: str, response: requests.Response) -> requests.Response:
        status = response.status_code
        if 200 <= status < 300:
            return response
        response.close()  # an error's body is never read: it could be anything, of any size
        if 300 <= status < 400:
            try:
                where = urlsplit(response.headers.get(_MOVED_LOCATION, ""))
                target = f" to {where.scheme}://{where.hostname}" if where.scheme and where.hostname else ""
            except ValueError:
                target = ""
            raise SinkProtocolError(
                f"{route}: the API answered a redirect ({status}){target}; it never redirects: "
                "check [sync] url"
            )
        if status in _TRANSIENT_STATUS:
            raise SinkUnreachable(f"{route}: the API is busy ({status})", _retry_after(response))
        if status == 401:
            raise SinkAuthError(f"{route}: the API refused our credentials (401)")
        if status == 403:
            raise SinkForbidden(
                f"{route}: the API account {self._credentials.username!r} may not do this (403); "
                "it needs read-write access"
            )
        if status < 200:
            raise SinkProtocolError(f"{route}: the API answered an unexpected status ({status})")
        reason = " ".join((response.reason or "").split())[:60]
        raise SinkRejected(f"{route}: the API answered {status} {reason}".rstrip())

    def _read(self, route: str, response: requests.Response) -> bytes:
        """Return the body of ``response``. Raise SinkProtocolError if it is over
        ``max_answer_bytes``, SinkUnreachable if it takes longer than the read timeout, is cut,
        or the sink is closed meanwhile."""
        limit = self.max_answer_bytes
        too_big = f"{route}: the API's answer is over the {limit}-byte limit"
        with response:
            declared = response.headers.get("Content-Length")
            if declared is not None:
                if not re.fullmatch(r"[0-9]{1,18}", declared.strip()):
                    raise SinkProtocolError(f"{route}: the API sent a malformed Content-Length")
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
                    self._raise_if_cut(route)
            except (requests.RequestException, OSError, ValueError, HTTPError) as e:
                self._raise_if_cut(route)
                raise SinkUnreachable(f"{route}: the answer was cut ({type(e).__name__})") from None
            self._raise_if_cut(route)  # a cut socket reads as the end of a close-delimited body
        return bytes(body)

    def _new_token(self) -> None:
        creds = self._credentials
        with self._deadlines.watch(self.timeout[1]):
            response = self._send("/get_token", (creds.username, creds.password))
            if response.status_code == 401:
                response.close()
                raise SinkAuthError(
                    f"the API refused the username/password of {creds.username!r} (401); "
                    "check the credentials file"
                )
            body = self._read("/get_token", self._check("/get_token", response))
        token, expiration = answers.token_answer(body)
        now = self._clock()
        if expiration < now + TOKEN_MARGIN_S:
            # Expired on arrival: one of the clocks is wrong. Asking again would get the same,
            # so use it until the API refuses it (a 401 renews it once) or for a while.
            if not self._warned_skew:
                self._warned_skew = True
                log.warning(
                    "the API's token expires %.0fs from now by this trap's clock: is the clock right? "
                    "using the token until the API refuses it",
                    expiration - now,
                )
            expiration = now + SKEWED_TOKEN_USE_S
        self._token, self._expiration = token, expiration

    def _ensure_token(self, force: bool = False) -> str:
        with self._token_lock:
            if force or self._token is None or self._expiration < self._clock() + TOKEN_MARGIN_S:
                self._new_token()
            assert self._token is not None
            return self._token

    def _post(self, route: str, make_kwargs: Callable[[], dict[str, Any]]) -> bytes:
        """POST with the token; on a 401 renew the token once and try again. Return the body."""
        token = self._ensure_token()
        with self._deadlines.watch(self.timeout[1]):
            response = self._send(route, (token, ""), **make_kwargs())
            if response.status_code == 401:
                response.close()
                token = self._ensure_token(force=True)
                response = self._send(route, (token, ""), **make_kwargs())
            return self._read(route, self._check(route, response))

    def _post_json(self, route: str, body: Any) -> bytes:
        return self._post(route, lambda: {"json": body})

    # -- the Sink protocol ----------------------------------------------------------------

    def probe(self) -> None:
        """Check reachability and credentials with a fresh ``/get_token`` (never an empty
        ``/get_images`` query: the real server answers that with a 500)."""
        self._ensure_token(force=True)

    def lookup_images(self, keys: list[ImageKey]) -> dict[ImageKey, RemoteImage]:
        route = "/get_images/metadata"
        found: dict[ImageKey, RemoteImage] = {}
        if not keys:  # the real server answers an empty key list with a 500
            return found
        for i in range(0, len(keys), LOOKUP_CHUNK):
            body = [{"device": d, "datetime": api_datetime(t)} for d, t in keys[i : i + LOOKUP_CHUNK]]
            found.update(answers.image_rows(route, self._post_json(route, body)))
        return found

    def upload_image(self, path: Path, data: bytes, md5: str, throttle: Any = None) -> None:
        def body() -> dict[str, Any]:
            multipart = MultipartBody(path.name, data, md5, throttle)
            return {"data": multipart, "headers": {"Content-Type": multipart.content_type}}

        answers.list_answer("/_put_new_images", self._post("/_put_new_images", body))

    def lookup_annotations(self, keys: list[ImageKey]) -> set[tuple[ImageKey, str, str]]:
        if not keys:
            return set()
        route = "/get_uid_annotations/metadata"
        ids = {img.remote_id: key for key, img in self.lookup_images(keys).items()}
        out: set[tuple[ImageKey, str, str]] = set()
        for i in range(0, len(keys), LOOKUP_CHUNK):
            body = [{"device": d, "datetime": api_datetime(t)} for d, t in keys[i : i + LOOKUP_CHUNK]]
            for parent, algo_name, algo_version in answers.annotation_rows(
                route, self._post_json(route, body)
            ):
                key = ids.get(parent) if parent is not None else None
                if key is not None:
                    out.add((key, algo_name, algo_version))
        return out

    def upload_annotations(self, batch: AnnotationBatch) -> None:
        device, when = batch.key
        body = [
            {
                "metadata": {
                    "algo_name": batch.algo_name,
                    "algo_version": batch.algo_version,
                    "device": device,
                    "datetime": api_datetime(when),
                    "md5": batch.md5,
                },
                "annotations": batch.annotations,
            }
        ]
        answers.list_answer("/put_uid_annotations", self._post_json("/put_uid_annotations", body))


def make_sink(config: SyncConfig, environ: Mapping[str, str] | None = None) -> StickyPiSink:
    """Given the ``[sync]`` config, return a Sticky Pi API sink. Raise CredentialsError if the
    credentials are missing, malformed or readable by others."""
    return StickyPiSink(
        config.url,
        load_credentials(config, environ),
        connect_timeout=config.connect_timeout,
        read_timeout=config.read_timeout,
        ca_bundle=config.ca_bundle,
        pool_size=config.parallelism + 2,
    )
