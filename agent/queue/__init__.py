"""The local SQLite queue: the only hand-off between capturing and syncing."""

from agent.queue.schema import Annotation, CaptureAttempt, Image, ImageState
from agent.queue.store import Queue, StateTotals

__all__ = ["Annotation", "CaptureAttempt", "Image", "ImageState", "Queue", "StateTotals"]
