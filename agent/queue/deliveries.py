"""Queue queries and moves of the sync side: where each image (and annotation) stands with each sink.

An image has one ``deliveries`` row per sink once that sink's worker (or the capture, for the
sinks the queue knows) has seen it; an image on disk with no row for a sink is waiting for it.
Annotations have an ``annotation_deliveries`` row per sink once the sink's worker touched them;
none means pending.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, exists, func, insert, literal, or_, select, update

from agent.errors import QueueError
from agent.queue.schema import (
    DELIVERY_TRANSITIONS,
    Annotation,
    AnnotationDelivery,
    AnnotationState,
    Delivery,
    DeliveryState,
    Image,
    ImageState,
    utcnow,
)
from agent.queue.states import TO_SEND
from agent.queue.store import Queue

_ON_DISK = ImageState.CAPTURED.value
_TO_SEND = tuple(s.value for s in TO_SEND)


def enqueue(queue: Queue, sink: str) -> int:
    """Given a sink's name, add a ``waiting`` delivery for every image on disk that has none for
    it; return how many were added."""
    has_row = exists().where(Delivery.image_id == Image.id, Delivery.sink == sink)
    now = utcnow()
    rows = select(
        Image.id, literal(sink), literal(DeliveryState.WAITING.value), literal(0), literal(now), literal(now)
    )
    rows = rows.where(Image.state == _ON_DISK, ~has_row)
    stmt = insert(Delivery).from_select(
        ["image_id", "sink", "state", "attempts", "created_at", "updated_at"], rows
    )
    with queue.session() as s:
        result = s.execute(stmt)
        return int(getattr(result, "rowcount", 0) or 0)


def batch(queue: Queue, sink: str, limit: int, newest_first: bool = False) -> list[tuple[Delivery, Image]]:
    """Return up to ``limit`` (delivery, image) pairs waiting for ``sink``, oldest (or newest)
    image first; only images whose original is on disk."""
    order = Image.datetime.desc() if newest_first else Image.datetime.asc()
    q = (
        select(Delivery, Image)
        .join(Image, Delivery.image_id == Image.id)
        .where(Delivery.sink == sink, Delivery.state.in_(_TO_SEND), Image.state == _ON_DISK)
        .order_by(order)
        .limit(limit)
    )
    with queue.session() as s:
        return [(d, i) for d, i in s.execute(q)]


def set_delivery(
    queue: Queue,
    delivery_id: int,
    new: DeliveryState,
    error: str | None = None,
    remote_id: str | None = None,
) -> None:
    """Move a delivery to ``new``. Raise QueueError if the state machine forbids that move."""
    with queue.session() as s:
        row = s.get(Delivery, delivery_id)
        if row is None:
            raise QueueError(f"no delivery with id {delivery_id}")
        old = DeliveryState(row.state)
        if new != old and new not in DELIVERY_TRANSITIONS[old]:
            raise QueueError(
                f"delivery {delivery_id} to {row.sink}: {old} -> {new} is not an allowed transition"
            )
        row.state, row.updated_at = new.value, utcnow()
        if new == DeliveryState.VERIFIED:
            row.verified_at = row.updated_at
            row.last_error = None
        if error is not None:
            row.last_error = error
        if remote_id is not None:
            row.remote_id = remote_id


def record_failure(queue: Queue, delivery_id: int, error: str, max_attempts: int) -> bool:
    """Count a refused upload; move the delivery to ``failed`` after ``max_attempts``. Return
    True if it did."""
    with queue.session() as s:
        row = s.get(Delivery, delivery_id)
        if row is None:
            raise QueueError(f"no delivery with id {delivery_id}")
        row.attempts += 1
        row.last_error = error
        row.updated_at = utcnow()
        failed = row.attempts >= max_attempts
    if failed:
        set_delivery(
            queue, delivery_id, DeliveryState.FAILED, error=f"gave up after {max_attempts} tries: {error}"
        )
    return failed


def retry_failed(queue: Queue, sink: str | None = None, attempts: int = 0) -> int:
    """Put every ``failed`` delivery (and annotation delivery) of ``sink`` (None: every sink)
    back in the queue with ``attempts`` tries counted; return how many images."""
    where = [Delivery.state == DeliveryState.FAILED.value]
    ann_where = [AnnotationDelivery.state == AnnotationState.FAILED.value]
    if sink is not None:
        where.append(Delivery.sink == sink)
        ann_where.append(AnnotationDelivery.sink == sink)
    now = utcnow()
    with queue.session() as s:
        n = s.execute(
            update(Delivery)
            .where(*where)
            .values(state=DeliveryState.WAITING.value, attempts=attempts, updated_at=now)
        )
        s.execute(
            update(AnnotationDelivery)
            .where(*ann_where)
            .values(state=AnnotationState.PENDING.value, attempts=attempts, updated_at=now)
        )
        return int(getattr(n, "rowcount", 0) or 0)


@dataclass(frozen=True)
class SinkTotals:
    """Where a sink's images stand: counts (and bytes of the waiting ones)."""

    verified: int = 0
    waiting: int = 0
    waiting_bytes: int = 0
    uploaded: int = 0
    failed: int = 0
    conflict: int = 0
    annotations_sent: int = 0
    annotations_pending: int = 0
    annotations_failed: int = 0


