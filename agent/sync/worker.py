"""The sync worker: a thread that empties the queue into a sink whenever the network is there.

Each cycle: if the API was unreachable, probe it (backing off exponentially with jitter,
up to ``backoff_max``, and never sooner than a ``Retry-After``); then a *pass*:

1. take a batch of ``captured``/``uploaded`` images (oldest first, or newest);
2. one metadata query: what does the server hold? same md5 -> ``verified``; another md5
   -> ``conflict`` (never overwritten); absent -> upload;
3. uploads, ``parallelism`` at a time: re-hash the file first (a mismatch means the SD
   card corrupted it: ``quarantined``, never sent), then one image per request; a
   ``SinkRejected`` (the server's 500) is not believed or disbelieved: step 4 decides;
4. a second metadata query for what was sent or refused: same md5 -> ``verified``;
   absent -> one more try counted (``failed`` after ``max_attempts``);
5. annotations of verified images; a refusal is checked the same way;
6. retention.

A row is done only when the server's metadata shows it: the queue is at-least-once,
and an upload whose answer was lost (the connection dropped after the server stored
it) is found on the server by the next pass instead of being sent again. The worker
never touches the capture side except through the queue.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import random
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from hashlib import md5 as md5_of
from pathlib import Path

from agent.background import BackgroundWorker
from agent.config import Config
from agent.errors import (
    SinkAuthError,
    SinkForbidden,
    SinkRejected,
    SinkUnreachable,
    StickyAgentError,
    SyncError,
)
from agent.queue import Image, ImageState, Queue
from agent.queue.schema import AnnotationState
from agent.queue.syncrows import (
    pending_annotations,
    record_sync_failure,
    set_annotation_state,
    sync_batch,
)
from agent.retention import enforce
from agent.sync.sink import AnnotationBatch, ImageKey, RemoteImage, Sink
from agent.sync.throttle import Bandwidth, DailyBudget

log = logging.getLogger(__name__)

BACKOFF_BASE_S = 5.0


def backoff_delay(failures: int, cap: float, rng: random.Random, retry_after: float | None = None) -> float:
    """Return how long to wait after ``failures`` failed tries: exponential, "equal jitter", capped,
    and never less than the server's ``Retry-After``."""
    ceiling = min(cap, BACKOFF_BASE_S * 2 ** max(0, failures - 1))
    delay = ceiling / 2 + rng.uniform(0, ceiling / 2)
    return float(max(delay, retry_after or 0.0))


@dataclass
class PassStats:
    started: str
    seconds: float = 0.0
    images_sent: int = 0
    bytes_sent: int = 0
    verified: int = 0
    annotations_sent: int = 0
    refused: int = 0  # uploads the server did not take (still absent after the re-check)
    outcome: str = "ok"
    error: str | None = None


class BudgetExhausted(SyncError):
    """Today's data budget is spent; uploads resume tomorrow (UTC)."""


