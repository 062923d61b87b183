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
"""

from __future__ import annotations

import datetime as dt
import secrets
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import requests
from requests.adapters import HTTPAdapter

from agent import __version__
from agent.config import SyncConfig
from agent.errors import SinkAuthError, SinkForbidden, SinkRejected, SinkUnreachable
from agent.sync.credentials import Credentials, load_credentials
from agent.sync.sink import AnnotationBatch, ImageKey, RemoteImage
from agent.sync.throttle import Bandwidth

TOKEN_MARGIN_S = 60
LOOKUP_CHUNK = 200
_TRANSIENT_STATUS = {429, 502, 503, 504}


def api_datetime(when: dt.datetime) -> str:
    """Return ``YYYY-MM-DDTHH:MM:SSZ`` for an aware datetime (the API's form)."""
    return when.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_api_datetime(value: str) -> dt.datetime:
    """Parse the API's ``YYYY-MM-DDTHH:MM:SSZ`` (or legacy ``YYYY-MM-DD_HH-MM-SS``) as UTC."""
    for fmt in ("%Y-%m-%dT%H:%M:%SZ", "%Y-%m-%d_%H-%M-%S", "%Y-%m-%dT%H:%M:%S"):
        try:
            return dt.datetime.strptime(value, fmt).replace(tzinfo=dt.UTC)
        except ValueError:
            continue
    raise SinkRejected(f"the API sent a datetime in an unknown form: {value!r}")


def _retry_after(response: requests.Response) -> float | None:
    value = response.headers.get("Retry-After")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


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
    ) -> None:
        self.url = url.rstrip("/")
        self._credentials = credentials
        self.timeout = (connect_timeout, read_timeout)
        self._clock = clock
        self._token: str | None = None
        self._expiration = 0.0
        self._token_lock = threading.Lock()
        self.session = requests.Session()
        adapter = HTTPAdapter(pool_connections=1, pool_maxsize=pool_size, max_retries=0)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)
        self.session.verify = str(ca_bundle) if ca_bundle else True
        self.session.headers["User-Agent"] = f"sticky-agent/{__version__}"
        self.session.trust_env = False  # no surprise proxies or .netrc credentials
        #: Requests sent, by route (for status and benchmarks).
        self.requests_sent = 0

    def close(self) -> None:
        self.session.close()

    # -- transport ----------------------------------------------------------------------

    def _send(self, route: str, auth: tuple[str, str], **kw: Any) -> requests.Response:
        self.requests_sent += 1
        try:
            return self.session.post(self.url + route, auth=auth, timeout=self.timeout, **kw)
        except requests.Timeout as e:
            raise SinkUnreachable(f"{route}: no answer in time ({type(e).__name__})") from None
        except requests.ConnectionError as e:
            raise SinkUnreachable(f"{route}: cannot reach {self.url} ({type(e).__name__})") from None
        except requests.RequestException as e:
            raise SinkUnreachable(f"{route}: request failed ({type(e).__name__})") from None

    def _check(self, route: str, response: requests.Response) -> requests.Response:
        status = response.status_code
        if status < 400:
            return response
        if status in _TRANSIENT_STATUS:
            raise SinkUnreachable(f"{route}: the API is busy ({status})", _retry_after(response))
        if status == 401:
            raise SinkAuthError(f"{route}: the API refused our credentials (401)")
        if status == 403:
            raise SinkForbidden(
                f"{route}: the API account {self._credentials.username!r} may not do this (403); "
                "it needs read-write access"
            )
        reason = " ".join((response.reason or "").split())[:60]
        raise SinkRejected(f"{route}: the API answered {status} {reason}".rstrip())

    def _ensure_token(self, force: bool = False) -> str:
        with self._token_lock:
            if force or self._token is None or self._expiration < self._clock() + TOKEN_MARGIN_S:
                creds = self._credentials
                response = self._send("/get_token", (creds.username, creds.password))
                if response.status_code == 401:
                    raise SinkAuthError(
                        f"the API refused the username/password of {creds.username!r} (401); "
                        "check the credentials file"
                    )
                body = self._check("/get_token", response).json()
                self._token, self._expiration = str(body["token"]), float(body["expiration"])
            assert self._token is not None
            return self._token

    def _post(self, route: str, make_kwargs: Callable[[], dict[str, Any]]) -> requests.Response:
        """POST with the token; on a 401 renew the token once and try again."""
        token = self._ensure_token()
        response = self._send(route, (token, ""), **make_kwargs())
        if response.status_code == 401:
            token = self._ensure_token(force=True)
            response = self._send(route, (token, ""), **make_kwargs())
        return self._check(route, response)

    def _post_json(self, route: str, body: Any) -> Any:
        response = self._post(route, lambda: {"json": body})
        try:
            return response.json()
        except ValueError:
            raise SinkRejected(f"{route}: the API answered something that is not JSON") from None

    # -- the Sink protocol ----------------------------------------------------------------

    def probe(self) -> None:
        """Check reachability and credentials with a fresh ``/get_token`` (never an empty
        ``/get_images`` query: the real server answers that with a 500)."""
        self._ensure_token(force=True)

    def lookup_images(self, keys: list[ImageKey]) -> dict[ImageKey, RemoteImage]:
        found: dict[ImageKey, RemoteImage] = {}
        if not keys:  # the real server answers an empty key list with a 500
            return found
        for i in range(0, len(keys), LOOKUP_CHUNK):
            body = [{"device": d, "datetime": api_datetime(t)} for d, t in keys[i : i + LOOKUP_CHUNK]]
            for row in self._post_json("/get_images/metadata", body):
                key = (str(row["device"]), parse_api_datetime(str(row["datetime"])))
                found[key] = RemoteImage(md5=str(row["md5"]), remote_id=row.get("id"))
        return found

    def upload_image(self, path: Path, data: bytes, md5: str, throttle: Any = None) -> None:
        def body() -> dict[str, Any]:
            multipart = MultipartBody(path.name, data, md5, throttle)
            return {"data": multipart, "headers": {"Content-Type": multipart.content_type}}

        self._post("/_put_new_images", body)

    def lookup_annotations(self, keys: list[ImageKey]) -> set[tuple[ImageKey, str, str]]:
        if not keys:
            return set()
        ids = {img.remote_id: key for key, img in self.lookup_images(keys).items()}
        out: set[tuple[ImageKey, str, str]] = set()
        for i in range(0, len(keys), LOOKUP_CHUNK):
            body = [{"device": d, "datetime": api_datetime(t)} for d, t in keys[i : i + LOOKUP_CHUNK]]
            for row in self._post_json("/get_uid_annotations/metadata", body):
                key = ids.get(row.get("parent_image_id"))
                if key is not None:
                    out.add((key, str(row["algo_name"]), str(row["algo_version"])))
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
        self._post_json("/put_uid_annotations", body)


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
