"""Start-up reconciliation of the data folder and the queue.

After a crash or a power cut, disk and database can disagree in exactly these
ways, and each has one answer:

- one of the agent's own temporary files (``<image name>~`` in a day folder or its
  thumbnail folders: a write that never finished): removed; no other file is touched;
- a complete original with no row (the crash came between rename and commit):
  adopted: its name, place and EXIF are checked by capture's rules, it is hashed,
  its thumbnails are (re)made and a row is inserted;
- a row whose original has thumbnails missing: thumbnails rebuilt;
- a row whose file is gone (and should be there): flagged ``missing``;
- a file whose row says it was deleted (``evicted``/``discarded``: a power cut came between the
  row and the deletion): deleted;
- a file that is not a valid Sticky Pi image: moved to ``<data_dir>/quarantine/``,
  never deleted;
- a thumbnail whose original has no row and no file: removed (derived data).

A hostile folder costs only what is bad in it: a file or folder that cannot be read
or written is logged (``errors``) and skipped, a full disk or database leaves the file
where it is for a later pass (``deferred``), never in quarantine. Symbolic links are
never followed, file content is read only from regular files (never a FIFO), checked
to be a JPEG before anything parses it, and never put in a message.

It must run under the capture lock so it never sees a capture half-way.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import io
import logging
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image as PILImage

from agent.capture.exif import ExifSummary, read_exif
from agent.capture.imagewriter import atomic_write, ensure_dir, fsync_dir, make_thumbnails
from agent.capture.naming import (
    DEVICE_ID_RE,
    EARLIEST_VALID_TIME,
    FILE_NAME_RE,
    PARTIAL_SUFFIX,
    THUMBNAIL_DIRS,
    parse_image_name,
    thumbnail_path,
)
from agent.errors import DiskFullError, DuplicateImageError, ImageFormatError, QueueError, StickyAgentError
from agent.queue import ImageState, Queue
from agent.queue.states import STATES_WITH_FILE

log = logging.getLogger(__name__)

QUARANTINE_DIR = "quarantine"
#: An image named further ahead of the clock than this was not taken by this trap.
MAX_AHEAD = dt.timedelta(days=1)
#: No trap image is anywhere near this big (a 12 MP JPEG is ~5 MB): refuse to read more.
MAX_IMAGE_BYTES = 64 * 1024 * 1024
JPEG_MAGIC = b"\xff\xd8\xff"


@dataclass
class ReconcileReport:
    removed_partials: list[str] = field(default_factory=list)
    adopted: list[str] = field(default_factory=list)
    thumbnails_rebuilt: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    quarantined: list[str] = field(default_factory=list)
    removed_thumbnails: list[str] = field(default_factory=list)
    #: Left in place for a later pass: the disk or the queue was full (or busy).
    deferred: list[str] = field(default_factory=list)
    #: Originals deleted because their row says so (an eviction cut short).
    evictions_finished: list[str] = field(default_factory=list)
    #: Files or folders that could not be read or written (each skipped, logged).
    errors: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return any(vars(self).values())


class _NotYet(Exception):
    """This file may be valid but cannot be judged now (e.g. the clock is not set)."""


def _entries(folder: Path) -> list[os.DirEntry[str]]:
    """Return the entries of ``folder`` sorted by name; [] if it cannot be listed (logged)."""
    try:
        with os.scandir(folder) as it:
            return sorted(it, key=lambda e: e.name)
    except FileNotFoundError:
        return []
    except OSError as e:
        log.error("reconcile: cannot list %s: %s", folder, e.strerror or e)
        return []


def _subdirs(folder: Path) -> Iterator[Path]:
    """Yield the real sub-folders of ``folder`` (symbolic links are not followed)."""
    for entry in _entries(folder):
        with contextlib.suppress(OSError):
            if entry.is_dir(follow_symlinks=False):
                yield Path(entry.path)


def _day_dirs(data_dir: Path) -> Iterator[Path]:
    """Yield ``<data_dir>/<folder>/<folder>`` (where originals live), quarantine excluded."""
    for top in _subdirs(data_dir):
        if top.name != QUARANTINE_DIR:
            yield from _subdirs(top)


def _originals(data_dir: Path) -> list[Path]:
    """Return every ``<data_dir>/<device>/<day>/*.jpg`` entry that is not a folder (regular
    files, but also links and FIFOs, which adoption refuses), thumbnails and quarantine excluded."""
    out = []
    for day in _day_dirs(data_dir):
        for entry in _entries(day):
            with contextlib.suppress(OSError):
                if entry.name.endswith(".jpg") and not entry.is_dir(follow_symlinks=False):
                    out.append(Path(entry.path))
    return out


def _own_partials(data_dir: Path) -> Iterator[Path]:
    """Yield the agent's own temporary files: ``<image name>~`` in a device's day folder or its
    thumbnail folders, and nothing else (someone's ``notes.txt~`` is not ours)."""
    for top in _subdirs(data_dir):
        if not DEVICE_ID_RE.match(top.name):
            continue
        for day in _subdirs(top):
            for folder in (day, *(day / kind for kind in THUMBNAIL_DIRS.values())):
                for entry in _entries(folder):
                    name = entry.name
                    if name.endswith(PARTIAL_SUFFIX) and FILE_NAME_RE.match(name[: -len(PARTIAL_SUFFIX)]):
                        with contextlib.suppress(OSError):
                            if entry.is_file(follow_symlinks=False):
                                yield Path(entry.path)


def read_image_file(path: Path) -> bytes:
    """Given a path, return the bytes of the JPEG there.

    Raise ImageFormatError if it is not a regular file (a link, a FIFO: never followed nor
    opened for long), is implausibly large, or does not start like a JPEG; OSError if it
    cannot be read. Messages never contain the file's content.
    """
    if stat.S_ISLNK(os.lstat(path).st_mode):
        raise ImageFormatError("a symbolic link, not an image file (links are never followed)")
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise ImageFormatError("not a regular file")
        if st.st_size > MAX_IMAGE_BYTES:
            raise ImageFormatError(f"{st.st_size} bytes: far too large for a trap image")
        chunks = []
        remaining = MAX_IMAGE_BYTES + 1
        while remaining > 0:
            chunk = os.read(fd, min(remaining, 1 << 20))
            if not chunk:
                break
            chunks.append(chunk)
            remaining -= len(chunk)
    finally:
        os.close(fd)
    data = b"".join(chunks)
    if len(data) > MAX_IMAGE_BYTES:
        raise ImageFormatError("far too large for a trap image")
    if not data.startswith(JPEG_MAGIC):
        raise ImageFormatError("not a JPEG (its content does not start with a JPEG marker)")
    return data


def _open_target(data_dir: Path, path: Path) -> Path:
    target_dir = data_dir / QUARANTINE_DIR
    ensure_dir(target_dir)
    target = target_dir / path.name
    n = 1
    while os.path.lexists(target):
        target = target_dir / f"{path.name}.{n}"
        n += 1
    return target


def _quarantine(data_dir: Path, path: Path, reason: str, report: ReconcileReport) -> None:
    """Move ``path`` (the entry itself: a link is moved, not its target) to quarantine."""
    rel = str(path.relative_to(data_dir))
    try:
        target = _open_target(data_dir, path)
        os.replace(path, target)
        fsync_dir(target.parent)
        fsync_dir(path.parent)
    except (StickyAgentError, OSError) as e:
        log.error("cannot quarantine %s (%s): %s; left in place", rel, reason, e)
        report.errors.append(f"{rel}: cannot quarantine: {e}")
        return
    log.error("quarantined %s: %s (moved to %s)", rel, reason, target)
    report.quarantined.append(f"{rel}: {reason}")


def _write_thumbnails(path: Path, data: bytes) -> None:
    for kind, payload in make_thumbnails(data).items():
        atomic_write(thumbnail_path(path, kind), payload)


def _check_place(path: Path, device: str, when: dt.datetime, now: dt.datetime) -> None:
    """Apply capture's rules to a name found on disk. Raise ImageFormatError if capture could
    never have written it there, _NotYet if the clock cannot tell yet."""
    if when < EARLIEST_VALID_TIME:
        raise ImageFormatError(f"named {when:%Y-%m-%d}, before 2019-11-01 (the server refuses it)")
    if when > now + MAX_AHEAD:
        if now < EARLIEST_VALID_TIME:
            raise _NotYet(f"named {when:%Y-%m-%d %H:%M:%S} but the clock is not set")
        raise ImageFormatError(
            f"named {when:%Y-%m-%d %H:%M:%S}, in the future (more than a day ahead of the clock)"
        )
    if path.parent.parent.name != device:
        raise ImageFormatError(f"in the device folder {path.parent.parent.name!r}, not its device's {device}")
    if path.parent.name != f"{when:%Y-%m-%d}":
        raise ImageFormatError(f"in the day folder {path.parent.name!r}, not its day {when:%Y-%m-%d}")


def _adopt(queue: Queue, data_dir: Path, path: Path, report: ReconcileReport, now: dt.datetime) -> None:
    rel = str(path.relative_to(data_dir))
    try:
        name = parse_image_name(path.name)
        _check_place(path, name.device, name.datetime, now)
        data = read_image_file(path)
        summary = read_exif(data)
        if summary.datetime != name.datetime:
            raise ImageFormatError(f"EXIF time {summary.datetime:%Y-%m-%d %H:%M:%S} differs from its name")
        try:
            with PILImage.open(io.BytesIO(data)) as im:
                width, height = im.size
        except (OSError, ValueError, PILImage.DecompressionBombError) as e:
            raise ImageFormatError(f"does not decode as an image ({type(e).__name__})") from e
    except _NotYet as e:
        log.warning("not adopting %s yet: %s", rel, e)
        report.deferred.append(f"{rel}: {e}")
        return
    except ImageFormatError as e:
        _quarantine(data_dir, path, str(e), report)
        return
    except OSError as e:
        log.error("cannot read %s: %s; left in place", rel, e.strerror or e)
        report.errors.append(f"{rel}: cannot read: {e.strerror or e}")
        return
    try:
        _write_thumbnails(path, data)
    except DiskFullError as e:
        log.error("not adopting %s yet: %s; left in place until space returns", rel, e)
        report.deferred.append(f"{rel}: {e}")
        return
    except (StickyAgentError, OSError) as e:  # e.g. its thumbnail folder is a file: adopt it anyway
        log.error("adopting %s without its thumbnails: %s", rel, e)
        report.errors.append(f"{rel}: thumbnails: {e}")
    try:
        _insert_adopted(queue, rel, name.device, name.datetime, data, summary, width, height)
    except DuplicateImageError as e:
        _quarantine(data_dir, path, f"not adopted: {e}", report)
        return
    except QueueError as e:  # full or busy: the file is valid, try again later
        log.error("not adopting %s yet: %s; left in place", rel, e)
        report.deferred.append(f"{rel}: {e}")
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


@contextlib.contextmanager
def _costs_one(report: ReconcileReport, what: str) -> Iterator[None]:
    """Log and record a failure of one step on one file, and go on with the others."""
    try:
        yield
    except DiskFullError as e:
        log.error("reconcile: %s later: %s", what, e)
        report.deferred.append(f"{what}: {e}")
    except (StickyAgentError, OSError) as e:
        log.error("reconcile: cannot %s: %s", what, e)
        report.errors.append(f"{what}: {e}")


def _known_row(
    queue: Queue, data_dir: Path, path: Path, row: tuple[int, str], report: ReconcileReport
) -> None:
    rel = str(path.relative_to(data_dir))
    image_id, state = row
    if state in (ImageState.EVICTED.value, ImageState.DISCARDED.value):
        with _costs_one(report, f"finish deleting {rel}"):
            path.unlink()
            fsync_dir(path.parent)
            report.evictions_finished.append(rel)
            log.warning("deleted %s: its row says %s (a deletion cut short)", rel, state)
        return
    if state == ImageState.MISSING.value:
        with _costs_one(report, f"flag {rel} as found again"):
            queue.set_state(image_id, ImageState.CAPTURED, error="file found again")
            log.warning("image %s, flagged missing, is back on disk", rel)
    if all(os.path.lexists(thumbnail_path(path, k)) for k in THUMBNAIL_DIRS):
        return
    with _costs_one(report, f"rebuild the thumbnails of {rel}"):
        try:
            _write_thumbnails(path, read_image_file(path))
        except ImageFormatError as e:
            log.error("cannot rebuild thumbnails of %s: %s", rel, e)
            return
        report.thumbnails_rebuilt.append(rel)


def reconcile(queue: Queue, data_dir: Path, now: dt.datetime | None = None) -> ReconcileReport:
    """Given the queue and the data folder, make them agree and return what was done.

    A bad file or folder is quarantined or skipped (``errors``), a full disk or database
    defers a valid file (``deferred``). Raise QueueError only if the queue cannot be read.
    """
    now = now or dt.datetime.now(dt.UTC)
    report = ReconcileReport()
    if not data_dir.is_dir():
        return report
    for partial in _own_partials(data_dir):
        with _costs_one(report, f"remove {partial}"), contextlib.suppress(FileNotFoundError):
            partial.unlink()
            report.removed_partials.append(str(partial.relative_to(data_dir)))
            log.warning("removed half-written file %s", partial)
    rows = queue.image_paths()
    on_disk = set()
    for path in _originals(data_dir):
        rel = str(path.relative_to(data_dir))
        on_disk.add(rel)
        if rel in rows:
            _known_row(queue, data_dir, path, rows[rel], report)
        else:
            _adopt(queue, data_dir, path, report, now)
    for rel, (image_id, state) in rows.items():
        if state in STATES_WITH_FILE and rel not in on_disk:  # StrEnum: compares with the text
            with _costs_one(report, f"flag {rel} as missing"):
                queue.set_state(image_id, ImageState.MISSING, error="file gone from the data folder")
                report.missing.append(rel)
                log.error("image %s is in the queue but its file is gone", rel)
    rows = queue.image_paths()
    for day in _day_dirs(data_dir):
        for kind in THUMBNAIL_DIRS.values():
            for entry in _entries(day / kind):
                thumb = Path(entry.path)
                original = day / thumb.name
                rel = str(original.relative_to(data_dir))
                if thumb.suffix != ".jpg" or rel in rows or os.path.lexists(original):
                    continue
                with _costs_one(report, f"remove the orphan thumbnail {thumb}"):
                    if entry.is_file(follow_symlinks=False) or entry.is_symlink():
                        thumb.unlink()
                        report.removed_thumbnails.append(str(thumb.relative_to(data_dir)))
    if report.changed:
        log.info(
            "reconciled: %d partial removed, %d adopted, %d thumbnails rebuilt, %d missing, "
            "%d quarantined, %d deferred, %d errors",
            len(report.removed_partials),
            len(report.adopted),
            len(report.thumbnails_rebuilt),
            len(report.missing),
            len(report.quarantined),
            len(report.deferred),
            len(report.errors),
        )
    return report
