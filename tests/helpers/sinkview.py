"""How an image or annotation stands with one sink, in one word, for tests written against one
sink: the file's state if the original is gone or bad (evicted, quarantined, missing,
discarded), else its delivery's (captured = waiting, uploaded, verified, failed, conflict)."""

from __future__ import annotations

import dataclasses
import enum

from sqlalchemy import select

from agent.queue import Queue
from agent.queue.schema import AnnotationDelivery, Delivery, Image


class State(enum.StrEnum):
    """One sink's view of an image (the states of the queue before there were several sinks)."""

    CAPTURED = "captured"
    UPLOADED = "uploaded"
    VERIFIED = "verified"
    EVICTED = "evicted"
    FAILED = "failed"
    CONFLICT = "conflict"
    QUARANTINED = "quarantined"
    MISSING = "missing"
    DISCARDED = "discarded"


def image_state(queue: Queue, image_id: int, sink: str = "stickypi") -> State:
    """Given an image id, return its state as ``sink`` sees it."""
    with queue.session() as s:
        img = s.get(Image, image_id)
        assert img is not None
        if img.state != "captured":
            return State(img.state)
        row = s.scalar(select(Delivery).where(Delivery.image_id == image_id, Delivery.sink == sink))
    if row is None or row.state == "waiting":
        return State.CAPTURED
    return State(row.state)


def delivery(queue: Queue, image_id: int, sink: str = "stickypi") -> Delivery | None:
    """Given an image id, return its delivery row for ``sink`` (None: not looked at yet)."""
    with queue.session() as s:
        return s.scalar(select(Delivery).where(Delivery.image_id == image_id, Delivery.sink == sink))


def attempts(queue: Queue, image_id: int, sink: str = "stickypi") -> int:
    """Given an image id, return the uploads ``sink`` refused (0 if not looked at yet)."""
    row = delivery(queue, image_id, sink)
    return 0 if row is None else row.attempts


def annotation_state(queue: Queue, annotation_id: int, sink: str = "stickypi") -> tuple[str, int]:
    """Given an annotation id, return its state and refused attempts with ``sink``."""
    with queue.session() as s:
        row = s.scalar(
            select(AnnotationDelivery).where(
                AnnotationDelivery.annotation_id == annotation_id, AnnotationDelivery.sink == sink
            )
        )
    return ("pending", 0) if row is None else (row.state, row.attempts)


@dataclasses.dataclass(frozen=True)
class Row:
    """An image as one sink sees it: its one-word state, refused uploads and last problem."""

    state: State
    attempts: int
    last_error: str | None
    path: str
    md5: str


def row(queue: Queue, image_id: int, sink: str = "stickypi") -> Row:
    """Given an image id, return how it stands with ``sink``."""
    with queue.session() as s:
        img = s.get(Image, image_id)
        assert img is not None
        path, md5, error = img.path, img.md5, img.last_error
    found = delivery(queue, image_id, sink)
    if found is not None and found.last_error:
        error = found.last_error
    return Row(image_state(queue, image_id, sink), attempts(queue, image_id, sink), error, path, md5)
