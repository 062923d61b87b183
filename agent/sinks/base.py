"""The sink seam: what a sync worker asks of a remote platform, and every sink's common settings.

A sink answers "what do you hold?" for a batch of images, takes one image at a time, and
takes annotations for images it holds. Every method raises a subclass of
:class:`agent.errors.SyncError`: ``SinkUnreachable`` (back off and retry later),
``SinkAuthError``/``SinkForbidden`` (stop: an operator must fix the account),
``SinkRejected`` (this request was refused; ask again what the platform holds).

A backend is one module holding a settings class (a :class:`SinkSettings` with
``type: Literal["<name>"]``) and its sink, registered with :func:`agent.registry.register`
(``"sink"``). The sinks: the Sticky Pi API (:mod:`agent.sinks.stickypi`), Tator
(:mod:`agent.sinks.tator`), a LayerNext data lake (:mod:`agent.sinks.datalake`), and an
in-memory one for tests and demos (:mod:`agent.sinks.memory`). Each passes the same contract
tests (``tests/test_sink_contract.py``).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol
from urllib.parse import urlsplit

from pydantic import Field, PrivateAttr, field_validator

from agent.settings import Duration, _Section

if TYPE_CHECKING:
    from agent.sinks.throttle import Bandwidth

ImageKey = tuple[str, dt.datetime]  # (device, UTC datetime): an image's identity

#: The largest answer a sink reads: 200 Sticky Pi image rows are about 100 kB.
MAX_ANSWER_BYTES = 8 * 2**20

SINK_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,31}")


@dataclass(frozen=True)
class RemoteImage:
    """What the remote holds for one image.

    ``md5`` is the md5 of the JPEG bytes it holds, as the queue computes it (a sink whose
    platform hashes differently translates: a match is reported as our md5, anything else as
    the platform's own value, which then never equals ours). ``remote_id`` is the platform's
    id of the image, if it has one.
    """

    md5: str
    remote_id: int | str | None = None


@dataclass(frozen=True)
class ImageRecord:
    """One queued image as a sink sees it: its identity, file, fingerprint and record."""

    key: ImageKey
    #: The original on disk (absolute).
    path: Path
    md5: str
    size: int
    width: int
    height: int
    #: The picture's record (the EXIF UserComment values: temperature, humidity, battery,
    #: lat/lng...), and what else the queue keeps about it.
    metadata: dict[str, Any] = field(default_factory=dict, compare=False)
    manual: bool = False

    @property
    def name(self) -> str:
        """The file's name (``<device>.<datetime>.jpg``)."""
        return self.path.name


@dataclass(frozen=True)
class AnnotationBatch:
    """One image's annotations by one algorithm version, ready to send."""

    key: ImageKey
    md5: str
    algo_name: str
    algo_version: str
    #: Sticky Pi annotations: ``{"contour": [[[x, y]], ...], "name", "value", ...}`` in pixels.
    annotations: list[dict[str, Any]]


class Sink(Protocol):
    """One remote platform. Safe to share between the upload threads of one worker."""

    #: The sink's configured name (``[[sink]] name``).
    name: str

    def probe(self) -> None:
        """Return if the remote answers and accepts our credentials; raise SyncError otherwise."""

    def lookup_images(self, images: list[ImageRecord]) -> dict[ImageKey, RemoteImage]:
        """Return what the remote holds among ``images`` (absent ones are left out)."""
        ...

    def upload_image(self, image: ImageRecord, data: bytes, throttle: Bandwidth | None = None) -> None:
        """Send one image (``data`` are its bytes, already checked against ``image.md5``).
        Never creates a second copy of an image the remote already holds."""

    def lookup_annotations(self, images: list[ImageRecord]) -> set[tuple[ImageKey, str, str]]:
        """Return ``(key, algo_name, algo_version)`` for every annotation the remote holds."""
        ...

    def upload_annotations(self, image: ImageRecord, batch: AnnotationBatch) -> None:
        """Send one image's annotations (the image is verified on the remote). Sending the same
        batch again replaces it, never duplicates it."""

    def close(self) -> None:
        """Stop: requests in flight are cut; safe to call twice."""


def check_url(v: str) -> str:
    """Given a sink's ``url``, return it without a trailing slash. Raise ValueError unless it is
    ``https://host[:port][/path]``, or ``http://`` to a loopback host only (credentials go
    in its headers): no user or password, query, fragment, space or control character."""
    example = 'like "https://api.example.org"'
    if not re.fullmatch(r"[!-~]+", v):
        raise ValueError(f"must be a URL {example}, without spaces or control characters")
    parts = urlsplit(v)
    if "@" in parts.netloc:
        raise ValueError("must not hold a user or password: they go in the credentials file")
    try:
        port = parts.port
    except ValueError:
        raise ValueError(f"must be a URL {example}, with a port from 1 to 65535") from None
    if parts.scheme not in ("http", "https") or not parts.hostname or port == 0:
        raise ValueError(f'must be an http(s) URL {example}, got "{v}"')
    if parts.query or parts.fragment or v.endswith(("?", "#")):
        raise ValueError(f'must not have a query or fragment (the API\'s address only), got "{v}"')
    if not re.fullmatch(r"[A-Za-z0-9._~/-]*", parts.path) or "/." in parts.path:
        raise ValueError(f'must have a plain path, got "{v}"')
    if parts.scheme == "http" and not _is_loopback(parts.hostname):
        raise ValueError(
            "plain http:// is allowed only to this machine (127.0.0.1, ::1, localhost): "
            f"the credentials would cross the network in clear; use https://{parts.netloc}"
        )
    return v.rstrip("/")


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class SinkSettings(_Section):
    """The settings every ``[[sink]]`` has; each backend's settings class adds its own."""

    #: The backend (each settings class narrows it to its ``Literal`` name).
    type: str
    #: The sink's name: in status, logs, ``--sink NAME``, and the queue's delivery rows.
    name: str
    #: An original is deleted (retention) only once every required sink verifiably holds it.
    required: bool = True
    #: A file holding the secret (not readable by others). Default:
    #: ``$CREDENTIALS_DIRECTORY/<credential_name>`` (systemd ``LoadCredential=``).
    credentials: Path | None = None
    credential_name: str = "sticky-api"
    #: A CA bundle for a server with a private CA (TLS verification is always on).
    ca_bundle: Path | None = None
    connect_timeout: Duration = Field(default=10.0, ge=1, le=600)
    read_timeout: Duration = Field(default=120.0, ge=1, le=3600)
    parallelism: int = Field(default=2, ge=1, le=8)
    order: Literal["oldest", "newest"] = "oldest"
    batch_size: int = Field(default=32, ge=1, le=500)
    #: How often to check the platform while idle or unreachable (backoff grows to backoff_max).
    probe_interval: Duration = Field(default=60.0, ge=1, le=86_400)
    backoff_max: Duration = Field(default=900.0, ge=1, le=86_400)
    #: Uploads the platform keeps rejecting move to ``failed`` after this many tries.
    max_attempts: int = Field(default=5, ge=1, le=1000)
    #: ``failed`` images get one more try by themselves this often (nobody may be there to retry).
    retry_failed_interval: Duration = Field(default=3600.0, ge=60, le=7 * 86400)

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not SINK_NAME.fullmatch(v):
            raise ValueError(
                f"must be 1-32 lower-case letters, digits, '-' or '_' (starting with a letter or "
                f'digit), like "lab-api"; got {v!r}'
            )
        return v

    #: True if this sink came from the legacy ``[sync]`` table (set by the config loader).
    _legacy: bool = PrivateAttr(default=False)

    @property
    def section(self) -> str:
        """The config path of this sink in messages (``sync`` for the legacy ``[sync]`` table)."""
        return "sync" if self._legacy else f"sink.{self.name}"

    def http_options(self) -> dict[str, Any]:
        """Return the keywords every sink passes to its HTTP transport: timeouts, CA bundle, and
        a connection pool for the upload threads plus the lookups."""
        return {
            "connect_timeout": self.connect_timeout,
            "read_timeout": self.read_timeout,
            "ca_bundle": self.ca_bundle,
            "pool_size": self.parallelism + 2,
        }

    @property
    def address(self) -> str:
        """Where the platform is (for logs and status); each backend names its own key."""
        for key in ("url", "host"):
            value = getattr(self, key, None)
            if isinstance(value, str):
                return value
        return self.name


def open_sink(settings: SinkSettings, environ: Mapping[str, str] | None = None) -> Sink:
    """Given a sink's settings, return a new sink of its ``type`` (made by the backend's
    registered factory). Raise CredentialsError if its credentials are missing or malformed,
    ConfigError if its settings cannot be used."""
    from agent import registry

    sink: Sink = registry.create("sink", settings, environ)
    return sink