class SyncWorker(BackgroundWorker):
    """Moves queued images and annotations to a sink, in a thread of its own."""

    thread_name = "sync"

    def __init__(
        self,
        config: Config,
        queue: Queue,
        sink_factory: Callable[[], Sink],
        rng: random.Random | None = None,
    ) -> None:
        assert config.sync is not None
        self.config = config
        self.sync = config.sync
        self.queue = queue
        self.sink_factory = sink_factory
        self.sink: Sink | None = None
        self.rng = rng or random.Random()
        self.bandwidth = Bandwidth(self.sync.bandwidth_kbps) if self.sync.bandwidth_kbps else None
        self.budget = DailyBudget(queue, self.sync.daily_budget_mb)
        self.reachable: bool | None = None
        self.failures = 0
        super().__init__()

    def stop(self, timeout: float = 5.0) -> bool:
        """Stop the thread; a request to a hung server is abandoned (the thread is a daemon),
        and an answer being read stops at its next piece, which is safe: the queue only moves
        on the server's evidence, so the next start re-checks."""
        if self.sink is not None:  # first: a read in progress ends at once
            self.sink.close()
        return super().stop(timeout)

    # -- one cycle ------------------------------------------------------------------------

    def _set_reachable(self, reachable: bool, error: str | None = None) -> None:
        if reachable != self.reachable:
            since = dt.datetime.now(dt.UTC).isoformat()
            if reachable:
                log.info("the API at %s is reachable", self.sync.url)
            else:
                log.warning("the API at %s is unreachable: %s", self.sync.url, error)
            self.queue.publish(sync_reachable="yes" if reachable else "no", sync_reachable_since=since)
        self.reachable = reachable
        self.queue.publish(sync_error=error)

    def cycle(self) -> float:
        """Probe if needed and run one pass; return seconds until the next cycle (0: more to do)."""
        try:
            if self.sink is None:
                self.sink = self.sink_factory()
            if not self.reachable:
                self.sink.probe()
            self._set_reachable(True)
            more = self.run_pass()
            self.failures = 0
            return 0.0 if more else self.sync.probe_interval
        except SinkUnreachable as e:
            self._set_reachable(False, str(e))
            self.failures += 1
            return backoff_delay(self.failures, self.sync.backoff_max, self.rng, e.retry_after)
        except BudgetExhausted as e:
            self.queue.publish(sync_error=str(e))
            return self.sync.probe_interval
        except (SinkAuthError, SinkForbidden) as e:
            log.error("sync stopped: %s", e)
            self._set_reachable(True, str(e))
            if self.sink is not None:  # read the credentials again next time: an operator may fix them
                self.sink.close()
                self.sink = None
            return self.sync.backoff_max
        except StickyAgentError as e:
            log.error("sync pass failed: %s", e)
            self.queue.publish(sync_error=str(e))
            return self.sync.probe_interval

    def run_pass(self) -> bool:
        """Sync one batch, then annotations and retention; return True if more images wait."""
        assert self.sink is not None
        stats = PassStats(started=dt.datetime.now(dt.UTC).isoformat())
        t0 = time.monotonic()
        batch = sync_batch(self.queue, self.sync.batch_size, newest_first=self.sync.order == "newest")
        try:
            if batch:
                self._sync_images(batch, stats)
            self._sync_annotations(stats)
        except SyncError as e:
            stats.outcome, stats.error = type(e).__name__, str(e)
            raise
        finally:
            stats.seconds = round(time.monotonic() - t0, 3)
            if batch or stats.annotations_sent or stats.error:
                self.queue.publish(sync_last=json.dumps(asdict(stats)))
        enforce(self.config.retention, self.queue, self.config.storage.data_dir)
        # More waits if the batch was full; but if the server refused every image in it, go on
        # only after the probe interval, so a server that refuses everything does not burn
        # every image's tries within seconds.
        return len(batch) == self.sync.batch_size and stats.refused < len(batch)

    def _decide(self, images: list[Image], remote: Mapping[ImageKey, RemoteImage]) -> list[Image]:
        """Move images by what the server holds; return those it does not hold."""
        absent = []
        for img in images:
            held = remote.get((img.device, img.datetime))
            if held is None:
                absent.append(img)
            elif held.md5 == img.md5:
                self.queue.set_state(img.id, ImageState.VERIFIED)
            else:
                why = f"the server holds {img.path} with md5 {held.md5}, ours is {img.md5}"
                log.error("conflict: %s; not overwriting it", why)
                self.queue.set_state(img.id, ImageState.CONFLICT, error=why)
        return absent

    def _sync_images(self, batch: list[Image], stats: PassStats) -> None:
        assert self.sink is not None
        keys = [(i.device, i.datetime) for i in batch]
        absent = self._decide(batch, self.sink.lookup_images(keys))
        stats.verified += len(batch) - len(absent)
        if not absent:
            return
        tried: list[Image] = []
        errors: dict[int, str] = {}
        unreachable: list[SyncError] = []

        def upload(img: Image) -> None:
            if unreachable:
                return
            try:
                sent = self._upload_one(img)
            except SinkRejected as e:
                errors[img.id] = str(e)
                tried.append(img)
            except SyncError as e:
                unreachable.append(e)
            else:
                if sent:
                    tried.append(img)
                    stats.images_sent += 1
                    stats.bytes_sent += img.size

        with ThreadPoolExecutor(self.sync.parallelism, thread_name_prefix="upload") as pool:
            list(pool.map(upload, absent))
        if tried:
            # The answer of an upload proves nothing (it may have been lost, or a 500 may
            # hide a success): ask the server what it now holds.
            remote = self.sink.lookup_images([(i.device, i.datetime) for i in tried])
            still_absent = self._decide(tried, remote)
            stats.verified += len(tried) - len(still_absent)
            stats.refused = len(still_absent)
            for img in still_absent:
                error = errors.get(img.id, "the server answered the upload but does not hold the image")
                if record_sync_failure(self.queue, img.id, error, self.sync.max_attempts):
                    log.error("giving up on %s: %s", img.path, error)
        if unreachable:
            raise unreachable[0]

    def _upload_one(self, img: Image) -> bool:
        """Send one image after checking its bytes; return False if it must not be sent."""
        assert self.sink is not None
        path: Path = self.config.storage.data_dir / img.path
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            self.queue.set_state(img.id, ImageState.MISSING, error="file gone before upload")
            log.error("cannot upload %s: the file is gone", img.path)
            return False
        if md5_of(data).hexdigest() != img.md5:
            why = "the file no longer matches its md5 (SD card corruption?): never uploaded"
            log.error("quarantined %s: %s", img.path, why)
            self.queue.set_state(img.id, ImageState.QUARANTINED, error=why)
            return False
        if not self.budget.reserve(len(data)):
            raise BudgetExhausted(
                f"today's upload budget ({self.sync.daily_budget_mb} MB) is spent; "
                "uploads resume at 00:00 UTC"
            )
        self.sink.upload_image(path, data, img.md5, throttle=self.bandwidth)
        self.queue.set_state(img.id, ImageState.UPLOADED)
        return True

    def _sync_annotations(self, stats: PassStats) -> None:
        assert self.sink is not None
        pending = pending_annotations(self.queue, self.sync.batch_size)
        if not pending:
            return
        keys = sorted({(img.device, img.datetime) for _, img in pending})
        held = self.sink.lookup_annotations(keys)
        refused = []
        for ann, img in pending:
            key = (img.device, img.datetime)
            if (key, ann.algo_name, ann.algo_version) in held:
                set_annotation_state(self.queue, ann.id, AnnotationState.UPLOADED)
                continue
            batch = AnnotationBatch(key, img.md5, ann.algo_name, ann.algo_version, json.loads(ann.json))
            try:
                self.sink.upload_annotations(batch)
                set_annotation_state(self.queue, ann.id, AnnotationState.UPLOADED)
                stats.annotations_sent += 1
            except SinkRejected as e:
                refused.append((ann, key, str(e)))
        if refused:
            held = self.sink.lookup_annotations(sorted({k for _, k, _ in refused}))
            for ann, key, error in refused:
                if (key, ann.algo_name, ann.algo_version) in held:  # e.g. a duplicate triple
                    set_annotation_state(self.queue, ann.id, AnnotationState.UPLOADED)
                else:
                    give_up = ann.attempts + 1 >= self.sync.max_attempts
                    state = AnnotationState.FAILED if give_up else AnnotationState.PENDING
                    set_annotation_state(self.queue, ann.id, state, error=error, attempt=True)
