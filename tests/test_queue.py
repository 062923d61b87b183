"""The SQLite queue: pragmas, versioned migrations, the state machine, reconciliation."""

from __future__ import annotations

import datetime as dt
import hashlib
import shutil
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import inspect

from agent.capture.naming import thumbnail_path
from agent.capture.reconcile import reconcile
from agent.config import load_config
from agent.errors import QueueError
from agent.queue import ImageState, Queue
from agent.queue import deliveries as dq
from agent.queue.readonly import QueueReader
from agent.queue.schema import MIGRATIONS, SCHEMA_VERSION, TRANSITIONS, Base
from agent.service import Pipeline

WHEN = dt.datetime(2026, 6, 1, 12, 0, tzinfo=dt.UTC)


def add(queue: Queue, n: int = 0, **kw: object) -> int:
    row = queue.add_image(
        device="0a1b2c3d",
        when=WHEN + dt.timedelta(minutes=20 * n),
        path=f"0a1b2c3d/2026-06-01/img{n}.jpg",
        md5="0" * 32,
        size=1000 + n,
        width=4,
        height=3,
        metadata={"record": {}},
        manual=False,
        **kw,  # type: ignore[arg-type]
    )
    return row.id


def test_pragmas_and_schema(tmp_path: Path) -> None:
    q = Queue(tmp_path / "q.sqlite")
    with q.engine.connect() as c:
        assert c.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert c.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert c.exec_driver_sql("PRAGMA busy_timeout").scalar() == 15000
        assert c.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL
    assert q.schema_version == SCHEMA_VERSION == len(MIGRATIONS)
    # the SQL migrations build exactly the tables and columns the ORM models declare
    insp = inspect(q.engine)
    for table in Base.metadata.sorted_tables:
        assert {c["name"] for c in insp.get_columns(table.name)} == {c.name for c in table.columns}
        assert {i["name"] for i in insp.get_indexes(table.name)} >= {i.name for i in table.indexes}
    q.close()


def test_a_newer_schema_is_refused_not_guessed(tmp_path: Path) -> None:
    Queue(tmp_path / "q.sqlite").close()
    with sqlite3.connect(tmp_path / "q.sqlite") as c:
        c.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(QueueError, match="newer than this agent's"):
        Queue(tmp_path / "q.sqlite")


def test_not_a_database(tmp_path: Path) -> None:
    (tmp_path / "q.sqlite").write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(QueueError, match="unusable"):
        Queue(tmp_path / "q.sqlite")
    with pytest.raises(QueueError, match="no queue database"):
        Queue(tmp_path / "absent.sqlite", create=False)


def test_device_and_second_are_unique(tmp_path: Path) -> None:
    q = Queue(tmp_path / "q.sqlite")
    add(q, 0)
    with pytest.raises(QueueError, match="already has an image 0a1b2c3d at 2026-06-01 12:00:00"):
        q.add_image(
            device="0a1b2c3d",
            when=WHEN,
            path="other.jpg",
            md5="1" * 32,
            size=1,
            width=1,
            height=1,
            metadata={},
            manual=False,
        )


def test_state_machine_allows_only_documented_moves(tmp_path: Path) -> None:
    q = Queue(tmp_path / "q.sqlite")
    image = add(q)
    q.set_state(image, ImageState.EVICTED)
    with pytest.raises(QueueError, match="evicted -> captured is not an allowed transition"):
        q.set_state(image, ImageState.CAPTURED)
    assert TRANSITIONS[ImageState.QUARANTINED] == frozenset()  # quarantine is final
    # where the image stands with a sink is apart, with its own rules
    dq.enqueue(q, "lab")
    (row, _), *_ = dq.batch(q, "lab", 1) or [(None, None)]
    assert row is None  # evicted: never sent anywhere any more
    other = add(q, 1)
    dq.enqueue(q, "lab")
    ((row, img),) = dq.batch(q, "lab", 5)
    assert img.id == other
    dq.set_delivery(q, row.id, dq.DeliveryState.UPLOADED)
    dq.set_delivery(q, row.id, dq.DeliveryState.VERIFIED)
    with pytest.raises(QueueError, match="verified -> waiting is not an allowed transition"):
        dq.set_delivery(q, row.id, dq.DeliveryState.WAITING)


def test_totals_and_oldest_waiting(tmp_path: Path) -> None:
    q = Queue(tmp_path / "q.sqlite")
    ids = [add(q, n) for n in range(4)]
    q.set_state(ids[3], ImageState.QUARANTINED)
    dq.enqueue(q, "lab")
    first = next(d for d, i in dq.batch(q, "lab", 5) if i.id == ids[0])
    dq.set_delivery(q, first.id, dq.DeliveryState.VERIFIED)
    totals = q.totals_by_state()
    assert totals["captured"].count == 3 and totals["captured"].bytes == 1000 + 1001 + 1002
    assert totals["quarantined"].count == 1
    reader = QueueReader(tmp_path / "q.sqlite")  # what stickyctl status reads
    assert reader.totals_by_state() == {"captured": (3, 1000 + 1001 + 1002), "quarantined": (1, 1003)}
    oldest = reader.oldest_waiting("lab")
    assert oldest is not None and oldest["name"] == "img1.jpg"  # ids[1]: ids[0] is verified there
    reader.close()


