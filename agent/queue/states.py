"""The image, delivery and annotation state machines (no database code: cheap to import).

An image's **file lifecycle** (``images.state``) is apart from its **delivery** to each sink
(``deliveries.state``, one row per image and sink)::

    captured ──retention, once every required sink verified it──▶ evicted (original deleted,
       │ ▲                                                          thumbnails + row kept)
       │ └── the file is back ◀── missing   reconciliation found the row's file gone
       ├──▶ quarantined  the file no longer matches its md5 or does not parse (SD corruption)
       └──▶ discarded    deleted unsent to free the disk, only if retention.delete_unsynced is set

    (per sink)
    waiting ──upload answered──▶ uploaded ──the sink shows the same md5──▶ verified
       │  ▲                          │
       │  └── stickyctl retry ◀── failed    the sink kept refusing it (max_attempts)
       └──▶ conflict   the sink holds this (device, datetime) with another md5: never overwritten

A row moves only on evidence (a sink's answer, a hash, a stat), never on an assumption: the
queue is at-least-once per sink, and a delivery is done only when its sink shows the image.
Rows are never deleted.
"""

from __future__ import annotations

import enum


class ImageState(enum.StrEnum):
    """Where an image's original file stands."""

    CAPTURED = "captured"  # on disk, in the queue
    EVICTED = "evicted"  # deleted by retention after every required sink verified it
    QUARANTINED = "quarantined"
    MISSING = "missing"
    DISCARDED = "discarded"  # deleted unsent to free the disk: only with retention.delete_unsynced


#: Allowed file transitions; anything else is a bug and raises.
TRANSITIONS: dict[ImageState, frozenset[ImageState]] = {
    ImageState.CAPTURED: frozenset(
        {ImageState.EVICTED, ImageState.QUARANTINED, ImageState.MISSING, ImageState.DISCARDED}
    ),
    ImageState.EVICTED: frozenset(),
    ImageState.QUARANTINED: frozenset(),
    ImageState.MISSING: frozenset({ImageState.CAPTURED}),
    ImageState.DISCARDED: frozenset(),
}


class DeliveryState(enum.StrEnum):
    """Where an image stands with one sink."""

    WAITING = "waiting"  # not on the sink yet (as far as we know)
    UPLOADED = "uploaded"  # sent; the sink has not shown it yet
    VERIFIED = "verified"  # the sink holds it with the same md5
    FAILED = "failed"  # the sink kept refusing it
    CONFLICT = "conflict"  # the sink holds another image under this key


DELIVERY_TRANSITIONS: dict[DeliveryState, frozenset[DeliveryState]] = {
    DeliveryState.WAITING: frozenset(
        {DeliveryState.UPLOADED, DeliveryState.VERIFIED, DeliveryState.FAILED, DeliveryState.CONFLICT}
    ),
    DeliveryState.UPLOADED: frozenset(
        {DeliveryState.VERIFIED, DeliveryState.WAITING, DeliveryState.CONFLICT, DeliveryState.FAILED}
    ),
    DeliveryState.VERIFIED: frozenset(),
    DeliveryState.FAILED: frozenset({DeliveryState.WAITING}),
    DeliveryState.CONFLICT: frozenset({DeliveryState.WAITING, DeliveryState.VERIFIED}),
}


class AnnotationState(enum.StrEnum):
    """Where one image's annotations (one algorithm version) stand with one sink."""

    PENDING = "pending"  # waiting for its image to be verified on the sink, then sent
    UPLOADED = "uploaded"  # the sink holds it (confirmed by a lookup)
    FAILED = "failed"  # the sink kept refusing it


#: Deliveries the worker of their sink still works on.
TO_SEND = (DeliveryState.WAITING, DeliveryState.UPLOADED)
#: Deliveries still waiting to reach their sink (an operator may need to act on failed ones).
WAITING_STATES = (DeliveryState.WAITING, DeliveryState.UPLOADED, DeliveryState.FAILED)
#: Deliveries an operator must look at: shown with their reasons in ``stickyctl status``.
DELIVERY_PROBLEMS = (DeliveryState.CONFLICT, DeliveryState.FAILED)
#: States whose original is on disk.
STATES_WITH_FILE = (ImageState.CAPTURED,)
#: File states an operator must look at.
PROBLEM_STATES = (ImageState.QUARANTINED,)
