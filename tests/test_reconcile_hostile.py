"""Start-up reconciliation on a hostile data folder (issue 9, defects 2, 6, 10, 11): one bad
file or folder costs that file, never the trap; file content is never taken for a path nor
echoed; only the agent's own temporary files are deleted; adoption follows capture's rules."""

from __future__ import annotations

import datetime as dt
import os
import shutil
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from helpers.adoption import capture_without_row

from agent.capture.naming import thumbnail_path
from agent.capture.reconcile import reconcile
from agent.config import load_config
from agent.service import Pipeline


@pytest.fixture
def pipeline(write_config: Callable[..., Path]) -> Iterator[Pipeline]:
    p = Pipeline.build(load_config(write_config(), environ={}))
    yield p
    p.close()


def run_reconcile_bounded(pipeline: Pipeline, seconds: float = 20.0) -> object:
    """Reconcile in a thread; fail the test (instead of hanging it) if it does not return."""
    out: dict[str, object] = {}

    def target() -> None:
        try:
            out["report"] = reconcile(pipeline.queue, pipeline.config.storage.data_dir)
        except BaseException as e:
            out["error"] = e

    t = threading.Thread(target=target, daemon=True)
    t.start()
    t.join(seconds)
    assert not t.is_alive(), "reconciliation hangs"
    if "error" in out:
        raise out["error"]  # type: ignore[misc]
    return out["report"]


# -- defect 2: one storage error costs one image ---------------------------------------------


def test_a_thumbnail_folder_that_is_a_file_costs_nothing_but_that_folder(
    pipeline: Pipeline, caplog: pytest.LogCaptureFixture
) -> None:
    path = capture_without_row(pipeline)
    mini = path.parent / "thumbnail-mini"
    shutil.rmtree(mini)
    mini.write_bytes(b"not a folder")
    report = reconcile(pipeline.queue, pipeline.config.storage.data_dir)  # must not raise
    # the valid image is adopted even though its mini thumbnail cannot be made
    assert report.adopted == [str(path.relative_to(pipeline.config.storage.data_dir))]
    assert report.quarantined == []
    assert any("thumbnail" in e for e in report.errors)
    assert pipeline.queue.images()[0].path == report.adopted[0]


# -- defect 6: file content is never a path, never echoed --------------------------------------


