"""One capture, start to finish: camera ready -> flash on -> frame -> flash off -> encode -> EXIF
-> files -> queue row.

:class:`Capturer` is the pipeline that ``stickyctl run`` calls on schedule and
``stickyctl capture`` calls by hand. A capture is either fully in (original,
both thumbnails and its queue row) or, after the next start-up reconciliation,
leaves nothing behind. A failed capture is logged with its cause, recorded in
the queue's capture log, and returned as a result: it never raises into the
scheduler.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from agent import __version__
from agent.capture.clock import check_capture_time, last_sync_time
from agent.capture.exif import ExposureInfo, Record, build_exif, insert_exif
from agent.capture.imagewriter import write_image_bytes
from agent.capture.naming import image_path
from agent.capture.retention import enforce, free_mb
from agent.config import Config
from agent.errors import CameraError, ClockError, DiskFullError, StickyAgentError
from agent.faults import checkpoint
from agent.hardware.camera import Camera, Frame
from agent.hardware.flash import Exposure, Flash
from agent.hardware.sensors import Sensors, read_safely
from agent.locks import capture_lock
from agent.queue import Image, Queue

log = logging.getLogger(__name__)

OK, FAILED, CLOCK, DISK_FULL = "ok", "failed", "clock", "disk_full"


@dataclass(frozen=True)
class CaptureResult:
    outcome: str  # ok | failed | clock
    started_at: dt.datetime
    image: Image | None = None
    error: str | None = None
    #: Seconds the flash was on (None: no flash, or the capture failed before the exposure).
    flash_on_s: float | None = None

    @property
    def ok(self) -> bool:
        return self.outcome == OK


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class Capturer:
    """The capture pipeline for one device, over its camera, flash, sensors and queue."""

    def __init__(
        self,
        config: Config,
        device: str,
        camera: Camera,
        flash: Flash,
        sensors: Sensors,
        queue: Queue,
        now: Callable[[], dt.datetime] = _utcnow,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.config = config
        self.device = device
        self.camera = camera
        self.flash = flash
        self.sensors = sensors
        self.queue = queue
        self.now = now
        self.sleep = sleep
        self.data_dir: Path = config.storage.data_dir
        self._camera_open = False
        #: Seconds the flash was on in the last capture (None: no flash, or no frame asked for).
        self.flash_on_s: float | None = None

    def close(self) -> None:
        if self._camera_open:
            self.camera.close()
            self._camera_open = False

    def capture(self, manual: bool = False) -> CaptureResult:
        """Take one picture through the whole pipeline and return its outcome. Never raises
        for a failed capture (it is logged and recorded); only for a programming error."""
        started = self.now()
        self.flash_on_s = None
        try:
            with capture_lock(self.data_dir, self.config.capture.lock_timeout):
                image = self._capture_locked(manual)
        except ClockError as e:
            log.error("capture skipped: %s", e)
            return self._record(CLOCK, started, manual, error=str(e))
        except DiskFullError as e:
            log.error("capture skipped: %s", e)
            return self._record(DISK_FULL, started, manual, error=str(e))
        except StickyAgentError as e:
            log.error("capture failed: %s%s", e, self._flash_note())
            return self._record(FAILED, started, manual, error=str(e))
        except Exception as e:  # a bug must not stop the trap: log it fully, count it
            log.exception("capture failed with an unexpected error")
            return self._record(FAILED, started, manual, error=f"{type(e).__name__}: {e}")
        log.info(
            "captured %s (%d bytes, md5 %s%s%s)",
            image.path,
            image.size,
            image.md5,
            self._flash_note(),
            ", manual" if manual else "",
        )
        return self._record(OK, started, manual, image=image)

    def _flash_note(self) -> str:
        return "" if self.flash_on_s is None else f", flash on {self.flash_on_s:.3f} s"

    def _record(
        self,
        outcome: str,
        started: dt.datetime,
        manual: bool,
        image: Image | None = None,
        error: str | None = None,
    ) -> CaptureResult:
        try:
            self.queue.record_attempt(
                started_at=started,
                outcome=outcome,
                manual=manual,
                image_id=image.id if image else None,
                error=error,
            )
        except StickyAgentError as e:
            log.error("could not record the capture outcome in the queue: %s", e)
        return CaptureResult(outcome, started, image, error, self.flash_on_s)

    def _capture_time(self) -> dt.datetime:
        """Return a capture second no image of this device has yet (waits for the next second
        if needed). Raise ClockError if the clock is not plausible."""
        for _ in range(5):
            when = check_capture_time(self.now())
            taken = self.queue.image_at(self.device, when) is not None
            if not taken and not image_path(self.data_dir, self.device, when).exists():
                return when
            # Same second as the previous capture: the name is the identity, so wait.
            self.sleep(max(0.0, 1.0 - self.now().microsecond / 1e6) + 0.01)
        raise ClockError(
            f"no free capture second after 5 tries (last {when:%Y-%m-%d %H:%M:%S}): is the clock stuck?"
        )

    def _frame(self) -> Frame:
        """Open the camera if needed and take a frame; the camera lights the flash only
        around the exposure (not while it opens, starts, focuses or encodes)."""
        if not self._camera_open:
            self.camera.open()
            self._camera_open = True
        exposure = Exposure(self.flash)
        try:
            return self.camera.capture(self.config.capture.jpeg_quality, exposure.lit)
        except CameraError:
            # Next capture reopens the camera: a wedged camera must not need a restart.
            self.close()
            raise
        finally:
            try:
                exposure.end()
            finally:
                lights = getattr(self.flash, "lights", True) and exposure.times_lit > 0
                self.flash_on_s = exposure.on_s if lights else None

    def _check_disk(self) -> None:
        """Make room by retention if the disk is low; raise DiskFullError if it stays low."""
        retention = self.config.retention
        if free_mb(self.data_dir) >= retention.min_free_disk_mb:
            return
        enforce(retention, self.queue, self.data_dir, self.config.sinks)
        free = free_mb(self.data_dir)
        if free < retention.min_free_disk_mb:
            raise DiskFullError(
                f"disk full: {free:.0f} MB free, below retention.min_free_disk_mb "
                f"({retention.min_free_disk_mb:g} MB), and nothing every required sink holds is "
                "left to delete. No image was written; captures resume by themselves when space returns "
                "(get the trap online so its backlog can sync, or free space)"
            )

    def _capture_locked(self, manual: bool) -> Image:
        self._check_disk()
        when = self._capture_time()
        readings, sensor_error = read_safely(self.sensors)
        frame = self._frame()
        checkpoint("frame")
        loc = self.config.location
        record = Record.from_readings(
            __version__,
            temperature=readings.temperature,
            humidity=readings.humidity,
            battery=readings.battery,
            exposure_us=frame.exposure_us,
            lat=loc.lat if loc else None,
            lng=loc.lng if loc else None,
            alt=loc.alt if loc else None,
            last_sync=last_sync_time(),
            manual=manual,
        )
        exif = build_exif(
            when=when,
            model=f"RP_{frame.sensor}",
            record=record,
            exposure=ExposureInfo(frame.exposure_us, frame.analogue_gain),
            location=(loc.lat, loc.lng, loc.alt) if loc else None,
            software=f"sticky-agent {__version__}",
        )
        path = image_path(self.data_dir, self.device, when)
        written = write_image_bytes(path, insert_exif(frame.jpeg, exif))
        checkpoint("files-written")
        metadata: dict[str, object] = {
            "record": record.as_dict(),
            "model": f"RP_{frame.sensor}",
            "exposure_us": frame.exposure_us,
            "analogue_gain": frame.analogue_gain,
        }
        if self.flash_on_s is not None:
            metadata["flash_on_s"] = round(self.flash_on_s, 4)
        if sensor_error:
            metadata["sensor_error"] = sensor_error
        return self.queue.add_image(
            device=self.device,
            when=when,
            path=str(path.relative_to(self.data_dir)),
            md5=written.md5,
            size=written.size,
            width=written.width,
            height=written.height,
            metadata=metadata,
            manual=manual,
        )
