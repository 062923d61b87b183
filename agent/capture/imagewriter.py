"""The image writer: EXIF into the frame, atomic write, thumbnails, md5.

Given a camera :class:`~agent.hardware.camera.Frame`, :func:`write_image` produces on disk::

    <data_dir>/<device>/<YYYY-MM-DD>/<device>.<YYYY-MM-DD_HH-MM-SS>.jpg
    <data_dir>/<device>/<YYYY-MM-DD>/thumbnail/<same name>        (fits 512 x 384)
    <data_dir>/<device>/<YYYY-MM-DD>/thumbnail-mini/<same name>   (fits 128 x 96)

Every file is written under a temporary name (``<name>~``) in its final folder,
fsynced, renamed, and the folder fsynced: a crash leaves either the complete
file or a ``~`` file that start-up reconciliation removes. The frame's JPEG is
never re-encoded (EXIF is spliced in), the md5 is of exactly the bytes written,
and the thumbnails come from one reduced-scale decode (Pillow's draft mode).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import io
import math
import os
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from agent.capture.naming import partial_path, thumbnail_path
from agent.errors import DiskFullError, ImageFormatError, StorageError
from agent.faults import checkpoint

THUMBNAIL_SIZES = {"thumbnail": (512, 384), "thumbnail-mini": (128, 96)}
THUMBNAIL_QUALITY = 85


def fsync_dir(path: Path) -> None:
    """Flush a folder's entries (a rename or a new file in it) to the disk."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def ensure_dir(path: Path) -> None:
    """Create ``path`` and missing parents, fsyncing each parent that gained an entry."""
    if path.is_dir():
        return
    ensure_dir(path.parent)
    with contextlib.suppress(FileExistsError):
        path.mkdir()
        fsync_dir(path.parent)


def atomic_write(path: Path, data: bytes) -> None:
    """Given a final path and bytes, make the file appear complete or not at all.

    Raise DiskFullError if the disk is full, StorageError (naming the file) if the
    write fails otherwise; the temporary file is removed then.
    """
    tmp = partial_path(path)
    try:
        ensure_dir(path.parent)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            view = memoryview(data)
            while view:
                n = os.write(fd, view)
                view = view[n:]
            os.fsync(fd)
        finally:
            os.close(fd)
        checkpoint("partial-written")
        os.replace(tmp, path)
        fsync_dir(path.parent)
        checkpoint("renamed")
    except OSError as e:
        with contextlib.suppress(OSError):
            tmp.unlink()
        if e.errno in (errno.ENOSPC, errno.EDQUOT):
            raise DiskFullError(f"cannot write {path}: the disk is full") from e
        raise StorageError(f"cannot write {path}: {e.strerror or e}") from e


def thumbnail_size(width: int, height: int, box: tuple[int, int]) -> tuple[int, int]:
    """Given an image size and a box, return the size Pillow's ``Image.thumbnail`` would give.

    Same arithmetic as Pillow: keep the aspect ratio, round to the integer that
    keeps it best, never enlarge.
    """
    x, y = box
    if x >= width and y >= height:
        return width, height
    aspect = width / height
    if x / y >= aspect:
        x = max(min(math.floor(y * aspect), math.ceil(y * aspect), key=lambda n: abs(aspect - n / y)), 1)
    else:
        x_ = x
        y = max(
            min(
                math.floor(x_ / aspect),
                math.ceil(x_ / aspect),
                key=lambda n: 0 if n == 0 else abs(aspect - x_ / n),
            ),
            1,
        )
    return x, y


def make_thumbnails(jpeg: bytes) -> dict[str, bytes]:
    """Given JPEG bytes, return ``{"thumbnail": ..., "thumbnail-mini": ...}`` as JPEG bytes.

    Decodes once, at the smallest DCT scale that still covers 512 x 384. Raise
    ImageFormatError if the bytes do not decode.
    """
    try:
        opened = Image.open(io.BytesIO(jpeg))
        full_size = opened.size
        opened.draft("RGB", THUMBNAIL_SIZES["thumbnail"])
        im = opened.convert("RGB")
    except (OSError, ValueError, Image.DecompressionBombError) as e:
        raise ImageFormatError(f"frame does not decode as an image: {e}") from e
    out: dict[str, bytes] = {}
    source: Image.Image = im
    for kind, box in THUMBNAIL_SIZES.items():  # large first, then the mini from it
        size = thumbnail_size(*full_size, box)
        thumb = source.resize(size, Image.Resampling.LANCZOS) if source.size != size else source
        buf = io.BytesIO()
        thumb.save(buf, "JPEG", quality=THUMBNAIL_QUALITY)
        out[kind] = buf.getvalue()
        source = thumb
    return out


@dataclass(frozen=True)
class WrittenImage:
    """What :func:`write_image` put on disk."""

    path: Path
    md5: str
    size: int
    width: int
    height: int
    thumbnails: dict[str, Path]


def write_image_bytes(path: Path, data: bytes) -> WrittenImage:
    """Given the final path and the complete JPEG (EXIF included), write it and its thumbnails.

    Return what was written. Raise StorageError if a write fails (files already
    renamed stay: start-up reconciliation adopts or finishes them), or
    ImageFormatError if the bytes do not decode.
    """
    with Image.open(io.BytesIO(data)) as im:
        width, height = im.size
    thumbs = make_thumbnails(data)
    atomic_write(path, data)
    thumb_paths: dict[str, Path] = {}
    for kind, payload in thumbs.items():
        thumb_paths[kind] = thumbnail_path(path, kind)
        atomic_write(thumb_paths[kind], payload)
    return WrittenImage(
        path=path,
        md5=hashlib.md5(data).hexdigest(),
        size=len(data),
        width=width,
        height=height,
        thumbnails=thumb_paths,
    )
