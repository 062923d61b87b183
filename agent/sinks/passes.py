"""What one sync pass works on (images as sinks see them) and did (its counts, its log line,
the facts it publishes), and the backoff between tries."""

from __future__ import annotations

import json
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from agent.sinks.base import ImageRecord

if TYPE_CHECKING:
    from agent.queue.schema import Delivery, Image

log = logging.getLogger("agent.sinks.worker")  # the worker's own lines, one logger to tune

BACKOFF_BASE_S = 5.0


def backoff_delay(failures: int, cap: float, rng: random.Random, retry_after: float | None = None) -> float:
    """Return how long to wait after ``failures`` failed tries: exponential, "equal jitter", capped,
    and never less than the server's ``Retry-After``."""
    ceiling = min(cap, BACKOFF_BASE_S * 2 ** max(0, failures - 1))
    delay = ceiling / 2 + rng.uniform(0, ceiling / 2)
    return float(max(delay, retry_after or 0.0))


@dataclass
class PassStats:
    started: str
    seconds: float = 0.0
    images_sent: int = 0
    bytes_sent: int = 0
    verified: int = 0
    annotations_sent: int = 0
    refused: int = 0  # uploads the server did not take (still absent after the re-check)
    accepted: int = 0  # uploads and annotations the server took (evidence it accepts uploads)
    outcome: str = "ok"
    error: str | None = None
    waiting: int = 0  # images still waiting after the pass
    waiting_bytes: int = 0


#: Called from upload threads with (images done, bytes sent) as a pass moves on (progress).
Progress = Callable[[int, int], None]


def _size(n: float) -> str:
    return f"{n / 1e6:.1f} MB"


def log_pass(stats: PassStats, sink: str = "") -> None:
    """Log one line for a pass to ``sink``: images and annotations sent, bytes, rate, what remains."""
    rate = stats.bytes_sent / stats.seconds if stats.seconds else 0.0
    log.log(
        logging.WARNING if stats.error or stats.refused else logging.INFO,
        "sync pass%s: %d image(s) sent (%s, %s/s), %d verified, %d annotation(s) sent, %d refused%s; "
        "%d image(s) (%s) waiting",
        f" to {sink}" if sink else "",
        stats.images_sent,
        _size(stats.bytes_sent),
        _size(rate),
        stats.verified,
        stats.annotations_sent,
        stats.refused,
        f", stopped: {stats.error}" if stats.error else "",
        stats.waiting,
        _size(stats.waiting_bytes),
    )


def fact(sink: str, key: str) -> str:
    """Given a sink's name and a fact (``reachable``, ``error``...), return the key it is
    published under for ``stickyctl status``."""
    return f"sink.{sink}.{key}"


def image_record(img: Image, data_dir: Path) -> ImageRecord:
    """Given a queue row, return the image as sinks see it."""
    try:
        metadata = json.loads(img.image_metadata)
    except ValueError:
        metadata = {}
    return ImageRecord(
        key=(img.device, img.datetime),
        path=data_dir / img.path,
        md5=img.md5,
        size=img.size,
        width=img.width,
        height=img.height,
        metadata=metadata if isinstance(metadata, dict) else {},
        manual=bool(img.manual),
    )


@dataclass(frozen=True)
class Pending:
    """One image waiting for this worker's sink: its delivery row, queue row and record."""

    delivery: Delivery
    image: Image
    record: ImageRecord