def test_prune_keeps_the_newest_attempts(tmp_path: Path) -> None:
    q = Queue(tmp_path / "q.sqlite")
    for i in range(150):
        q.record_attempt(started_at=WHEN + dt.timedelta(seconds=i), outcome="ok", manual=False)
    assert q.prune_attempts(100) == 50
    assert len(q.attempts(limit=1000)) == 100
    assert q.attempts(limit=1)[0].started_at == WHEN + dt.timedelta(seconds=149)


# -- reconciliation -------------------------------------------------------------------


@pytest.fixture
def captured(write_config: Callable[..., Path]) -> tuple[Pipeline, Path]:
    pipeline = Pipeline.build(load_config(write_config(), environ={}))
    result = pipeline.capturer.capture()
    assert result.ok and result.image is not None
    return pipeline, pipeline.config.storage.data_dir / result.image.path


def test_reconcile_adopts_a_complete_file_without_a_row(
    captured: tuple[Pipeline, Path], tmp_path: Path
) -> None:
    pipeline, path = captured
    data_dir = pipeline.config.storage.data_dir
    # a second device's image copied in by hand (e.g. an SD card moved between traps)
    other = data_dir / "0a1b2c3e" / "2026-06-01" / "0a1b2c3e.2026-06-01_12-00-00.jpg"
    other.parent.mkdir(parents=True)
    data = path.read_bytes()
    # same bytes as ours but named for another device: its EXIF time differs from its name
    shutil.copy(path, other)
    # the crash case: delete our row so the file has none
    with pipeline.queue.engine.begin() as c:
        c.exec_driver_sql("DELETE FROM capture_attempts")
        c.exec_driver_sql("DELETE FROM images")
    thumbnail_path(path, "thumbnail-mini").unlink()
    report = reconcile(pipeline.queue, data_dir)
    rel = str(path.relative_to(data_dir))
    assert report.adopted == [rel]
    row = pipeline.queue.images()[0]
    assert row.path == rel and row.md5 == hashlib.md5(data).hexdigest() and row.size == len(data)
    assert thumbnail_path(path, "thumbnail-mini").exists()
    # the misnamed copy is not adopted under a wrong identity, and not deleted: quarantined
    assert len(report.quarantined) == 1 and "differs from its name" in report.quarantined[0]
    assert not other.exists() and (data_dir / "quarantine" / other.name).read_bytes() == data


def test_reconcile_flags_a_row_whose_file_is_gone_and_restores_it(captured: tuple[Pipeline, Path]) -> None:
    pipeline, path = captured
    data_dir = pipeline.config.storage.data_dir
    moved = path.with_suffix(".bak")
    path.rename(moved)
    report = reconcile(pipeline.queue, data_dir)
    assert report.missing == [str(path.relative_to(data_dir))]
    assert pipeline.queue.images()[0].state == "missing"
    # the orphaned thumbnails stay while the row exists (the image may come back)
    assert thumbnail_path(path, "thumbnail").exists()
    moved.rename(path)
    reconcile(pipeline.queue, data_dir)
    assert pipeline.queue.images()[0].state == "captured"


def test_reconcile_removes_partials_and_orphan_thumbnails(captured: tuple[Pipeline, Path]) -> None:
    pipeline, path = captured
    data_dir = pipeline.config.storage.data_dir
    partial = path.with_name("0a1b2c3d.2026-06-01_12-00-00.jpg~")
    partial.write_bytes(b"half")
    orphan = thumbnail_path(path.with_name("0a1b2c3d.2026-06-01_12-00-00.jpg"), "thumbnail")
    orphan.write_bytes(b"x")
    report = reconcile(pipeline.queue, data_dir)
    assert not partial.exists() and not orphan.exists()
    assert len(report.removed_partials) == 1 and len(report.removed_thumbnails) == 1
    assert path.exists() and len(pipeline.queue.images()) == 1
    # a second pass finds nothing to do
    assert not reconcile(pipeline.queue, data_dir).changed


def test_an_older_queue_is_migrated_in_place_keeping_its_rows(tmp_path: Path) -> None:
    path = tmp_path / "q.sqlite"
    with sqlite3.connect(path) as c:  # a queue written by the first release (schema 1)
        for statement in MIGRATIONS[0]:
            c.execute(statement)
        c.execute(
            "INSERT INTO images (device, datetime, path, md5, size, width, height, metadata, created_at,"
            " updated_at) VALUES ('0a1b2c3d', '2026-06-01 12:00:00', 'a.jpg', ?, 5, 4, 3, '{}',"
            " '2026-06-01 12:00:00', '2026-06-01 12:00:00')",
            ("0" * 32,),
        )
        c.execute("PRAGMA user_version = 1")
    q = Queue(path)
    assert q.schema_version == SCHEMA_VERSION
    assert "ix_images_state_size" in {i["name"] for i in inspect(q.engine).get_indexes("images")}
    assert q.totals_by_state()["captured"].count == 1
    q.close()
