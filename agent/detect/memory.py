"""The ``memory`` detector: finds the insects it is given, and records the pictures it saw.

``[detector] type = "memory"`` returns the configured ``outlines`` (polygons in the picture's
pixels) for every picture; a test may instead queue one answer per picture (``answers``) or an
error (``failures``), and reads back what it was given (``seen``: the md5 of each JPEG). It only
reads the picture's header: it runs anywhere numpy does (an :class:`~agent.detect.Outline` is a
numpy array).
"""

from __future__ import annotations

import collections
import hashlib
import io
from typing import TYPE_CHECKING, Literal

from PIL import Image
from pydantic import Field, field_validator

from agent.detect import ALGO_NAME_MAX, ALGO_VERSION_MAX, DetectorError, DetectorSettings, Outline
from agent.lazy import lazy_import, require
from agent.registry import register

if TYPE_CHECKING:
    import numpy as np
else:  # imported when a memory detector is made, not with the config (agent.lazy)
    np = lazy_import("numpy", globals(), "np")

Polygon = list[tuple[int, int]]


class MemoryDetectorConfig(DetectorSettings):
    """``[detector] type = "memory"``: these outlines on every picture (tests, demos)."""

    type: Literal["memory"]
    #: Insect outlines, each 3 or more ``[x, y]`` points in full-resolution pixels.
    outlines: list[Polygon] = Field(default_factory=list, max_length=10_000)
    name: str = Field(default="sticky-agent-memory", min_length=1, max_length=ALGO_NAME_MAX)
    version: str = Field(default="1-memory", min_length=1, max_length=ALGO_VERSION_MAX)

    @field_validator("outlines")
    @classmethod
    def _polygons(cls, v: list[Polygon]) -> list[Polygon]:
        for polygon in v:
            if len(polygon) < 3 or any(x < 0 or y < 0 for x, y in polygon):
                raise ValueError(f"an outline needs 3 or more [x, y] points, none negative, got {polygon}")
        return v


def outline(points: Polygon) -> Outline:
    """Given 3 or more ``(x, y)`` points, return them as an Outline. Raise ValueError if fewer."""
    return Outline(np.asarray(points, dtype=np.int32).reshape(-1, 1, 2))


@register("detector", MemoryDetectorConfig)
class MemoryDetector:
    """Given a memory-detector config, answer each picture with the configured outlines, or the
    next queued answer (``answers``) or error (``failures``, first). Raise ImportError without numpy."""

    def __init__(self, config: MemoryDetectorConfig) -> None:
        require(np)
        self.name = config.name
        self.version = config.version
        self.outlines = [outline(p) for p in config.outlines]
        self.answers: collections.deque[list[Outline]] = collections.deque()
        self.failures: collections.deque[Exception] = collections.deque()
        #: The md5 of every JPEG given to :meth:`detect`, in order.
        self.seen: list[str] = []
        self.closed = False

    def detect(self, jpeg: bytes) -> list[Outline]:
        """Given a JPEG's bytes, return the next queued answer, else the configured outlines.
        Raise DetectorError if the bytes are no image, else the next queued failure, if any."""
        self.seen.append(hashlib.md5(jpeg).hexdigest())
        try:
            with Image.open(io.BytesIO(jpeg)):
                pass
        except OSError as e:
            raise DetectorError(f"not a readable image: {e}") from None
        if self.failures:
            raise self.failures.popleft()
        return list(self.answers.popleft() if self.answers else self.outlines)

    def close(self) -> None:
        self.closed = True
