"""The sink seam: what the sync worker asks of a remote platform.

A sink answers "what do you hold?" for a batch of images, takes one image at a time,
and takes annotations for images it holds. Every method raises a subclass of
:class:`agent.errors.SyncError`: ``SinkUnreachable`` (back off and retry later),
``SinkAuthError``/``SinkForbidden`` (stop: an operator must fix the account),
``SinkRejected`` (this request was refused; ask again what the server holds).
The Sticky Pi API (:mod:`agent.sinks.stickypi`) is the first sink; others (Tator, a
data lake) implement the same protocol.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

ImageKey = tuple[str, dt.datetime]  # (device, UTC datetime): an image's identity


@dataclass(frozen=True)
class RemoteImage:
    """What the remote holds for one image."""

    md5: str
    remote_id: int | None = None


@dataclass(frozen=True)
class AnnotationBatch:
    """One image's annotations by one algorithm version, ready to send."""

    key: ImageKey
    md5: str
    algo_name: str
    algo_version: str
    annotations: list[dict[str, Any]]


class Sink(Protocol):
    name: str

    def probe(self) -> None:
        """Return if the remote answers and accepts our credentials; raise SyncError otherwise."""

    def lookup_images(self, keys: list[ImageKey]) -> dict[ImageKey, RemoteImage]:
        """Return what the remote holds among ``keys`` (absent ones are left out)."""
        ...

    def upload_image(self, path: Path, data: bytes, md5: str, throttle: Any = None) -> None:
        """Send one image (its name is ``path.name``; ``data`` are its bytes, ``md5`` their hash)."""

    def lookup_annotations(self, keys: list[ImageKey]) -> set[tuple[ImageKey, str, str]]:
        """Return ``(key, algo_name, algo_version)`` for every annotation the remote holds."""
        ...

    def upload_annotations(self, batch: AnnotationBatch) -> None:
        """Send one image's annotations."""

    def close(self) -> None: ...
