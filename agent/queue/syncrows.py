"""Queue queries and moves of the sync and detection side (apart from the capture side's store)."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from sqlalchemy import and_, func, or_, select, update

from agent.queue.schema import Annotation, AnnotationState, Image, ImageState, utcnow
from agent.queue.states import STATES_WITH_FILE
from agent.queue.store import Queue

#: Images the server may not hold yet: the sync worker looks at these.
TO_SYNC = (ImageState.CAPTURED.value, ImageState.UPLOADED.value)
#: Images the server verifiably holds: their annotations may go.
ON_SERVER = (ImageState.VERIFIED.value, ImageState.EVICTED.value)


def sync_batch(queue: Queue, limit: int, newest_first: bool = False) -> list[Image]:
    """Return up to ``limit`` images waiting for the server, oldest (or newest) first."""
    order = Image.datetime.desc() if newest_first else Image.datetime.asc()
    q = select(Image).where(Image.state.in_(TO_SYNC)).order_by(order).limit(limit)
    with queue.session() as s:
        return list(s.scalars(q))


def record_sync_failure(queue: Queue, image_id: int, error: str, max_attempts: int) -> bool:
    """Count a refused upload; move the image to ``failed`` after ``max_attempts``. Return True if it did."""
    with queue.session() as s:
        row = s.get(Image, image_id)
        assert row is not None
        row.attempts += 1
        row.last_error = error
        row.updated_at = utcnow()
        failed = row.attempts >= max_attempts
    if failed:
        queue.set_state(image_id, ImageState.FAILED, error=f"gave up after {max_attempts} tries: {error}")
    return failed


def retry_failed(queue: Queue) -> int:
    """Put every ``failed`` image (and annotation) back in the queue; return how many images."""
    with queue.session() as s:
        n = s.execute(
            update(Image)
            .where(Image.state == ImageState.FAILED.value)
            .values(state=ImageState.CAPTURED.value, attempts=0, updated_at=utcnow())
        )
        s.execute(
            update(Annotation)
            .where(Annotation.state == AnnotationState.FAILED.value)
            .values(state=AnnotationState.PENDING.value, attempts=0, updated_at=utcnow())
        )
        return int(getattr(n, "rowcount", 0) or 0)


def retry_failed_once(queue: Queue, max_attempts: int) -> int:
    """Give every ``failed`` image (and annotation) one more try: back in the queue with
    ``max_attempts - 1`` attempts, so one more refusal makes it ``failed`` again. Return how
    many images."""
    attempts = max(0, max_attempts - 1)
    with queue.session() as s:
        n = s.execute(
            update(Image)
            .where(Image.state == ImageState.FAILED.value)
            .values(state=ImageState.CAPTURED.value, attempts=attempts, updated_at=utcnow())
        )
        s.execute(
            update(Annotation)
            .where(Annotation.state == AnnotationState.FAILED.value)
            .values(state=AnnotationState.PENDING.value, attempts=attempts, updated_at=utcnow())
        )
        return int(getattr(n, "rowcount", 0) or 0)


def waiting_totals(queue: Queue) -> tuple[int, int]:
    """Return the count and bytes of images waiting for the server (``captured``/``uploaded``)."""
    q = select(func.count(), func.coalesce(func.sum(Image.size), 0)).where(Image.state.in_(TO_SYNC))
    with queue.session() as s:
        n, size = s.execute(q).one()
    return int(n), int(size)


def add_annotation(
    queue: Queue, image_id: int, algo_name: str, algo_version: str, annotations: list[dict[str, Any]]
) -> Annotation:
    """Queue one image's annotations by one algorithm version; return the row."""
    row = Annotation(
        image_id=image_id,
        algo_name=algo_name,
        algo_version=algo_version,
        json=json.dumps(annotations, separators=(",", ":")),
        n_objects=len(annotations),
    )
    with queue.session() as s:
        s.add(row)
    return row


def pending_annotations(queue: Queue, limit: int) -> list[tuple[Annotation, Image]]:
    """Return pending annotations whose image the server verifiably holds, oldest image first."""
    q = (
        select(Annotation, Image)
        .join(Image, Annotation.image_id == Image.id)
        .where(and_(Annotation.state == AnnotationState.PENDING.value, Image.state.in_(ON_SERVER)))
        .order_by(Image.datetime)
        .limit(limit)
    )
    with queue.session() as s:
        return [(a, i) for a, i in s.execute(q)]


def set_annotation_state(
    queue: Queue, annotation_id: int, state: AnnotationState, error: str | None = None, attempt: bool = False
) -> None:
    with queue.session() as s:
        row = s.get(Annotation, annotation_id)
        assert row is not None
        row.state, row.updated_at = state.value, utcnow()
        if error is not None:
            row.last_error = error
        if attempt:
            row.attempts += 1


def annotation_totals(queue: Queue) -> dict[str, int]:
    q = select(Annotation.state, func.count()).group_by(Annotation.state)
    with queue.session() as s:
        return {st: int(n) for st, n in s.execute(q)}


def evictable(queue: Queue, states: tuple[str, ...], limit: int = 500) -> list[Image]:
    """Return images in ``states`` oldest first (retention candidates)."""
    q = select(Image).where(Image.state.in_(states)).order_by(Image.datetime).limit(limit)
    with queue.session() as s:
        return list(s.scalars(q))


def bytes_on_disk(queue: Queue) -> int:
    """Return the size of all originals still on disk according to the queue."""
    q = select(func.coalesce(func.sum(Image.size), 0)).where(
        Image.state.in_([st.value for st in STATES_WITH_FILE])
    )
    with queue.session() as s:
        return int(s.scalar(q) or 0)


#: States whose original is on disk, so a detector can read it.
# (A conflict's annotations could never be sent: the server holds another image.)
WITH_FILE = tuple(st.value for st in STATES_WITH_FILE if st != ImageState.CONFLICT)


def images_to_detect(
    queue: Queue,
    algo_name: str,
    algo_version: str,
    limit: int = 1,
    before: tuple[dt.datetime, int] | None = None,
) -> list[Image]:
    """Return the newest images with a file and no annotation by this algorithm version, whoever
    captured them; with ``before`` (an image's datetime and id), only those older than it."""
    done = (
        select(Annotation.id)
        .where(Annotation.image_id == Image.id)
        .where(Annotation.algo_name == algo_name, Annotation.algo_version == algo_version)
        .exists()
    )
    q = select(Image).where(Image.state.in_(WITH_FILE), ~done)
    if before is not None:
        when, image_id = before
        q = q.where(or_(Image.datetime < when, and_(Image.datetime == when, Image.id < image_id)))
    q = q.order_by(Image.datetime.desc(), Image.id.desc())
    with queue.session() as s:
        return list(s.scalars(q.limit(limit)))
