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

import datetime as dt
import logging
import secrets
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import field_validator

from agent.errors import (
    SinkAuthError,
)
from agent.registry import register
from agent.sinks import (
    answers,
    transport,  # the HTTP transport: loaded when a sink is made
)
from agent.sinks.answers import parse_api_datetime
from agent.sinks.base import (
    MAX_ANSWER_BYTES,
    AnnotationBatch,
    ImageKey,
    ImageRecord,
    RemoteImage,
    SinkSettings,
    check_url,
)
from agent.sinks.credentials import Credentials, load_credentials
from agent.sinks.throttle import Bandwidth, ThrottledBody

if TYPE_CHECKING:
    import requests


__all__ = ["StickyPiSettings", "StickyPiSink", "api_datetime", "make_sink", "parse_api_datetime"]

log = logging.getLogger(__name__)

TOKEN_MARGIN_S = 60
#: How long a token is used (unless refused first) when it arrives already expired by our
#: clock: the trap's clock or the server's is wrong, and asking again would not help.
SKEWED_TOKEN_USE_S = 3600.0
LOOKUP_CHUNK = 200


class StickyPiSettings(SinkSettings):
    """``[[sink]] type = "stickypi"``: a Sticky Pi API server (or the legacy ``[sync]`` table).

    The credentials file holds ``username:password`` of an API account with read-write access.
    """

    type: Literal["stickypi"]
    #: ``https://host[:port][/path]`` (``http://`` only to this machine).
    url: str
    credential_name: str = "sticky-api"

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        return check_url(v)


def api_datetime(when: dt.datetime) -> str:
    """Return ``YYYY-MM-DDTHH:MM:SSZ`` for an aware datetime (the API's form)."""
    return when.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class MultipartBody(ThrottledBody):
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
        super().__init__(head + data + b"\r\n--" + b + b"--\r\n", throttle)

    @property
    def content_type(self) -> str:
        return f"multipart/form-data; boundary={self.boundary}"


class StickyPiSink:
    """A client of one Sticky Pi API server, safe to share between upload threads."""

    def __init__(
        self,
        url: str,
        credentials: Credentials,
        *,
        name: str = "stickypi",
        section: str = "sync",
        connect_timeout: float = 10.0,
        read_timeout: float = 120.0,
        ca_bundle: Path | None = None,
        pool_size: int = 4,
        clock: Callable[[], float] = time.time,
        max_answer_bytes: int = MAX_ANSWER_BYTES,
    ) -> None:
        """Raise ConfigError if a timeout is not a positive number or the CA bundle is not a
        readable PEM file."""
        self.name = name
        self.http = transport.HttpTransport(
            "the API",
            section,
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            ca_bundle=ca_bundle,
            pool_size=pool_size,
            max_answer_bytes=max_answer_bytes,
        )
        self.url = url.rstrip("/")
        self._credentials = credentials
        self.timeout = self.http.timeout
        self._clock = clock
        self._token: str | None = None
        self._expiration = 0.0
        self._token_lock = threading.Lock()
        self._warned_skew = False

    @property
    def requests_sent(self) -> int:
        """Requests sent (for status and benchmarks)."""
        return self.http.requests_sent

    def close(self) -> None:
        """Stop: every request in flight is cut at once, and no request starts after."""
        self.http.close()

    # -- transport ----------------------------------------------------------------------

    def _send(self, route: str, auth: tuple[str, str], **kw: Any) -> requests.Response:
        """POST ``route`` without following redirects; return the response, body unread."""
        return self.http.send("POST", self.url + route, route, auth=transport.BasicUtf8(*auth), **kw)

    def _check(self, route: str, response: requests.Response) -> requests.Response:
        return self.http.check(
            route,
            response,
            unauthorized="the API refused our credentials (401)",
            forbidden=f"the API account {self._credentials.username!r} may not do this (403); "
            "it needs read-write access",
        )

    def _read(self, route: str, response: requests.Response) -> bytes:
        return self.http.read(route, response)

    def _new_token(self) -> None:
        creds = self._credentials
        with self.http.watch():
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
        with self.http.watch():
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

    def lookup_images(self, images: list[ImageRecord]) -> dict[ImageKey, RemoteImage]:
        return self.lookup_keys([i.key for i in images])

    def lookup_keys(self, keys: list[ImageKey]) -> dict[ImageKey, RemoteImage]:
        """Given image keys, return what the server holds among them (one query per 200)."""
        route = "/get_images/metadata"
        found: dict[ImageKey, RemoteImage] = {}
        if not keys:  # the real server answers an empty key list with a 500
            return found
        for i in range(0, len(keys), LOOKUP_CHUNK):
            body = [{"device": d, "datetime": api_datetime(t)} for d, t in keys[i : i + LOOKUP_CHUNK]]
            found.update(answers.image_rows(route, self._post_json(route, body)))
        return found

    def upload_image(self, image: ImageRecord, data: bytes, throttle: Bandwidth | None = None) -> None:
        def body() -> dict[str, Any]:
            multipart = MultipartBody(image.name, data, image.md5, throttle)
            return {"data": multipart, "headers": {"Content-Type": multipart.content_type}}

        answers.list_answer("/_put_new_images", self._post("/_put_new_images", body))

    def lookup_annotations(self, images: list[ImageRecord]) -> set[tuple[ImageKey, str, str]]:
        keys = sorted({i.key for i in images})
        if not keys:
            return set()
        route = "/get_uid_annotations/metadata"
        ids = {img.remote_id: key for key, img in self.lookup_keys(keys).items()}
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

    def upload_annotations(self, image: ImageRecord, batch: AnnotationBatch) -> None:
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


@register("sink", StickyPiSettings)
def make_sink(config: StickyPiSettings, environ: Mapping[str, str] | None = None) -> StickyPiSink:
    """Given a Sticky Pi sink's settings, return its sink. Raise CredentialsError if the
    credentials are missing, malformed or readable by others."""
    return StickyPiSink(
        config.url,
        load_credentials(config, environ),
        name=config.name,
        section=config.section,
        **config.http_options(),
    )
