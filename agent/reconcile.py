"""Start-up reconciliation of the data folder and the queue.

After a crash or a power cut, disk and database can disagree in exactly these
ways, and each has one answer:

- a ``<name>~`` file (a write that never finished): removed;
- a complete original with no row (the crash came between rename and commit):
  adopted: its name and EXIF are checked, it is hashed, its thumbnails are
  (re)made and a row is inserted;
- a row whose original has thumbnails missing: thumbnails rebuilt;
- a row whose file is gone (and should be there): flagged ``missing``;
- a file that is not a valid Sticky Pi image: moved to ``<data_dir>/quarantine/``,
  never deleted;
- a thumbnail whose original has no row and no file: removed (derived data).

It must run under the capture lock so it never sees a capture half-way.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import io
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image as PILImage

from agent.errors import ImageFormatError, QueueError, StickyAgentError
from agent.exif import ExifSummary, read_exif
from agent.imagewriter import atomic_write, ensure_dir, fsync_dir, make_thumbnails
from agent.naming import PARTIAL_SUFFIX, THUMBNAIL_DIRS, parse_image_name, thumbnail_path
from agent.queue import ImageState, Queue
from agent.queue.states import STATES_WITH_FILE

log = logging.getLogger(__name__)

QUARANTINE_DIR = "quarantine"


@dataclass
class ReconcileReport:
    removed_partials: list[str] = field(default_factory=list)
    adopted: list[str] = field(default_factory=list)
    thumbnails_rebuilt: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    quarantined: list[str] = field(default_factory=list)
    removed_thumbnails: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return any(vars(self).values())


def _originals(data_dir: Path) -> list[Path]:
    """Return ``<data_dir>/<device>/<day>/*.jpg`` files (not thumbnails, not quarantine)."""
    return sorted(p for p in data_dir.glob("*/*/*.jpg") if p.is_file() and p.parts[-3] != QUARANTINE_DIR)


def _quarantine(data_dir: Path, path: Path, reason: str, report: ReconcileReport) -> None:
    target_dir = data_dir / QUARANTINE_DIR
    ensure_dir(target_dir)
    target = target_dir / path.name
    n = 1
    while target.exists():
        target = target_dir / f"{path.name}.{n}"
        n += 1
    os.replace(path, target)
    fsync_dir(target_dir)
    fsync_dir(path.parent)
    log.error("quarantined %s: %s (moved to %s)", path, reason, target)
    report.quarantined.append(f"{path.relative_to(data_dir)}: {reason}")


def _write_thumbnails(path: Path, data: bytes) -> None:
    for kind, payload in make_thumbnails(data).items():
        atomic_write(thumbnail_path(path, kind), payload)


def _adopt(queue: Queue, data_dir: Path, path: Path, report: ReconcileReport) -> None:
    rel = str(path.relative_to(data_dir))
    try:
        name = parse_image_name(path.name)
        data = path.read_bytes()
        summary = read_exif(data)
        if summary.datetime != name.datetime:
            raise ImageFormatError(f"EXIF time {summary.datetime:%Y-%m-%d %H:%M:%S} differs from its name")
        with PILImage.open(io.BytesIO(data)) as im:
            width, height = im.size
        _write_thumbnails(path, data)
    except (ImageFormatError, OSError) as e:
        _quarantine(data_dir, path, str(e), report)
        return
    try:
        _insert_adopted(queue, rel, name.device, name.datetime, data, summary, width, height)
    except QueueError as e:
        _quarantine(data_dir, path, f"not adopted: {e}", report)
        return
    log.warning("adopted %s (complete file without a queue row, e.g. after a crash)", rel)
    report.adopted.append(rel)


def _insert_adopted(
    queue: Queue,
    rel: str,
    device: str,
    when: dt.datetime,
    data: bytes,
    summary: ExifSummary,
    width: int,
    height: int,
) -> None:
    queue.add_image(
        device=device,
        when=when,
        path=rel,
        md5=hashlib.md5(data).hexdigest(),
        size=len(data),
        width=width,
        height=height,
        metadata={
            "record": summary.record,
            "model": summary.model,
            "exposure_us": summary.exposure_us,
            "adopted": True,
        },
        manual=bool(summary.record.get("b")),
    )


def reconcile(queue: Queue, data_dir: Path) -> ReconcileReport:
    """Given the queue and the data folder, make them agree and return what was done.

    Raise StickyAgentError (StorageError/QueueError) only if the disk or database
    cannot be written; a bad image file is quarantined, not an error.
    """
    report = ReconcileReport()
    if not data_dir.is_dir():
        return report
    for partial in sorted(data_dir.rglob("*" + PARTIAL_SUFFIX)):
        with contextlib.suppress(FileNotFoundError):
            partial.unlink()
            report.removed_partials.append(str(partial.relative_to(data_dir)))
            log.warning("removed half-written file %s", partial)
    rows = queue.image_paths()
    on_disk = set()
    for path in _originals(data_dir):
        rel = str(path.relative_to(data_dir))
        on_disk.add(rel)
        if rel not in rows:
            _adopt(queue, data_dir, path, report)
            continue
        image_id, state = rows[rel]
        if state == ImageState.MISSING.value:
            queue.set_state(image_id, ImageState.CAPTURED, error="file found again")
            log.warning("image %s, flagged missing, is back on disk", rel)
        if any(not thumbnail_path(path, k).exists() for k in THUMBNAIL_DIRS):
            try:
                _write_thumbnails(path, path.read_bytes())
                report.thumbnails_rebuilt.append(rel)
            except ImageFormatError as e:
                log.error("cannot rebuild thumbnails of %s: %s", rel, e)
    for rel, (image_id, state) in rows.items():
        if state in STATES_WITH_FILE and rel not in on_disk:  # StrEnum: compares with the text
            try:
                queue.set_state(image_id, ImageState.MISSING, error="file gone from the data folder")
                report.missing.append(rel)
                log.error("image %s is in the queue but its file is gone", rel)
            except StickyAgentError as e:
                log.error("cannot flag %s as missing: %s", rel, e)
    rows = queue.image_paths()
    for kind in THUMBNAIL_DIRS.values():
        for thumb in data_dir.glob(f"*/*/{kind}/*.jpg"):
            rel = str(thumb.parent.parent.joinpath(thumb.name).relative_to(data_dir))
            if rel not in rows and not thumb.parent.parent.joinpath(thumb.name).exists():
                thumb.unlink()
                report.removed_thumbnails.append(str(thumb.relative_to(data_dir)))
    if report.changed:
        log.info(
            "reconciled: %d partial removed, %d adopted, %d thumbnails rebuilt, %d missing, %d quarantined",
            len(report.removed_partials),
            len(report.adopted),
            len(report.thumbnails_rebuilt),
            len(report.missing),
            len(report.quarantined),
        )
    return report
