"""The local SQLite queue: the only hand-off between capturing and syncing.

- :mod:`agent.queue.states`: the image and annotation state machines
- :mod:`agent.queue.schema`: tables and versioned migrations
- :mod:`agent.queue.store`: the read-write queue (SQLAlchemy)
- :mod:`agent.queue.syncrows`: the sync and detection side's queries
- :mod:`agent.queue.readonly`: quick read-only queries for ``stickyctl status``

Names are imported lazily, so ``stickyctl status`` does not pay for SQLAlchemy.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from agent.queue.schema import Annotation as Annotation
    from agent.queue.schema import CaptureAttempt as CaptureAttempt
    from agent.queue.schema import Image as Image
    from agent.queue.states import AnnotationState as AnnotationState
    from agent.queue.states import ImageState as ImageState
    from agent.queue.store import Queue as Queue
    from agent.queue.store import StateTotals as StateTotals

_WHERE = {
    "Annotation": "agent.queue.schema",
    "CaptureAttempt": "agent.queue.schema",
    "Image": "agent.queue.schema",
    "ImageState": "agent.queue.states",
    "AnnotationState": "agent.queue.states",
    "Queue": "agent.queue.store",
    "StateTotals": "agent.queue.store",
}
__all__ = [
    "Annotation",
    "AnnotationState",
    "CaptureAttempt",
    "Image",
    "ImageState",
    "Queue",
    "StateTotals",
]


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(importlib.import_module(_WHERE[name]), name)
    raise AttributeError(f"module 'agent.queue' has no attribute {name!r}")