def test_a_jpg_whose_content_is_a_fifo_path_does_not_hang(pipeline: Pipeline, tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    data_dir = pipeline.config.storage.data_dir
    day = data_dir / "0a1b2c3d" / "2026-06-01"
    day.mkdir(parents=True)
    trap = day / "0a1b2c3d.2026-06-01_12-00-00.jpg"
    trap.write_bytes(str(fifo).encode())
    report = run_reconcile_bounded(pipeline)
    assert len(report.quarantined) == 1 and "not a JPEG" in report.quarantined[0]  # type: ignore[attr-defined]


def test_a_symlink_out_of_the_data_folder_is_not_followed_nor_echoed(
    pipeline: Pipeline, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("root:x:0:0:TOPSECRET:/root:/bin/bash\n")
    data_dir = pipeline.config.storage.data_dir
    day = data_dir / "0a1b2c3d" / "2026-06-01"
    day.mkdir(parents=True)
    link = day / "0a1b2c3d.2026-06-01_12-00-00.jpg"
    link.symlink_to(secret)
    # a .jpg whose content is text: its content must not reach the log either
    text = day / "0a1b2c3d.2026-06-01_12-20-00.jpg"
    text.write_text("TOPSECRET-TOO\n")
    caplog.set_level("DEBUG")
    report = run_reconcile_bounded(pipeline)
    assert "TOPSECRET" not in caplog.text and "TOPSECRET" not in repr(report)
    assert secret.read_text().startswith("root:x")  # the target is untouched
    quarantine = data_dir / "quarantine"
    assert (quarantine / link.name).is_symlink() and not os.path.lexists(link)  # the link moved
    assert any("symbolic link" in q for q in report.quarantined)  # type: ignore[attr-defined]
    assert (quarantine / text.name).read_text() == "TOPSECRET-TOO\n"
    assert pipeline.queue.images() == []


def test_read_exif_never_opens_a_file(tmp_path: Path) -> None:
    from agent.capture.exif import read_exif
    from agent.errors import ImageFormatError

    target = tmp_path / "content.txt"
    target.write_text("TOPSECRET")
    with pytest.raises(ImageFormatError) as e:
        read_exif(str(target).encode())
    assert "TOPSECRET" not in str(e.value) and "not a JPEG" in str(e.value)


# -- defect 10: only the agent's own temporary files go --------------------------------------


def test_only_the_agents_own_temporary_files_are_deleted(pipeline: Pipeline) -> None:
    path = capture_without_row(pipeline)
    data_dir = pipeline.config.storage.data_dir
    ours = [
        path.with_name(path.name + "~"),
        thumbnail_path(path, "thumbnail").with_name(path.name + "~"),
    ]
    theirs = [
        data_dir / "notes.txt~",
        path.parent / "notes.txt~",
        data_dir / "0a1b2c3d" / "README~",
        data_dir / "elsewhere" / "a" / "0a1b2c3d.2026-06-01_12-00-00.jpg~",
    ]
    for f in ours + theirs:
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_bytes(b"half")
    report = reconcile(pipeline.queue, data_dir)
    assert all(not f.exists() for f in ours)
    assert all(f.exists() for f in theirs), [str(f) for f in theirs if not f.exists()]
    assert len(report.removed_partials) == 2


# -- defect 11: adoption follows capture's rules ---------------------------------------------


@pytest.mark.parametrize(
    ("device_dir", "day_dir", "stamp", "why"),
    [
        ("0a1b2c3d", "2018-06-01", "2018-06-01_12-00-00", "before 2019-11-01"),
        ("0a1b2c3d", "2099-06-01", "2099-06-01_12-00-00", "in the future"),
        ("0a1b2c3e", "2026-06-01", "2026-06-01_12-00-00", "device folder"),
        ("0a1b2c3d", "2026-06-02", "2026-06-01_12-00-00", "day folder"),
    ],
)
def test_adoption_refuses_what_capture_would_never_write(
    pipeline: Pipeline, device_dir: str, day_dir: str, stamp: str, why: str
) -> None:
    from agent.capture.exif import read_exif

    path = capture_without_row(pipeline)
    data = path.read_bytes()
    path.unlink()
    for kind in ("thumbnail", "thumbnail-mini"):
        thumbnail_path(path, kind).unlink()
    when = dt.datetime.strptime(stamp, "%Y-%m-%d_%H-%M-%S").replace(tzinfo=dt.UTC)
    fake = _retimed(data, when)
    assert read_exif(fake).datetime == when
    data_dir = pipeline.config.storage.data_dir
    target = data_dir / device_dir / day_dir / f"0a1b2c3d.{stamp}.jpg"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(fake)
    report = reconcile(pipeline.queue, data_dir)
    assert report.adopted == []
    assert len(report.quarantined) == 1 and why in report.quarantined[0], report.quarantined
    assert (data_dir / "quarantine" / target.name).read_bytes() == fake


def _retimed(jpeg: bytes, when: dt.datetime) -> bytes:
    """Return the JPEG with its EXIF date/times set to ``when`` (as a forger would)."""
    import io

    import piexif

    exif = piexif.load(jpeg)
    stamp = when.strftime("%Y:%m:%d %H:%M:%S").encode()
    exif["0th"][piexif.ImageIFD.DateTime] = stamp
    exif["Exif"][piexif.ExifIFD.DateTimeOriginal] = stamp
    exif["Exif"][piexif.ExifIFD.DateTimeDigitized] = stamp
    out = io.BytesIO()
    piexif.insert(piexif.dump(exif), jpeg, out)
    return out.getvalue()
