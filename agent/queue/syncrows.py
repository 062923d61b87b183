"""Queue queries of the detection side and retention (the sync side's: :mod:`agent.queue.deliveries`)."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from sqlalchemy import and_, func, or_, select

from agent.queue.schema import Annotation, Image, ImageState
from agent.queue.states import STATES_WITH_FILE
from agent.queue.store import Queue


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


def annotation_totals(queue: Queue, sink: str = "stickypi") -> dict[str, int]:
    """Return how many annotation rows stand in each state with ``sink`` (none yet: pending)."""
    from agent.queue.deliveries import totals

    t = totals(queue, sink)
    out = {"pending": t.annotations_pending, "uploaded": t.annotations_sent, "failed": t.annotations_failed}
    return {k: v for k, v in out.items() if v}


def discardable(queue: Queue, limit: int = 1000) -> list[Image]:
    """Return images on disk, oldest first (what ``retention.delete_unsynced`` may delete)."""
    q = select(Image).where(Image.state == ImageState.CAPTURED.value).order_by(Image.datetime).limit(limit)
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
WITH_FILE = tuple(st.value for st in STATES_WITH_FILE)


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