def _unseen(sink: str) -> Any:
    """The count and bytes of images on disk with no delivery row for ``sink`` yet (waiting)."""
    has_row = exists().where(Delivery.image_id == Image.id, Delivery.sink == sink)
    unseen = select(func.count(), func.coalesce(func.sum(Image.size), 0))
    return unseen.where(Image.state == _ON_DISK, ~has_row)


def waiting(queue: Queue, sink: str) -> tuple[int, int]:
    """Given a sink's name, return the count and bytes of the images on disk still waiting for
    it: what :func:`totals` reports as waiting, without its other counts (a sync pass's log)."""
    rows = (
        select(func.count(), func.coalesce(func.sum(Image.size), 0))
        .select_from(Delivery)
        .join(Image, Delivery.image_id == Image.id)
        .where(Delivery.sink == sink, Delivery.state.in_(_TO_SEND), Image.state == _ON_DISK)
    )
    with queue.session() as s:
        n, size = s.execute(rows).one()
        new_n, new_b = s.execute(_unseen(sink)).one()
    return int(n) + int(new_n), int(size) + int(new_b)


def totals(queue: Queue, sink: str) -> SinkTotals:
    """Given a sink's name, return where its images and annotations stand. Images on disk with
    no delivery row yet count as waiting."""
    q = (
        select(Delivery.state, func.count(), func.coalesce(func.sum(Image.size), 0))
        .join(Image, Delivery.image_id == Image.id)
        .where(Delivery.sink == sink)
        .where(or_(Delivery.state.notin_(_TO_SEND), Image.state == _ON_DISK))
        .group_by(Delivery.state)
    )
    ann = (
        select(AnnotationDelivery.state, func.count())
        .where(AnnotationDelivery.sink == sink)
        .group_by(AnnotationDelivery.state)
    )
    with queue.session() as s:
        by_state = {st: (int(n), int(b)) for st, n, b in s.execute(q)}
        new_n, new_b = s.execute(_unseen(sink)).one()
        anns = {st: int(n) for st, n in s.execute(ann)}
        n_ann = int(s.scalar(select(func.count()).select_from(Annotation)) or 0)
    waiting = by_state.get("waiting", (0, 0))
    uploaded = by_state.get("uploaded", (0, 0))
    return SinkTotals(
        verified=by_state.get("verified", (0, 0))[0],
        waiting=waiting[0] + uploaded[0] + int(new_n),
        waiting_bytes=waiting[1] + uploaded[1] + int(new_b),
        uploaded=uploaded[0],
        failed=by_state.get("failed", (0, 0))[0],
        conflict=by_state.get("conflict", (0, 0))[0],
        annotations_sent=anns.get("uploaded", 0),
        annotations_failed=anns.get("failed", 0),
        annotations_pending=n_ann - anns.get("uploaded", 0) - anns.get("failed", 0),
    )


