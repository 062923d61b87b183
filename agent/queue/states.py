"""The image and annotation state machines (no database code: cheap to import).

Image states (the only hand-off between the capture side and the sync side)::

    captured ──upload answered──▶ uploaded ──server metadata shows same md5──▶ verified ──retention──▶ evicted
       │  ▲                                                                        (original deleted,
       │  └──────── stickyctl retry ◀──── failed  (server kept rejecting it)        thumbnails + row kept)
       ├──▶ conflict     server holds this (device, datetime) with another md5: never overwritten
       ├──▶ quarantined  the file no longer matches its md5 or does not parse (SD corruption)
       ├──▶ missing      reconciliation found the row's file gone (any state that had a file)
       └──▶ discarded    deleted without reaching the server, only if retention.delete_unsynced is set

A row leaves ``captured`` only on evidence (a server answer, a hash, a stat),
never on an assumption: the queue is at-least-once, and a row is done only when
the server acknowledged it. Rows are never deleted.
"""

from __future__ import annotations

import enum


class ImageState(enum.StrEnum):
    CAPTURED = "captured"
    UPLOADED = "uploaded"
    VERIFIED = "verified"
    EVICTED = "evicted"
    FAILED = "failed"
    CONFLICT = "conflict"
    QUARANTINED = "quarantined"
    MISSING = "missing"
    DISCARDED = "discarded"  # deleted unsynced to free the disk: only with retention.delete_unsynced


#: Allowed transitions; anything else is a bug and raises.
TRANSITIONS: dict[ImageState, frozenset[ImageState]] = {
    ImageState.CAPTURED: frozenset(
        {
            ImageState.UPLOADED,
            ImageState.VERIFIED,
            ImageState.FAILED,
            ImageState.CONFLICT,
            ImageState.QUARANTINED,
            ImageState.MISSING,
            ImageState.DISCARDED,
        }
    ),
    ImageState.UPLOADED: frozenset(
        {
            ImageState.VERIFIED,
            ImageState.CAPTURED,
            ImageState.CONFLICT,
            ImageState.FAILED,
            ImageState.QUARANTINED,
            ImageState.MISSING,
        }
    ),
    ImageState.VERIFIED: frozenset({ImageState.EVICTED, ImageState.MISSING}),
    ImageState.EVICTED: frozenset(),
    ImageState.FAILED: frozenset({ImageState.CAPTURED, ImageState.MISSING}),
    ImageState.CONFLICT: frozenset({ImageState.CAPTURED, ImageState.MISSING}),
    ImageState.QUARANTINED: frozenset(),
    ImageState.MISSING: frozenset({ImageState.CAPTURED}),
    ImageState.DISCARDED: frozenset(),
}


class AnnotationState(enum.StrEnum):
    PENDING = "pending"  # waiting for its image to be verified on the server, then sent
    UPLOADED = "uploaded"  # the server holds it (confirmed by a metadata query)
    FAILED = "failed"  # the server kept refusing it


#: States whose original is still waiting to reach the server.
WAITING_STATES = (ImageState.CAPTURED, ImageState.UPLOADED, ImageState.FAILED)
#: States whose original is on disk (everything before eviction, except quarantine and loss).
STATES_WITH_FILE = (
    ImageState.CAPTURED,
    ImageState.UPLOADED,
    ImageState.VERIFIED,
    ImageState.FAILED,
    ImageState.CONFLICT,
)
#: States an operator must look at: shown with their reasons in ``stickyctl status``.
PROBLEM_STATES = (ImageState.CONFLICT, ImageState.FAILED, ImageState.QUARANTINED)
