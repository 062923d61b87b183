"""Queue queries of the new-insect counts: an annotation's neighbours in time, and its tally."""

from __future__ import annotations

from sqlalchemy import select

from agent.queue.schema import Annotation, Image
from agent.queue.store import Queue


def annotated_neighbours(
    queue: Queue, image: Image, algo_name: str, algo_version: str
) -> tuple[tuple[Annotation, Image] | None, tuple[Annotation, Image] | None]:
    """Given an image, return the annotated captures just before and after it (same device and version)."""

    def one(before: bool) -> tuple[Annotation, Image] | None:
        when = Image.datetime < image.datetime if before else Image.datetime > image.datetime
        q = (
            select(Annotation, Image)
            .join(Image, Annotation.image_id == Image.id)
            .where(Image.device == image.device, when)
            .where(Annotation.algo_name == algo_name, Annotation.algo_version == algo_version)
            .order_by(Image.datetime.desc() if before else Image.datetime.asc())
            .limit(1)
        )
        with queue.session() as s:
            row = s.execute(q).first()
        return None if row is None else (row[0], row[1])

    return one(True), one(False)


def set_tally(queue: Queue, annotation_id: int, n_new: int, new_card: bool) -> None:
    """Store an annotation's new-insect count and whether the card was replaced before it."""
    with queue.session() as s:
        row = s.get(Annotation, annotation_id)
        if row is not None:
            row.n_new, row.new_card = n_new, int(new_card)
