"""A full disk stops captures with a clear status message instead of writing broken files,
and captures resume by themselves when space returns."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import run_stickyctl
from helpers.adoption import capture_without_row

from agent.config import load_config
from agent.service import Pipeline


def test_a_full_disk_stops_captures_and_they_resume_by_themselves(
    write_config: Callable[..., Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = write_config(retention={"min_free_disk_mb": 500})
    pipeline = Pipeline.build(load_config(cfg, environ={}))
    free = {"mb": 120.0}
    monkeypatch.setattr("agent.capture.pipeline.free_mb", lambda _path: free["mb"])
    try:
        result = pipeline.capturer.capture()
        assert result.outcome == "disk_full"
        assert "120 MB free, below retention.min_free_disk_mb (500 MB)" in (result.error or "")
        assert pipeline.queue.images() == []
        data_dir = pipeline.config.storage.data_dir
        assert not list(data_dir.rglob("*.jpg")) and not list(data_dir.rglob("*~"))
        status = run_stickyctl("--config", str(cfg), "status")
        assert "DISK_FULL" in status.stdout and "captures resume by themselves" in status.stdout

        free["mb"] = 5000.0  # space is back (e.g. the backlog synced and was evicted)
        assert pipeline.capturer.capture().ok
        assert len(pipeline.queue.images()) == 1
    finally:
        pipeline.close()


def test_a_low_disk_evicts_verified_originals_before_giving_up(
    write_config: Callable[..., Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    from agent.queue import deliveries as dq

    cfg = write_config(retention={"min_free_disk_mb": 500}, sink=[{"name": "lab", "type": "memory"}])
    pipeline = Pipeline.build(load_config(cfg, environ={}))
    try:
        first = pipeline.capturer.capture()
        assert first.ok and first.image is not None
        # the sink verifiably holds the first image
        dq.enqueue(pipeline.queue, "lab")
        (row, _), *_ = dq.batch(pipeline.queue, "lab", 1)
        dq.set_delivery(pipeline.queue, row.id, dq.DeliveryState.VERIFIED)
        original = pipeline.config.storage.data_dir / first.image.path
        # the disk is low until that original is gone
        for module in ("pipeline", "retention"):
            monkeypatch.setattr(
                f"agent.capture.{module}.free_mb", lambda _p: 5000.0 if not original.exists() else 100.0
            )
        assert pipeline.capturer.capture().ok
        assert not original.exists()
        states = {i.id: i.state for i in pipeline.queue.images()}
        assert states[first.image.id] == "evicted" and len(states) == 2
    finally:
        pipeline.close()


# -- a 100 % full disk (issue 9, defect 1) ----------------------------------------------------


def test_a_100_percent_full_disk_never_stops_the_agent(
    tmp_path: Path, write_config: Callable[..., Path]
) -> None:
    """On a really full file system (tmpfs), the heartbeat, captures, the sync worker's error
    path and start-up reconciliation go on; nothing valid is quarantined; when space returns,
    captures and adoption resume by themselves."""
    from helpers.fullfs import fill, small_tmpfs

    from agent.service import Agent
    from agent.sinks.stickypi import make_sink
    from agent.sinks.worker import SyncWorker

    creds = tmp_path / "creds"
    creds.write_text("trap:secret\n")
    creds.chmod(0o600)
    with small_tmpfs(tmp_path / "fs", size_mb=8) as mnt:
        cfg = write_config(
            storage={"data_dir": str(mnt / "data")},
            retention={"min_free_disk_mb": 0},  # let the disk really fill up
            sync={"url": "http://127.0.0.1:9", "credentials": str(creds), "connect_timeout": "1s"},
        )
        config = load_config(cfg, environ={})
        agent = Agent(config)
        agent.start()
        try:
            assert agent.pipeline is not None and agent.scheduler is not None
            pipeline = agent.pipeline
            orphan = capture_without_row(pipeline)
            filler = fill(mnt)

            agent._publish_next(agent.scheduler.next_run_time)  # the heartbeat: must not raise
            assert "heartbeat" in pipeline.queue.published()  # kept in memory
            result = agent.capture_job()
            assert result.outcome == "disk_full", result
            worker = SyncWorker(config, pipeline.queue, lambda: make_sink(config.sinks[0]))
            assert worker.cycle() > 0  # unreachable API + full disk: backs off, does not raise

            report = pipeline.reconcile()  # start-up reconciliation on a full disk
            assert orphan.exists() and report.quarantined == []
            assert not (config.storage.data_dir / "quarantine").exists()
            status = run_stickyctl("--config", str(cfg), "status")
            assert "DISK FULL" in status.stdout, status.stdout

            filler.unlink()  # space is back
            agent._publish_next(agent.scheduler.next_run_time)
            from agent.queue.readonly import QueueReader

            reader = QueueReader(config.storage.queue_path)
            try:
                assert "heartbeat" in reader.published()
            finally:
                reader.close()
            assert agent.capture_job().ok
            report = pipeline.reconcile()
            assert report.adopted == [str(orphan.relative_to(config.storage.data_dir))]
        finally:
            agent.stop()


def test_a_full_queue_database_is_no_reason_to_quarantine_or_crash(
    write_config: Callable[..., Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same without root: SQLite's own "database or disk is full" (max_page_count) and
    ENOSPC from the image writer."""
    import errno
    import os

    from agent.errors import QueueFullError

    cfg = write_config(retention={"min_free_disk_mb": 0})
    pipeline = Pipeline.build(load_config(cfg, environ={}))
    try:
        orphan = capture_without_row(pipeline)
        thumbs = orphan.parent / "thumbnail-mini" / orphan.name
        thumbs.unlink()

        @sqlalchemy_event_on_connect(pipeline)
        def _full(conn: object) -> None:
            pages = conn.execute("PRAGMA page_count").fetchone()[0]  # type: ignore[attr-defined]
            conn.execute(f"PRAGMA max_page_count = {pages}")  # type: ignore[attr-defined]

        with pytest.raises(QueueFullError):
            for i in range(200):
                pipeline.queue.record_attempt(
                    started_at=_when(i), outcome="ok", manual=False, error="x" * 4000
                )
        pipeline.queue.publish(heartbeat="now", sync_error="y" * 100_000)  # must not raise
        assert pipeline.queue.published()["heartbeat"] == "now"

        real_write = os.write

        def enospc(fd: int, data: bytes) -> int:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        monkeypatch.setattr("agent.capture.imagewriter.os.write", enospc)
        report = pipeline.reconcile()
        assert orphan.exists() and report.quarantined == [] and report.adopted == []
        assert report.deferred, report
        result = pipeline.capturer.capture()
        assert result.outcome == "disk_full", result
        monkeypatch.setattr("agent.capture.imagewriter.os.write", real_write)
    finally:
        pipeline.close()