def pending_annotations(queue: Queue, sink: str, limit: int) -> list[tuple[Annotation, Image, int]]:
    """Return ``(annotation, image, attempts)`` for annotations not yet on ``sink`` (nor failed
    there) whose image ``sink`` verifiably holds, oldest image first."""
    verified = exists().where(
        Delivery.image_id == Image.id, Delivery.sink == sink, Delivery.state == DeliveryState.VERIFIED.value
    )
    q = (
        select(Annotation, Image, func.coalesce(AnnotationDelivery.attempts, 0))
        .join(Image, Annotation.image_id == Image.id)
        .outerjoin(
            AnnotationDelivery,
            and_(AnnotationDelivery.annotation_id == Annotation.id, AnnotationDelivery.sink == sink),
        )
        .where(
            or_(AnnotationDelivery.id.is_(None), AnnotationDelivery.state == AnnotationState.PENDING.value),
            verified,
        )
        .order_by(Image.datetime)
        .limit(limit)
    )
    with queue.session() as s:
        return [(a, i, int(n)) for a, i, n in s.execute(q)]


def set_annotation_delivery(
    queue: Queue,
    annotation_id: int,
    sink: str,
    state: AnnotationState,
    error: str | None = None,
    attempt: bool = False,
) -> None:
    """Record where an annotation stands with ``sink`` (the row is made if new)."""
    with queue.session() as s:
        row = s.scalar(
            select(AnnotationDelivery).where(
                AnnotationDelivery.annotation_id == annotation_id, AnnotationDelivery.sink == sink
            )
        )
        if row is None:
            row = AnnotationDelivery(annotation_id=annotation_id, sink=sink, attempts=0)
            s.add(row)
        row.state, row.updated_at = state.value, utcnow()
        if error is not None:
            row.last_error = error
        if attempt:
            row.attempts = (row.attempts or 0) + 1


def evictable(queue: Queue, required: Sequence[str], sinks: Sequence[str], limit: int = 500) -> list[Image]:
    """Return images on disk, oldest first, that every ``required`` sink verifiably holds and at
    least one of ``sinks`` does (with no sink at all, none: nothing is anywhere else)."""
    if not sinks:
        return []
    q = select(Image).where(Image.state == _ON_DISK)
    for name in required:
        q = q.where(
            exists().where(
                Delivery.image_id == Image.id,
                Delivery.sink == name,
                Delivery.state == DeliveryState.VERIFIED.value,
            )
        )
    q = q.where(
        exists().where(
            Delivery.image_id == Image.id,
            Delivery.sink.in_(list(sinks)),
            Delivery.state == DeliveryState.VERIFIED.value,
        )
    )
    with queue.session() as s:
        return list(s.scalars(q.order_by(Image.datetime).limit(limit)))


def deliveries_of(queue: Queue, image_ids: Sequence[int]) -> dict[int, dict[str, Delivery]]:
    """Given image ids, return ``{image id: {sink: delivery}}`` (for listings)."""
    if not image_ids:
        return {}
    out: dict[int, dict[str, Delivery]] = {}
    with queue.session() as s:
        for d in s.scalars(select(Delivery).where(Delivery.image_id.in_(list(image_ids)))):
            out.setdefault(d.image_id, {})[d.sink] = d
    return out


def verified_since(queue: Queue, sink: str, since: dt.datetime) -> int:
    """Return how many images ``sink`` verified since ``since``."""
    q = select(func.count()).where(
        Delivery.sink == sink, Delivery.state == DeliveryState.VERIFIED.value, Delivery.verified_at >= since
    )
    with queue.session() as s:
        return int(s.scalar(q) or 0)
