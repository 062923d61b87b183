"""The detection worker: finds the insects on each new image, at low priority, off the capture path.

It wakes after each capture (and every minute) and works through every image with a file and
no annotation by the current detector version, whoever captured it (the agent, or
``stickyctl capture`` while the agent was stopped): newest first, in passes of at most
``BATCH`` images, each pass starting again from the newest so a new capture never waits
behind more than one pass of a long backlog. It runs the detector on each and stores the
outlines as an annotation row; the sync worker sends it once its image is verified on the
server. Each annotation also records the insects new since the previous capture
(:mod:`agent.detect.tally`), computed again for the next capture when images are detected
out of order. A detector failure is logged and counted and the image is skipped (it is still
uploaded); the worker never delays a capture: it runs in its own thread at a lower CPU
priority, and only talks to the capture side through the queue.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import threading
from typing import TYPE_CHECKING

from agent.background import BackgroundWorker
from agent.errors import StickyAgentError
from agent.queue import Image, Queue
from agent.queue.insects import annotated_neighbours, set_tally
from agent.queue.syncrows import add_annotation, images_to_detect

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from agent.detect import Detector
    from agent.queue.schema import Annotation

log = logging.getLogger(__name__)

IDLE_S = 60.0
NICENESS = 10
#: Images per pass (one queue query); the next pass starts again from the newest image.
BATCH = 20


class DetectionWorker(BackgroundWorker):
    """Runs ``detector`` on queued images, in a thread of its own."""

    thread_name = "detect"

    def __init__(
        self,
        detector: Detector,
        queue: Queue,
        data_dir: Path,
        on_detected: Callable[[], None] | None = None,
    ) -> None:
        """``on_detected`` is called after each stored annotation (the agent wakes the sync)."""
        self.detector = detector
        self.on_detected = on_detected
        self.queue = queue
        self.data_dir = data_dir
        self.failures = 0
        self.detected = 0
        self._failed_ids: set[int] = set()  # retried after a restart, not in a loop
        self._pass: list[Image] = []
        super().__init__()

    def _before_loop(self) -> None:
        try:  # Linux: a thread's id is a "process" for setpriority; lower ours
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), NICENESS)
        except (OSError, AttributeError):
            log.debug("could not lower the detection thread's priority")

    def cycle(self) -> float:
        return 0.0 if self.step() else IDLE_S

    def _next_pass(self) -> list[Image]:
        """Return up to BATCH images to detect, newest first, past those that failed here.
        Raise StickyAgentError if the queue cannot be read."""
        cursor: tuple[dt.datetime, int] | None = None
        while True:
            rows = images_to_detect(
                self.queue, self.detector.name, self.detector.version, limit=BATCH, before=cursor
            )
            if not rows:
                return []
            todo = [image for image in rows if image.id not in self._failed_ids]
            if todo:
                return todo
            cursor = (rows[-1].datetime, rows[-1].id)

    def step(self) -> bool:
        """Detect insects on one waiting image; return False if none was waiting."""
        if not self._pass:
            try:
                self._pass = self._next_pass()
            except StickyAgentError as e:
                log.error("detection: cannot read the queue: %s", e)
                return False
            if not self._pass:
                return False
        image = self._pass.pop(0)
        try:
            from agent.detect import to_annotations

            outlines = self.detector.detect((self.data_dir / image.path).read_bytes())
            row = add_annotation(
                self.queue, image.id, self.detector.name, self.detector.version, to_annotations(outlines)
            )
        except Exception as e:  # any detector fault: count it, skip the image, go on
            self.failures += 1
            self._failed_ids.add(image.id)
            log.error("detection failed on %s: %s: %s", image.path, type(e).__name__, e)
            self.queue.publish(detect_failures=str(self.failures), detect_error=f"{image.path}: {e}")
            return True
        self.detected += 1
        try:
            self.count_new(row, image)
        except StickyAgentError as e:  # the annotation is stored: only its tally is missing
            log.error("new-insect count failed on %s: %s", image.path, e)
        log.info("detected %d insects on %s", len(outlines), image.path)
        if self.on_detected is not None:
            self.on_detected()
        return True

    def count_new(self, row: Annotation, image: Image) -> None:
        """Store ``row``'s new insects against the previous annotated capture, the next one's against it."""
        import json

        from agent.detect.tally import blobs_of_annotations, tally

        before, after = annotated_neighbours(self.queue, image, self.detector.name, self.detector.version)
        mine = blobs_of_annotations(json.loads(row.json))
        side = max(image.width, image.height)
        if before is not None:
            t = tally(blobs_of_annotations(json.loads(before[0].json)), mine, side)
            set_tally(self.queue, row.id, t.new, t.new_card)
        if after is not None:
            t = tally(mine, blobs_of_annotations(json.loads(after[0].json)), side)
            set_tally(self.queue, after[0].id, t.new, t.new_card)