def _when(i: int) -> dt.datetime:
    return dt.datetime(2026, 6, 1, tzinfo=dt.UTC) + dt.timedelta(seconds=i)


def sqlalchemy_event_on_connect(pipeline: Pipeline) -> Callable[[Callable[[object], None]], None]:
    """Run ``fn(dbapi_connection)`` on every pooled connection of the queue, now and later."""
    from sqlalchemy import event

    def register(fn: Callable[[object], None]) -> None:
        pipeline.queue.engine.dispose()
        event.listen(pipeline.queue.engine, "connect", lambda conn, _rec: fn(conn))

    return register


def test_a_start_on_a_100_percent_full_disk_waits_for_space_then_runs(
    tmp_path: Path, write_config: Callable[..., Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A restart on a full disk (SQLite cannot even make its -shm file) must not exit: under
    systemd that is a restart loop ending in start-limit-hit, a trap stopped for good."""
    import threading

    from helpers.fullfs import fill, small_tmpfs

    from agent import service
    from agent.service import Agent

    with small_tmpfs(tmp_path / "fs", size_mb=8) as mnt:
        cfg = write_config(storage={"data_dir": str(mnt / "data")}, retention={"min_free_disk_mb": 0})
        config = load_config(cfg, environ={})
        Pipeline.build(config).close()  # the queue exists; a clean close removes -wal and -shm
        filler = fill(mnt)
        monkeypatch.setattr(service, "DISK_RETRY_S", 0.05)
        agent = Agent(config)
        errors: list[BaseException] = []

        def start() -> None:
            try:
                agent.start()
            except BaseException as e:
                errors.append(e)

        thread = threading.Thread(target=start, daemon=True)
        thread.start()
        try:
            for _ in range(400):  # wait (bounded) until it has noticed the full disk
                if agent.waiting_for_space or errors or not thread.is_alive():
                    break
                thread.join(0.05)
            assert agent.waiting_for_space and not errors, errors
            filler.unlink()  # space is back
            thread.join(30)
            assert not thread.is_alive() and not errors, errors
            assert agent.scheduler is not None and agent.scheduler.running
            assert agent.capture_job().ok
        finally:
            agent.request_stop()
            thread.join(30)
            agent.stop()
