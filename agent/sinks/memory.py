"""An in-memory sink: a platform that lives in this process, for tests and demos.

``[[sink]] type = "memory"`` keeps what it is sent in a :class:`MemoryPlatform` shared by
every sink of the same ``platform`` name in the process (:func:`platform`), which a test
reads and can make misbehave: refuse uploads, lose answers after storing, be unreachable,
refuse credentials. It behaves as the real sinks must (the same contract tests): it never
stores a second copy of an image, holds another image under the same key as a conflict,
and replaces an algorithm version's annotations when they are sent again.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from hashlib import md5 as md5_of
from typing import Any, Literal

from agent.errors import SinkAuthError, SinkRejected, SinkUnreachable
from agent.registry import register
from agent.sinks.base import AnnotationBatch, ImageKey, ImageRecord, RemoteImage, SinkSettings
from agent.sinks.throttle import Bandwidth


class MemorySettings(SinkSettings):
    """``[[sink]] type = "memory"``: an in-process platform (tests, demos); needs no credentials."""

    type: Literal["memory"]
    #: Sinks naming the same platform share what they hold (default: the sink's name).
    platform: str | None = None


@dataclass
class MemoryPlatform:
    """What an in-memory platform holds, and how it misbehaves (set by tests)."""

    images: dict[ImageKey, tuple[str, bytes]] = field(default_factory=dict)
    annotations: dict[tuple[ImageKey, str, str], list[dict[str, Any]]] = field(default_factory=dict)
    requests: int = 0
    uploads: int = 0
    #: Refuse uploads with this many SinkRejected (then take them again).
    refuse_uploads: int = 0
    #: Store the next this-many uploads, then lose the answer (SinkUnreachable).
    lose_answers: int = 0
    unreachable: bool = False
    bad_credentials: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def _request(self, closed: bool = False) -> None:
        if closed:
            raise SinkUnreachable("memory: not sent, the sink is closed")
        self.requests += 1
        if self.unreachable:
            raise SinkUnreachable("memory: the platform is unreachable")
        if self.bad_credentials:
            raise SinkAuthError("memory: the platform refused our credentials (401)")


_platforms: dict[str, MemoryPlatform] = {}
_platforms_lock = threading.Lock()


def platform(name: str) -> MemoryPlatform:
    """Given a platform name, return its (process-wide) in-memory platform, made if new."""
    with _platforms_lock:
        return _platforms.setdefault(name, MemoryPlatform())


def forget(name: str) -> None:
    """Drop a platform and everything it holds (tests)."""
    with _platforms_lock:
        _platforms.pop(name, None)


class MemorySink:
    """A sink whose platform is a :class:`MemoryPlatform`."""

    def __init__(self, name: str, held: MemoryPlatform) -> None:
        self.name = name
        self.platform = held
        self.closed = False

    @property
    def requests_sent(self) -> int:
        return self.platform.requests

    def probe(self) -> None:
        with self.platform.lock:
            self.platform._request(self.closed)

    def lookup_images(self, images: list[ImageRecord]) -> dict[ImageKey, RemoteImage]:
        with self.platform.lock:
            self.platform._request(self.closed)
            out = {}
            for image in images:
                held = self.platform.images.get(image.key)
                if held is not None:
                    out[image.key] = RemoteImage(held[0], remote_id=f"{image.key[0]}/{image.name}")
            return out

    def upload_image(self, image: ImageRecord, data: bytes, throttle: Bandwidth | None = None) -> None:
        with self.platform.lock:
            p = self.platform
            p._request(self.closed)
            if p.refuse_uploads > 0:
                p.refuse_uploads -= 1
                raise SinkRejected(f"memory: upload of {image.name} refused (500)")
            if throttle is not None:
                throttle.take(len(data))
            if image.key not in p.images:  # never overwrite what the platform holds
                p.images[image.key] = (md5_of(data).hexdigest(), bytes(data))
                p.uploads += 1
            if p.lose_answers > 0:
                p.lose_answers -= 1
                raise SinkUnreachable(f"memory: the answer to the upload of {image.name} was lost")

    def lookup_annotations(self, images: list[ImageRecord]) -> set[tuple[ImageKey, str, str]]:
        keys = {i.key for i in images}
        with self.platform.lock:
            self.platform._request(self.closed)
            return {k for k in self.platform.annotations if k[0] in keys}

    def upload_annotations(self, image: ImageRecord, batch: AnnotationBatch) -> None:
        with self.platform.lock:
            p = self.platform
            p._request(self.closed)
            held = p.images.get(batch.key)
            if held is None or held[0] != batch.md5:
                raise SinkRejected(f"memory: no image {image.name} with md5 {batch.md5} for annotations")
            p.annotations[(batch.key, batch.algo_name, batch.algo_version)] = list(batch.annotations)

    def close(self) -> None:
        self.closed = True


@register("sink", MemorySettings)
def make_sink(config: MemorySettings, environ: Mapping[str, str] | None = None) -> MemorySink:
    """Given an in-memory sink's settings, return its sink (on the shared platform)."""
    return MemorySink(config.name, platform(config.platform or config.name))
