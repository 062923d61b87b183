"""The sync worker: a thread that empties the queue into a sink whenever the network is there.

Each cycle: if the last cycle failed, probe the API with ``/get_token`` (backing off
exponentially with jitter, up to ``backoff_max``, and never sooner than a ``Retry-After``);
give ``failed`` images one more try every ``retry_failed_interval``; then a *pass*:

1. take a batch of ``captured``/``uploaded`` images (oldest first, or newest);
2. one metadata query: what does the server hold? same md5 -> ``verified``; another md5
   -> ``conflict`` (never overwritten); absent -> upload;
3. uploads, ``parallelism`` at a time: re-hash the file first (a mismatch means the SD
   card corrupted it: ``quarantined``, never sent), then one image per request; a
   ``SinkRejected`` (the server's 500) is not believed or disbelieved: step 4 decides;
4. a second metadata query for what was sent or refused: same md5 -> ``verified``;
   absent -> one more try counted (``failed`` after ``max_attempts``), but only if the server
   took another upload in the same pass: when it refuses *every* upload it is having an outage
   (storage down...), nothing is counted, and later passes start with one *canary*, the newest
   waiting image, until the server takes it;
5. annotations of verified images; a refusal is checked the same way;
6. retention; one log line for the pass (sent, bytes, rate, what remains).

A 500 is an answer, not "unreachable": the API is then reachable but refusing, and status
says what it answered.

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
from dataclasses import asdict
from hashlib import md5 as md5_of
from pathlib import Path

from agent.background import BackgroundWorker
from agent.capture.retention import enforce
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
    retry_failed_once,
    set_annotation_state,
    sync_batch,
    waiting_totals,
)
from agent.sinks.base import AnnotationBatch, ImageKey, RemoteImage, Sink
from agent.sinks.passes import PassStats, Progress, backoff_delay, log_pass
from agent.sinks.throttle import Bandwidth, DailyBudget

log = logging.getLogger(__name__)


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
        clock: Callable[[], float] = time.time,
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
        self.clock = clock
        self.reachable: bool | None = None
        #: False until a cycle succeeds, and after any failure: the next cycle probes first.
        self.healthy = False
        #: True while the server refuses every upload (an outage): nothing is counted.
        self.refusing = False
        self.failures = 0
        #: The error that ended the last cycle (None if it went well), for ``stickyctl sync``.
        self.last_error: StickyAgentError | None = None
        self.last_stats: PassStats | None = None
        self.on_progress: Progress | None = None
        self._next_failed_retry: float | None = None
        super().__init__()

    @property
    def interrupted(self) -> bool:
        """Return whether :meth:`interrupt` or :meth:`stop` was called."""
        return self._stopping

    def interrupt(self) -> None:
        """Start no new upload (one in flight finishes or is abandoned); do not wait."""
        self._stopping = True

    def stop(self, timeout: float = 5.0) -> bool:
        """Stop the thread; a request to a hung server is abandoned (the thread is a daemon),
        and an answer being read stops at its next piece, which is safe: the queue only moves
        on the server's evidence, so the next start re-checks."""
        if self.sink is not None:  # first: a read in progress ends at once
            self.sink.close()
        return super().stop(timeout)

    # -- one cycle ------------------------------------------------------------------------

    def _set_reachable(self, reachable: bool, error: str | None = None) -> None:
        """Publish whether the API answers at all (a 500 is an answer) and the current problem."""
        now = dt.datetime.now(dt.UTC).isoformat()
        if reachable != self.reachable:
            if reachable:
                log.info("the API at %s is reachable", self.sync.url)
            else:
                log.warning("the API at %s is unreachable: %s", self.sync.url, error)
            self.queue.publish(sync_reachable="yes" if reachable else "no", sync_reachable_since=now)
        self.reachable = reachable
        self.queue.publish(sync_error=error, sync_checked=now)

    def _fail(self, error: StickyAgentError, delay: float) -> float:
        self.healthy = False
        self.last_error = error
        return delay

    def cycle(self) -> float:
        """Probe if needed and run one pass; return seconds until the next cycle (0: more to do)."""
        try:
            if self.sink is None:
                self.sink = self.sink_factory()
            if not self.healthy or self.reachable is None:  # (None: the agent asks for a probe now)
                self.sink.probe()
            self._set_reachable(True)
            self._retry_failed_when_due()
            more = self.run_pass()
        except SinkUnreachable as e:
            self._set_reachable(False, str(e))
            self.failures += 1
            return self._fail(e, backoff_delay(self.failures, self.sync.backoff_max, self.rng, e.retry_after))
        except BudgetExhausted as e:  # the server is fine: no probe (no traffic) until tomorrow
            self.queue.publish(sync_error=str(e))
            self.last_error = e
            return self.sync.probe_interval
        except (SinkAuthError, SinkForbidden) as e:
            log.error("sync stopped: %s", e)
            self._set_reachable(True, str(e))
            if self.sink is not None:  # read the credentials again next time: an operator may fix them
                self.sink.close()
                self.sink = None
            return self._fail(e, self.sync.backoff_max)
        except SinkRejected as e:  # the server answered, with an error: up, but not well
            log.warning("the API at %s answers with an error: %s", self.sync.url, e)
            self._set_reachable(True, str(e))
            self.failures += 1
            return self._fail(e, backoff_delay(self.failures, self.sync.backoff_max, self.rng))
        except StickyAgentError as e:
            log.error("sync pass failed: %s", e)
            self.queue.publish(sync_error=str(e), sync_checked=dt.datetime.now(dt.UTC).isoformat())
            return self._fail(e, self.sync.probe_interval)
        self.healthy, self.last_error = True, None
        if self.refusing:
            why = "the API refuses every upload (500): an outage? nothing is counted against the images"
            self.queue.publish(sync_error=why)
            self.failures += 1
            return backoff_delay(self.failures, self.sync.backoff_max, self.rng)
        self.failures = 0
        return 0.0 if more else self.sync.probe_interval

    def _retry_failed_when_due(self) -> None:
        """Every ``retry_failed_interval``, give ``failed`` images and annotations one more try."""
        now = self.clock()
        if self._next_failed_retry is None:
            last = self.queue.published().get("sync_failed_retry")
            self._next_failed_retry = float(last) + self.sync.retry_failed_interval if last else now
        if now < self._next_failed_retry:
            return
        self._next_failed_retry = now + self.sync.retry_failed_interval
        self.queue.publish(sync_failed_retry=f"{now:.0f}")
        n = retry_failed_once(self.queue, self.sync.max_attempts)
        if n:
            log.info("giving %d failed image(s) one more try (every %gs)", n, self.sync.retry_failed_interval)

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
            self.last_stats = stats
            if batch or stats.annotations_sent or stats.error:
                stats.waiting, stats.waiting_bytes = waiting_totals(self.queue)
                self.queue.publish(sync_last=json.dumps(asdict(stats)))
                log_pass(stats)
        enforce(self.config.retention, self.queue, self.config.storage.data_dir)
        # More waits if the batch was full; but if the server refused every image in it, go on
        # only after the probe interval, so a server that refuses everything does not burn
        # every image's tries within seconds.
        return len(batch) == self.sync.batch_size and stats.refused < len(batch)

    def _progress(self, images: int, sent: int) -> None:
        if self.on_progress is not None and (images or sent):
            self.on_progress(images, sent)

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
        self._progress(len(batch) - len(absent), 0)
        if not absent:
            return
        if self.refusing:
            # One canary first: the newest waiting image (a fresh capture, most likely good).
            canary = sync_batch(self.queue, 1, newest_first=True)
            if canary:  # never re-upload what the server holds (it would overwrite it)
                canary = self._decide(
                    canary, self.sink.lookup_images([(canary[0].device, canary[0].datetime)])
                )
            if not canary or self._upload_and_check(canary, stats, count=False):
                log.warning("the API still refuses uploads: waiting (nothing counted against the images)")
                return
            log.info("the API takes uploads again")
            self.refusing = False
            absent = [i for i in absent if i.id != canary[0].id]
        refused = self._upload_and_check(absent, stats, count=None)
        if refused and not stats.accepted:
            log.warning("the API refused every upload of this pass: an outage? nothing counted")
            self.refusing = True

    def _upload_and_check(self, absent: list[Image], stats: PassStats, count: bool | None) -> list[Image]:
        """Upload ``absent`` and ask the server what it now holds; return the images it refused.

        A refusal is counted against its image if ``count`` is True, or if ``count`` is None and
        the server took another upload of this pass (else it is an outage, counted against nobody).
        """
        assert self.sink is not None
        tried: list[Image] = []
        errors: dict[int, str] = {}
        unreachable: list[SyncError] = []

        def upload(img: Image) -> None:
            if unreachable or self.interrupted:
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
                    self._progress(1, img.size)

        with ThreadPoolExecutor(self.sync.parallelism, thread_name_prefix="upload") as pool:
            list(pool.map(upload, absent))
        still_absent: list[Image] = []
        if tried:
            # The answer of an upload proves nothing (it may have been lost, or a 500 may
            # hide a success): ask the server what it now holds.
            remote = self.sink.lookup_images([(i.device, i.datetime) for i in tried])
            still_absent = self._decide(tried, remote)
            stats.verified += len(tried) - len(still_absent)
            stats.accepted += len(tried) - len(still_absent)
            stats.refused += len(still_absent)
            if count is None:
                count = stats.accepted > 0
            for img in still_absent if count else []:
                error = errors.get(img.id, "the server answered the upload but does not hold the image")
                if record_sync_failure(self.queue, img.id, error, self.sync.max_attempts):
                    log.error("giving up on %s: %s", img.path, error)
        if unreachable:
            raise unreachable[0]
        return still_absent

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
                stats.accepted += 1
            except SinkRejected as e:
                refused.append((ann, key, str(e)))
        if refused:
            held = self.sink.lookup_annotations(sorted({k for _, k, _ in refused}))
            for ann, key, error in refused:
                if (key, ann.algo_name, ann.algo_version) in held:  # e.g. a duplicate triple
                    set_annotation_state(self.queue, ann.id, AnnotationState.UPLOADED)
                elif not stats.accepted:  # the server took nothing this pass: an outage, not counted
                    continue
                else:
                    give_up = ann.attempts + 1 >= self.sync.max_attempts
                    state = AnnotationState.FAILED if give_up else AnnotationState.PENDING
                    set_annotation_state(self.queue, ann.id, state, error=error, attempt=True)
