"""The sync worker: a thread per sink that empties the queue into it whenever the network is there.

Each sink has its own worker, so a slow or broken sink never delays another; they share one
:class:`Link` (the bandwidth cap and the daily budget: one network link). Each works on the
sink's ``deliveries`` rows (:mod:`agent.queue.deliveries`), never on another sink's.

Each cycle: if the last cycle failed, probe the sink (the Sticky Pi API: ``/get_token``; backing off
exponentially with jitter, up to ``backoff_max``, and never sooner than a ``Retry-After``);
give ``failed`` images one more try every ``retry_failed_interval``; then a *pass*:

1. take a batch of ``waiting``/``uploaded`` deliveries whose original is on disk (oldest first,
   or newest);
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
6. retention (an original goes only once every required sink verified it); one log line for
   the pass (sent, bytes, rate, what remains).

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
from agent.queue import ImageState, Queue
from agent.queue import deliveries as dq
from agent.queue.schema import DeliveryState
from agent.sinks.annotations import send_annotations
from agent.sinks.base import ImageKey, RemoteImage, Sink, SinkSettings
from agent.sinks.passes import PassStats, Pending, Progress, backoff_delay, fact, image_record, log_pass
from agent.sinks.throttle import BudgetExhausted, Link

log = logging.getLogger(__name__)


class SyncWorker(BackgroundWorker):
    """Moves queued images and annotations to one sink, in a thread of its own."""

    thread_name = "sync"

    def __init__(
        self,
        config: Config,
        queue: Queue,
        sink_factory: Callable[[], Sink],
        settings: SinkSettings | None = None,
        link: Link | None = None,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if settings is None:
            assert config.sinks, "no sink configured"
            settings = config.sinks[0]
        self.config = config
        self.sync = settings
        self.name = settings.name
        self.thread_name = f"sync-{settings.name}"
        self.queue = queue
        self.sink_factory = sink_factory
        self.sink: Sink | None = None
        self.rng = rng or random.Random()
        self.link = link or Link.from_config(config, queue)
        self.bandwidth = self.link.bandwidth
        self.budget = self.link.budget
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

    def publish(self, **facts: str | None) -> None:
        """Publish facts about this sink for ``stickyctl status`` (:func:`fact` keys)."""
        self.queue.publish(**{fact(self.name, k): v for k, v in facts.items()})

    def published(self, key: str) -> str | None:
        return self.queue.published().get(fact(self.name, key))

    def _set_reachable(self, reachable: bool, error: str | None = None) -> None:
        """Publish whether the sink answers at all (a 500 is an answer) and the current problem."""
        now = dt.datetime.now(dt.UTC).isoformat()
        if reachable != self.reachable:
            if reachable:
                log.info("sink %s at %s is reachable", self.name, self.sync.address)
            else:
                log.warning("sink %s at %s is unreachable: %s", self.name, self.sync.address, error)
            self.publish(reachable="yes" if reachable else "no", reachable_since=now)
        self.reachable = reachable
        self.publish(error=error, checked=now)

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
            self.publish(error=str(e))
            self.last_error = e
            return self.sync.probe_interval
        except (SinkAuthError, SinkForbidden) as e:
            log.error("sync to %s stopped: %s", self.name, e)
            self._set_reachable(True, str(e))
            if self.sink is not None:  # read the credentials again next time: an operator may fix them
                self.sink.close()
                self.sink = None
            return self._fail(e, self.sync.backoff_max)
        except SinkRejected as e:  # the server answered, with an error: up, but not well
            log.warning("sink %s at %s answers with an error: %s", self.name, self.sync.address, e)
            self._set_reachable(True, str(e))
            self.failures += 1
            return self._fail(e, backoff_delay(self.failures, self.sync.backoff_max, self.rng))
        except StickyAgentError as e:
            log.error("sync pass to %s failed: %s", self.name, e)
            self.publish(error=str(e), checked=dt.datetime.now(dt.UTC).isoformat())
            return self._fail(e, self.sync.probe_interval)
        self.healthy, self.last_error = True, None
        if self.refusing:
            why = f"{self.name} refuses every upload: an outage? nothing is counted against the images"
            self.publish(error=why)
            self.failures += 1
            return backoff_delay(self.failures, self.sync.backoff_max, self.rng)
        self.failures = 0
        return 0.0 if more else self.sync.probe_interval

    def _retry_failed_when_due(self) -> None:
        """Every ``retry_failed_interval``, give ``failed`` images and annotations one more try."""
        now = self.clock()
        if self._next_failed_retry is None:
            last = self.published("failed_retry")
            self._next_failed_retry = float(last) + self.sync.retry_failed_interval if last else now
        if now < self._next_failed_retry:
            return
        self._next_failed_retry = now + self.sync.retry_failed_interval
        self.publish(failed_retry=f"{now:.0f}")
        n = dq.retry_failed(self.queue, self.name, attempts=max(0, self.sync.max_attempts - 1))
        if n:
            log.info(
                "giving %d failed image(s) one more try with %s (every %gs)",
                n,
                self.name,
                self.sync.retry_failed_interval,
            )

    def run_pass(self) -> bool:
        """Sync one batch, then annotations and retention; return True if more images wait."""
        assert self.sink is not None
        stats = PassStats(started=dt.datetime.now(dt.UTC).isoformat())
        t0 = time.monotonic()
        dq.enqueue(self.queue, self.name)
        batch = self._batch(self.sync.batch_size, newest_first=self.sync.order == "newest")
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
                stats.waiting, stats.waiting_bytes = dq.waiting(self.queue, self.name)
                self.publish(last=json.dumps(asdict(stats)))
                log_pass(stats, self.name)
        enforce(self.config.retention, self.queue, self.config.storage.data_dir, self.config.sinks)
        # More waits if the batch was full; but if the sink refused every image in it, go on
        # only after the probe interval, so a sink that refuses everything does not burn
        # every image's tries within seconds.
        return len(batch) == self.sync.batch_size and stats.refused < len(batch)

    def _batch(self, limit: int, newest_first: bool) -> list[Pending]:
        data_dir = self.config.storage.data_dir
        return [
            Pending(d, i, image_record(i, data_dir))
            for d, i in dq.batch(self.queue, self.name, limit, newest_first)
        ]

    def _progress(self, images: int, sent: int) -> None:
        if self.on_progress is not None and (images or sent):
            self.on_progress(images, sent)

    def _decide(self, items: list[Pending], remote: Mapping[ImageKey, RemoteImage]) -> list[Pending]:
        """Move deliveries by what the sink holds; return those it does not hold."""
        absent = []
        for item in items:
            held = remote.get(item.record.key)
            if held is None:
                absent.append(item)
            elif held.md5 == item.image.md5:
                rid = None if held.remote_id is None else str(held.remote_id)
                dq.set_delivery(self.queue, item.delivery.id, DeliveryState.VERIFIED, remote_id=rid)
            else:
                why = f"{self.name} holds {item.image.path} with md5 {held.md5}, ours is {item.image.md5}"
                log.error("conflict: %s; not overwriting it", why)
                dq.set_delivery(self.queue, item.delivery.id, DeliveryState.CONFLICT, error=why)
        return absent

    def _sync_images(self, batch: list[Pending], stats: PassStats) -> None:
        assert self.sink is not None
        absent = self._decide(batch, self.sink.lookup_images([i.record for i in batch]))
        stats.verified += len(batch) - len(absent)
        self._progress(len(batch) - len(absent), 0)
        if not absent:
            return
        if self.refusing:
            # One canary first: the newest waiting image (a fresh capture, most likely good).
            canary = self._batch(1, newest_first=True)
            if canary:  # never re-upload what the sink holds (it could overwrite it)
                canary = self._decide(canary, self.sink.lookup_images([canary[0].record]))
            if not canary or self._upload_and_check(canary, stats, count=False):
                log.warning(
                    "%s still refuses uploads: waiting (nothing counted against the images)", self.name
                )
                return
            log.info("%s takes uploads again", self.name)
            self.refusing = False
            absent = [i for i in absent if i.delivery.id != canary[0].delivery.id]
        refused = self._upload_and_check(absent, stats, count=None)
        if refused and not stats.accepted:
            log.warning("%s refused every upload of this pass: an outage? nothing counted", self.name)
            self.refusing = True

    def _upload_and_check(self, absent: list[Pending], stats: PassStats, count: bool | None) -> list[Pending]:
        """Upload ``absent`` and ask the sink what it now holds; return the images it refused.

        A refusal is counted against its image if ``count`` is True, or if ``count`` is None and
        the sink took another upload of this pass (else it is an outage, counted against nobody).
        """
        assert self.sink is not None
        tried: list[Pending] = []
        errors: dict[int, str] = {}
        unreachable: list[SyncError] = []

        def upload(item: Pending) -> None:
            if unreachable or self.interrupted:
                return
            try:
                sent = self._upload_one(item)
            except SinkRejected as e:
                errors[item.delivery.id] = str(e)
                tried.append(item)
            except SyncError as e:
                unreachable.append(e)
            else:
                if sent:
                    tried.append(item)
                    stats.images_sent += 1
                    stats.bytes_sent += item.image.size
                    self._progress(1, item.image.size)

        with ThreadPoolExecutor(self.sync.parallelism, thread_name_prefix=f"upload-{self.name}") as pool:
            list(pool.map(upload, absent))
        still_absent: list[Pending] = []
        if tried:
            # The answer of an upload proves nothing (it may have been lost, or a 500 may
            # hide a success): ask the sink what it now holds.
            remote = self.sink.lookup_images([i.record for i in tried])
            still_absent = self._decide(tried, remote)
            stats.verified += len(tried) - len(still_absent)
            stats.accepted += len(tried) - len(still_absent)
            stats.refused += len(still_absent)
            if count is None:
                count = stats.accepted > 0
            for item in still_absent if count else []:
                error = errors.get(
                    item.delivery.id, f"{self.name} answered the upload but does not hold the image"
                )
                if dq.record_failure(self.queue, item.delivery.id, error, self.sync.max_attempts):
                    log.error("giving up on %s with %s: %s", item.image.path, self.name, error)
        if unreachable:
            raise unreachable[0]
        return still_absent

    def _upload_one(self, item: Pending) -> bool:
        """Send one image after checking its bytes; return False if it must not be sent."""
        assert self.sink is not None
        img = item.image
        try:
            data = item.record.path.read_bytes()
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
                f"today's upload budget ({self.link.budget_mb} MB, all sinks) is spent; "
                "uploads resume at 00:00 UTC"
            )
        self.sink.upload_image(item.record, data, throttle=self.bandwidth)
        if item.delivery.state == DeliveryState.WAITING.value:
            dq.set_delivery(self.queue, item.delivery.id, DeliveryState.UPLOADED)
        return True

    def _sync_annotations(self, stats: PassStats) -> None:
        assert self.sink is not None
        send_annotations(self.sink, self.queue, self.config.storage.data_dir, self.sync, stats)
