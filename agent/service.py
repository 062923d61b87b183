"""The long-running agent behind ``stickyctl run``.

Start-up: take the agent lock (one agent per data folder), open the queue and the
hardware, start the capture schedule, tell systemd it is ready, and only then reconcile
disk and queue, in a thread of its own under the capture lock: adopting a large backlog
after a crash takes minutes (2,000 images: ~275 s on a Pi), longer than systemd lets a
start take. Captures wait for it (they must never meet a reconciliation half-way), and the
sync and detection workers start once it is done. Then the main thread wakes every few
seconds to publish a heartbeat, pull the schedule back after a backward clock step, and
re-run reconciliation daily (in the background too). SIGTERM/SIGINT stop it cleanly: no
new capture starts, the capture in progress finishes, the camera and flash are released.

Under systemd (``Type=notify``, :mod:`agent.sdnotify`) it sends ``READY=1`` once the
queue and schedule are up, ``STATUS=`` with the next capture, ``WATCHDOG=1`` from the
main loop only while the scheduler runs and the sync worker lives, and ``STOPPING=1``.
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
import os
import signal
import threading
import time
from dataclasses import dataclass
from types import FrameType
from typing import TYPE_CHECKING

from agent import __version__
from agent.capture.pipeline import DISK_FULL, Capturer, CaptureResult
from agent.capture.reconcile import ReconcileReport, reconcile
from agent.capture.scheduler import CaptureScheduler
from agent.config import Config
from agent.device import device_id
from agent.errors import DiskFullError, StickyAgentError, StorageError
from agent.hardware.buttons import ManualButton, StatusLed
from agent.hardware.camera import make_camera
from agent.hardware.flash import make_flash
from agent.hardware.sensors import make_sensors
from agent.locks import AgentLock, capture_lock, running_agent_pid
from agent.queue import Queue
from agent.sdnotify import Notifier, watchdog_interval

if TYPE_CHECKING:
    from agent.background import BackgroundWorker
    from agent.detect.worker import DetectionWorker
    from agent.sinks.worker import SyncWorker
    from agent.web.app import WebServer

log = logging.getLogger(__name__)

HEARTBEAT_S = 5.0
RECONCILE_EVERY_S = 24 * 3600.0
#: Sooner when a full disk left files for later (adoption deferred, a capture without its row).
RECONCILE_RETRY_S = 600.0
#: How often a start on a full disk tries again to open the queue.
DISK_RETRY_S = 60.0
RECONCILE_STOP_WAIT_S = 10.0


@dataclass
class Pipeline:
    """Everything one capture needs, built from the config (shared by ``run`` and ``capture``)."""

    config: Config
    device: str
    queue: Queue
    capturer: Capturer

    @classmethod
    def build(cls, config: Config) -> Pipeline:
        """Given a config, open the queue and the hardware. Raise StickyAgentError if one fails."""
        device = device_id(config.device.id)
        queue = Queue(config.storage.queue_path)
        camera = make_camera(config.camera, state_dir=config.storage.data_dir)
        flash = make_flash(config.flash)
        sensors = make_sensors(config.sensors)
        return cls(config, device, queue, Capturer(config, device, camera, flash, sensors, queue))

    def reconcile(self) -> ReconcileReport:
        with capture_lock(self.config.storage.data_dir, self.config.capture.lock_timeout):
            report = reconcile(self.queue, self.config.storage.data_dir)
        if report.quarantined:
            self.queue.publish(last_quarantine="; ".join(report.quarantined[-3:]))
        return report

    def close(self) -> None:
        self.capturer.close()
        self.capturer.flash.close()
        self.capturer.sensors.close()  # releases the hat's ADC
        self.queue.close()


class Agent:
    """The agent process: schedule, heartbeat, clean stop."""

    def __init__(self, config: Config) -> None:
        self.config = config
        #: Set to wake the main loop early: a stop, or a manual capture request (SIGUSR1,
        #: sent by ``stickyctl capture`` while the agent runs).
        self.wake = threading.Event()
        self.stopping = False
        self.manual_requested = False
        self.sync_requested = False
        self.lock = AgentLock(config.storage.data_dir)
        self.pipeline: Pipeline | None = None
        self.scheduler: CaptureScheduler | None = None
        #: One sync worker per sink, in the config's order.
        self.syncs: list[SyncWorker] = []
        self.detection: DetectionWorker | None = None
        self.button: ManualButton | None = None
        self.led: StatusLed | None = None
        #: The trap's web page (``[web] enabled``), served from a thread of this process.
        self.web: WebServer | None = None
        self._last_capture_ok = True
        #: Set while no reconciliation runs (captures wait for it); see _start_reconciliation.
        self.reconciled = threading.Event()
        self.reconciled.set()
        self._reconciler: threading.Thread | None = None
        self._workers_started = False
        self._stopped = False
        self._lifecycle = threading.Lock()  # worker start (reconcile thread) vs stop()
        #: systemd notifications (READY, STATUS, WATCHDOG, STOPPING); a no-op outside systemd.
        #: With a watchdog, the main loop wakes at least twice per WatchdogSec.
        self.notifier = Notifier.from_env()
        watchdog = watchdog_interval()
        self.heartbeat_s = min(HEARTBEAT_S, watchdog) if watchdog else HEARTBEAT_S
        self._sd_status: str | None = None
        #: When the next reconciliation is due (time.monotonic()).
        self.next_reconcile = time.monotonic() + RECONCILE_EVERY_S
        #: True while a start on a full disk waits for space.
        self.waiting_for_space = False

    def _notify_status(self, text: str) -> None:
        """Tell systemd what we are doing (``systemctl status`` shows it), once per change."""
        if text != self._sd_status:
            self._sd_status = text
            self.notifier.notify(f"STATUS={text}")

    def _health_problem(self) -> str | None:
        """Return why the agent is not doing its job (the watchdog then goes unfed), or None."""
        if self.scheduler is None or not self.scheduler.running:
            return "the capture scheduler is not running"
        for worker in self.syncs if self._workers_started else []:
            if not worker.alive:
                return f"the sync worker of {worker.name} is dead"
        return None

    def _wake_syncs(self) -> None:
        """New annotations: every sink's worker has something to send."""
        for worker in self.syncs:
            worker.wake()

    @property
    def sync(self) -> SyncWorker | None:
        """The first sink's worker (None without sinks)."""
        return self.syncs[0] if self.syncs else None

    @property
    def _workers(self) -> list[tuple[str, BackgroundWorker]]:
        out: list[tuple[str, BackgroundWorker]] = [(f"sync ({w.name})", w) for w in self.syncs]
        if self.detection is not None:
            out.append(("detection", self.detection))
        return out

    def _feed_watchdog(self) -> None:
        """Send WATCHDOG=1 only while the scheduler runs and the sync worker (if any) lives:
        a trap that stopped capturing must be restarted by systemd, not look healthy."""
        problem = self._health_problem()
        if problem is None:
            self.notifier.notify("WATCHDOG=1")
        elif self._sd_status is None or not self._sd_status.startswith("unhealthy"):
            log.error("%s: not feeding the systemd watchdog", problem)
            self._notify_status(f"unhealthy: {problem}")

    def _publish_next(self, next_time: dt.datetime | None) -> None:
        if self.pipeline is not None:
            self.pipeline.queue.publish(
                next_capture=next_time.isoformat() if next_time else None,
                heartbeat=dt.datetime.now(dt.UTC).isoformat(),
            )
        if self._health_problem() is None:
            when = f"{next_time.astimezone(dt.UTC):%Y-%m-%d %H:%M:%S} UTC" if next_time else "none scheduled"
            self._notify_status(f"capturing; next capture {when}")

    def capture_job(self) -> CaptureResult:
        assert self.pipeline is not None
        if not self._wait_reconciled():
            return CaptureResult("skipped", dt.datetime.now(dt.UTC), error="the agent is stopping")
        result = self.pipeline.capturer.capture(manual=False)
        self._after_capture(result)
        return result

    def _after_capture(self, result: CaptureResult) -> None:
        """Wake the workers that take a new image further, and show the outcome on the LED."""
        if result.ok:
            for _, worker in self._workers:
                worker.wake()
            if self.led is not None:
                self.led.captured()
        self._last_capture_ok = result.ok
        if result.outcome == DISK_FULL:  # its file may be on disk without its row
            self.next_reconcile = min(self.next_reconcile, time.monotonic() + RECONCILE_RETRY_S)
        self._update_led()

    def _build_pipeline(self) -> Pipeline:
        """Build the pipeline; on a full disk wait for space instead of failing (under systemd a
        failed start becomes a restart loop, then start-limit-hit: a trap stopped for good).
        Raise StickyAgentError for any other failure, or if stopped while waiting."""
        while True:
            try:
                pipeline = Pipeline.build(self.config)
            except DiskFullError as e:
                if not self.waiting_for_space:
                    log.error("%s; waiting for space (trying again every %gs)", e, DISK_RETRY_S)
                    self.waiting_for_space = True
                self._notify_status("DISK FULL: waiting for space to open the queue")
                self.notifier.notify("READY=1\nWATCHDOG=1")
                self.wake.wait(DISK_RETRY_S)
                self.wake.clear()
                if self.stopping:
                    raise StickyAgentError("stopped while waiting for disk space") from e
                continue
            if self.waiting_for_space:
                log.warning("disk space is back: starting")
                self.waiting_for_space = False
            return pipeline

    def _update_led(self) -> None:
        if self.led is None:
            return
        if not self._last_capture_ok or self._health_problem() is not None:
            self.led.set_state("error")
        elif any(w.reachable is False for w in self.syncs):
            self.led.set_state("offline")
        else:
            self.led.set_state("ok")

    def start(self) -> None:
        """Acquire the agent lock, reconcile, open the hardware and start the schedule.

        Raise StickyAgentError if another agent runs or a part cannot start.
        """
        data_dir = self.config.storage.data_dir
        try:
            data_dir.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise StorageError(
                f"cannot use the data folder {data_dir}: {e.strerror} (is a file in the way?)"
            ) from e
        if not self.lock.acquire():
            raise StickyAgentError(
                f"another sticky-agent is already running on {data_dir} "
                f"(pid {running_agent_pid(data_dir)}); stop it first (systemctl stop sticky-agent)"
            )
        try:
            self.pipeline = self._build_pipeline()
            if self.config.sinks:
                from agent.sinks.base import open_sink
                from agent.sinks.throttle import Link
                from agent.sinks.worker import SyncWorker

                link = Link.from_config(self.config, self.pipeline.queue)  # one link, shared
                for settings in self.config.sinks:
                    open_sink(settings).close()  # refuse to start on bad credentials
                    self.syncs.append(
                        SyncWorker(
                            self.config,
                            self.pipeline.queue,
                            functools.partial(open_sink, settings),
                            settings=settings,
                            link=link,
                        )
                    )
            if self.config.detector.type != "none":
                from agent.detect import make_detector
                from agent.detect.worker import DetectionWorker

                syncs = self.syncs
                self.detection = DetectionWorker(
                    make_detector(self.config.detector),
                    self.pipeline.queue,
                    data_dir,
                    on_detected=self._wake_syncs if syncs else None,
                )
            try:
                self.pipeline.queue.prune_attempts(self.config.storage.keep_capture_log)
            except DiskFullError as e:
                log.error("capture log not pruned: %s", e)
            # After each run, wake the main loop to publish the next slot.
            self.scheduler = CaptureScheduler(self.config.capture, self.capture_job, on_run=self.wake.set)
            self.scheduler.start()
            self.led = StatusLed(self.config.led)
            self.button = ManualButton(self.config.button, self.request_capture)
            if self.config.web.enabled:
                from agent.web.app import WebServer

                self.web = WebServer(self)
                self.web.start()
        except BaseException:
            self.stop()
            raise
        q = self.pipeline.queue
        q.publish(
            agent_pid=str(os.getpid()),
            agent_version=__version__,
            agent_started=dt.datetime.now(dt.UTC).isoformat(),
        )
        self._publish_next(self.scheduler.next_run_time)
        log.info(
            "sticky-agent %s started: device %s, camera %s, next capture %s",
            __version__,
            self.pipeline.device,
            self.config.camera.type,
            self.scheduler.next_run_time,
        )
        self.notifier.notify("READY=1")
        self._start_reconciliation(startup=True)

    def _start_reconciliation(self, startup: bool) -> None:
        """Reconcile disk and queue in a thread of its own (under the capture lock, which
        captures also take); captures wait until it is done. At start-up, start the sync and
        detection workers after it."""
        if self._reconciler is not None and self._reconciler.is_alive():
            return
        self.reconciled.clear()
        self._reconciler = threading.Thread(
            target=self._reconcile, args=(startup,), name="reconcile", daemon=True
        )
        self._reconciler.start()

    def _reconcile(self, startup: bool) -> None:
        what = "start-up" if startup else "daily"
        pipeline = self.pipeline
        try:
            if pipeline is not None:
                started = time.monotonic()
                log.info("%s reconciliation of %s started", what, self.config.storage.data_dir)
                report = pipeline.reconcile()
                delay = RECONCILE_RETRY_S if report.deferred else RECONCILE_EVERY_S
                self.next_reconcile = time.monotonic() + delay
                log.info(
                    "%s reconciliation done in %.1f s (%d adopted)",
                    what,
                    time.monotonic() - started,
                    len(report.adopted),
                )
        except StickyAgentError as e:
            self.next_reconcile = time.monotonic() + RECONCILE_RETRY_S
            log.error("%s reconciliation failed: %s", what, e)
        except Exception:  # a bug must not leave the captures waiting for ever
            self.next_reconcile = time.monotonic() + RECONCILE_RETRY_S
            log.exception("%s reconciliation failed with an unexpected error", what)
        finally:
            self.reconciled.set()
            if startup:
                self._start_workers()
            self.wake.set()  # the main loop takes a manual capture that waited

    def _start_workers(self) -> None:
        with self._lifecycle:
            if self._stopped:
                return
            for _, worker in self._workers:
                worker.start()
            self._workers_started = True

    def _wait_reconciled(self) -> bool:
        """Wait for a reconciliation in progress to finish; return False if the agent stops first."""
        if self.reconciled.is_set():
            return True
        log.info("capture waits for the reconciliation of the data folder to finish")
        while not self.reconciled.wait(1.0):
            if self.stopping or self._stopped:
                return False
        return True

    def run_forever(self) -> None:
        """Serve until :meth:`request_stop` (or SIGTERM/SIGINT) is called, then stop cleanly."""
        try:
            while not self._wait():
                assert self.scheduler is not None and self.pipeline is not None
                self._feed_watchdog()  # before the work: a manual capture gets a full period
                if self.manual_requested and self.reconciled.is_set():
                    self.manual_requested = False
                    self._after_capture(self.pipeline.capturer.capture(manual=True))
                if self.sync_requested:
                    self.sync_requested = False
                    for sync in self.syncs:
                        sync.reachable = None  # probe now, whatever the backoff said
                        sync.wake()
                for name, worker in self._workers:
                    if self._workers_started and not worker.alive:
                        log.error("the %s worker died; restarting it", name)
                        worker.start()
                self.scheduler.check_clock()
                self._publish_next(self.scheduler.next_run_time)
                self._update_led()
                self._feed_watchdog()  # and before a daily reconciliation
                if time.monotonic() >= self.next_reconcile:
                    self._start_reconciliation(startup=False)
        finally:
            self.stop()

    def _wait(self) -> bool:
        """Wait up to a heartbeat for a stop or a manual request; return True to stop."""
        self.wake.wait(self.heartbeat_s)
        self.wake.clear()
        return self.stopping

    def request_capture(self, _signum: int | None = None, _frame: FrameType | None = None) -> None:
        self.manual_requested = True
        self.wake.set()

    def request_sync(self, _signum: int | None = None, _frame: FrameType | None = None) -> None:
        self.sync_requested = True
        self.wake.set()

    def request_stop(self, signum: int | None = None, _frame: FrameType | None = None) -> None:
        if signum is not None:
            log.info("received %s: stopping after the capture in progress", signal.Signals(signum).name)
        self.stopping = True
        self.wake.set()

    def install_signal_handlers(self) -> None:
        signal.signal(signal.SIGTERM, self.request_stop)
        signal.signal(signal.SIGINT, self.request_stop)
        signal.signal(signal.SIGUSR1, self.request_capture)
        signal.signal(signal.SIGUSR2, self.request_sync)

    def stop(self) -> None:
        """Stop scheduling, let the capture in progress finish, release everything. Idempotent."""
        with self._lifecycle:
            self._stopped = True  # a reconciliation finishing now starts no worker
        if self.scheduler is not None or self.pipeline is not None:
            self.notifier.notify("STOPPING=1\nSTATUS=stopping after the capture in progress")
        if self.web is not None:  # no new requests (and no preview) while stopping
            self.web.stop()
            self.web = None
        if self.button is not None:  # no new presses while stopping
            self.button.close()
            self.button = None
        if self.scheduler is not None:
            self.scheduler.shutdown(wait=True)
            self.scheduler = None
        for sync in self.syncs:  # cut every sink's requests in flight first: no waiting in turn
            sync.interrupt()
            if sync.sink is not None:
                sync.sink.close()
        for sync in self.syncs:
            sync.stop()
        self.syncs = []
        if self.detection is not None:
            self.detection.stop()
            self.detection.detector.close()
            self.detection = None
        if self.led is not None:
            self.led.close()
            self.led = None
        if self._reconciler is not None:
            # Safe to abandon (it is crash-safe and a daemon), but give it a moment to finish.
            self._reconciler.join(RECONCILE_STOP_WAIT_S)
            if self._reconciler.is_alive():
                log.warning("stopping during the reconciliation; the next start finishes it")
            self._reconciler = None
        if self.pipeline is not None:
            try:
                self.pipeline.queue.publish(next_capture=None, agent_pid=None)
            except StickyAgentError as e:
                log.error("could not record the stop in the queue: %s", e)
            self.pipeline.close()
            self.pipeline = None
            log.info("sticky-agent stopped")
        self.lock.release()
