"""Retention: delete originals the sinks verifiably hold, by policy, to keep the SD card usable.

Only images that every ``required`` sink verified (it holds the same md5, confirmed by a
lookup), and at least one sink, are candidates, oldest first; their thumbnails and rows stay
and the row becomes ``evicted``. With no sink configured nothing is evicted. An original not
everywhere it must be is deleted only when the operator set ``retention.delete_unsynced`` and
the disk is below ``min_free_disk_mb`` (it becomes ``discarded``, and that is logged as an
error).

Policy (``[retention]``): ``keep_days`` (older verified originals go), ``max_data_gb``
(originals on disk above that go), ``min_free_disk_mb`` (verified originals go while the
disk is fuller than that; below it captures stop rather than write broken files).
"""

from __future__ import annotations

import datetime as dt
import logging
import shutil
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from agent.capture.imagewriter import fsync_dir
from agent.config import RetentionConfig
from agent.queue import Image, ImageState, Queue
from agent.queue.deliveries import evictable
from agent.queue.syncrows import bytes_on_disk, discardable
from agent.sinks.base import SinkSettings

log = logging.getLogger(__name__)
#: Every sink's worker runs retention after its pass: one at a time.
_lock = threading.Lock()


def free_mb(path: Path) -> float:
    """Return the free space, in MB, of the file system holding ``path``."""
    while not path.exists():
        path = path.parent
    return shutil.disk_usage(path).free / 1e6


@dataclass
class RetentionReport:
    evicted: list[str] = field(default_factory=list)
    discarded: list[str] = field(default_factory=list)
    freed_bytes: int = 0


def _delete(queue: Queue, data_dir: Path, image: Image, state: ImageState, report: RetentionReport) -> None:
    """Mark the row first, then delete the file: a power cut in between leaves a file whose row
    says it is gone, which start-up reconciliation finishes deleting (the other order would leave
    a row whose file is gone, flagged ``missing``)."""
    path = data_dir / image.path
    queue.set_state(image.id, state)
    try:
        path.unlink()
        fsync_dir(path.parent)
    except FileNotFoundError:
        pass
    report.freed_bytes += image.size
    (report.evicted if state == ImageState.EVICTED else report.discarded).append(image.path)


def enforce(
    config: RetentionConfig,
    queue: Queue,
    data_dir: Path,
    sinks: Sequence[SinkSettings] = (),
    now: dt.datetime | None = None,
) -> RetentionReport:
    """Given the policy and the sinks, delete what the policy allows (only originals every
    required sink verified) and return what went."""
    required = [s.name for s in sinks if s.required]
    with _lock:
        return _enforce(config, queue, data_dir, required, [s.name for s in sinks], now)


def _enforce(
    config: RetentionConfig,
    queue: Queue,
    data_dir: Path,
    required: Sequence[str],
    names: Sequence[str],
    now: dt.datetime | None,
) -> RetentionReport:
    now = now or dt.datetime.now(dt.UTC)
    report = RetentionReport()
    if (
        config.keep_days is None
        and config.max_data_gb is None
        and free_mb(data_dir) >= config.min_free_disk_mb
    ):
        return report  # nothing could be due: no query (this runs after every sync pass)
    data_bytes = bytes_on_disk(queue)
    for image in evictable(queue, required, names, limit=500):
        too_old = config.keep_days is not None and now - image.datetime > dt.timedelta(days=config.keep_days)
        too_much = config.max_data_gb is not None and data_bytes > config.max_data_gb * 1e9
        too_full = free_mb(data_dir) < config.min_free_disk_mb
        if not (too_old or too_much or too_full):
            break  # oldest first: once one may stay, the newer ones may too
        _delete(queue, data_dir, image, ImageState.EVICTED, report)
        data_bytes -= image.size
    if config.delete_unsynced and free_mb(data_dir) < config.min_free_disk_mb:
        for image in discardable(queue, limit=1000):
            if free_mb(data_dir) >= config.min_free_disk_mb:
                break
            log.error("disk full: deleting %s, not verified by every sink (delete_unsynced)", image.path)
            _delete(queue, data_dir, image, ImageState.DISCARDED, report)
    if report.evicted:
        log.info(
            "retention: deleted %d verified originals (%.1f MB), thumbnails kept",
            len(report.evicted),
            report.freed_bytes / 1e6,
        )
    return report
