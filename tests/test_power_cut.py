"""Power cuts at random points of capture, adoption and sync (issue 9).

SIGKILL is not a power cut (the page cache survives it). :mod:`helpers.powercut` journals a
workload's file operations and queue commits and rebuilds the data folder as a power cut after
any prefix of that journal would leave it: a file's data only if it was fsynced, a new name or
rename only if its folder was fsynced, the queue as of its last commit. Each rebuilt folder is
then restarted (start-up reconciliation, as ``stickyctl run`` does first) and checked:

* the queue passes ``PRAGMA integrity_check``;
* every original on disk has its row (adopted if need be), nothing valid is quarantined, no
  half-written file of the agent's is left;
* every row whose state says its file is on disk has it, with the row's md5 and both
  thumbnails; no row is left ``missing`` (a row never becomes durable before its file);
* every image a capture reported as done before the cut is there.

Why dm-flakey is not used: this kernel has no device-mapper (no /dev/mapper/control, no
module loading), so a block device that drops unflushed writes cannot be made here.
"""

from __future__ import annotations

import hashlib
import os
import random
import shutil
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest
from helpers.powercut import Journal, durable_states
from test_scheduler import SteppingClock

from agent.capture.naming import thumbnail_path
from agent.capture.reconcile import reconcile
from agent.config import Config, load_config
from agent.queue import Queue
from agent.queue.states import STATES_WITH_FILE
from agent.service import Pipeline

SEED = 20261129


def check_restart(data_dir: Path) -> list[str]:
    """Restart on a rebuilt data folder (reconcile) and return every broken invariant."""
    problems: list[str] = []
    db = data_dir / "queue.sqlite"
    with sqlite3.connect(db) as c:
        ok = c.execute("PRAGMA integrity_check").fetchone()[0]
    if ok != "ok":
        return [f"integrity_check: {ok}"]
    queue = Queue(db)
    try:
        report = reconcile(queue, data_dir)
        problems += [f"quarantined {q}" for q in report.quarantined]
        problems += [f"reconcile error {e}" for e in report.errors]
        rows = {r.path: r for r in queue.images(limit=100_000)}
    finally:
        queue.close()
    for rel, row in rows.items():
        path = data_dir / rel
        if row.state == "missing":
            problems.append(f"{rel}: row left without its file (missing)")
        elif row.state in STATES_WITH_FILE:
            if not path.is_file():
                problems.append(f"{rel}: {row.state} but no file")
                continue
            if hashlib.md5(path.read_bytes()).hexdigest() != row.md5:
                problems.append(f"{rel}: md5 differs from its row")
            for kind in ("thumbnail", "thumbnail-mini"):
                if not thumbnail_path(path, kind).is_file():
                    problems.append(f"{rel}: no {kind}")
    for original in data_dir.glob("*/*/*.jpg"):
        rel = str(original.relative_to(data_dir))
        if original.parts[-3] != "quarantine" and rel not in rows:
            problems.append(f"{rel}: file without a row after restart")
    problems += [f"{p.relative_to(data_dir)}: partial left" for p in data_dir.rglob("*.jpg~")]
    return problems


def run_cuts(journal: Journal, work: Path, n_cuts: int, must_have: dict[int, set[str]]) -> dict[str, int]:
    """Rebuild and check ``n_cuts`` random cut points (plus the two ends); fail on any problem.

    ``must_have`` maps an event index to the images that were done (committed) by then."""
    total = len(journal.events)
    rng = random.Random(SEED + total)
    cuts = sorted({0, total, *(rng.randrange(total + 1) for _ in range(n_cuts))})
    failures: list[str] = []
    for i, (cut, model) in enumerate(durable_states(journal, cuts)):
        target = work / f"cut{i}"
        model.materialize(target)
        problems = check_restart(target)
        done = set().union(*(v for k, v in must_have.items() if k <= cut)) if must_have else set()
        with sqlite3.connect(target / "queue.sqlite") as c:
            present = {p for (p,) in c.execute("SELECT path FROM images")}
        problems += [f"{p}: done before the cut, gone after" for p in done - present]
        if problems:
            failures.append(f"cut at event {cut}/{total}: " + "; ".join(problems[:5]))
        shutil.rmtree(target)
    print(f"power cuts: {len(cuts)} cut points of {total} events, {len(failures)} with a broken invariant")
    assert not failures, "\n".join(failures[:10])
    return {"cuts": len(cuts), "events": total}


def _pipeline(write_config: Callable[..., Path], **tables: dict) -> tuple[Config, Pipeline]:
    config = load_config(write_config(flash={"type": "none"}, **tables), environ={})
    pipeline = Pipeline.build(config)
    clock = SteppingClock(1.0)
    pipeline.capturer.now, pipeline.capturer.sleep = clock, clock.sleep
    return config, pipeline


def test_the_model_keeps_only_what_was_fsynced(tmp_path: Path) -> None:
    """The harness itself: unsynced data and unsynced renames are lost, synced ones kept."""
    from agent.capture.imagewriter import atomic_write

    data = tmp_path / "data"
    data.mkdir()
    queue = Queue(data / "queue.sqlite")
    journal = Journal(data, data / "queue.sqlite")
    with journal.active(queue.engine):
        atomic_write(data / "a" / "kept.bin", b"kept")
        fd = os.open(data / "a" / "lost.bin", os.O_WRONLY | os.O_CREAT, 0o644)
        os.write(fd, b"never synced")
        os.close(fd)
    queue.close()
    [(_, model)] = list(durable_states(journal, [len(journal.events)]))
    model.materialize(tmp_path / "after")
    assert (tmp_path / "after" / "a" / "kept.bin").read_bytes() == b"kept"
    assert not (tmp_path / "after" / "a" / "lost.bin").exists()  # its folder was not fsynced after
    # cut just before the rename's folder fsync: the rename is lost, the temporary file is not there
    rename_at = next(i for i, e in enumerate(journal.events) if e.op == "rename")
    [(_, model)] = list(durable_states(journal, [rename_at + 1]))
    model.materialize(tmp_path / "mid")
    assert not (tmp_path / "mid" / "a" / "kept.bin").exists()


@pytest.mark.slow
def test_power_cuts_during_captures(write_config: Callable[..., Path], tmp_path: Path) -> None:
    config, pipeline = _pipeline(write_config)
    must_have: dict[int, set[str]] = {}
    try:
        journal = Journal(config.storage.data_dir, config.storage.queue_path)
        with journal.active(pipeline.queue.engine):
            for _ in range(6):
                result = pipeline.capturer.capture()
                assert result.ok and result.image is not None
                must_have[len(journal.events)] = {result.image.path}
    finally:
        pipeline.close()
    run_cuts(journal, tmp_path / "cuts", 150, must_have)


@pytest.mark.slow
def test_power_cuts_during_adoption(write_config: Callable[..., Path], tmp_path: Path) -> None:
    config, pipeline = _pipeline(write_config)
    try:
        paths = []
        for _ in range(5):
            result = pipeline.capturer.capture()
            assert result.ok and result.image is not None
            paths.append(config.storage.data_dir / result.image.path)
        with pipeline.queue.engine.begin() as c:  # the crash case: files without rows
            c.exec_driver_sql("DELETE FROM capture_attempts")
            c.exec_driver_sql("DELETE FROM images")
        for p in paths[:3]:
            thumbnail_path(p, "thumbnail-mini").unlink()
        journal = Journal(config.storage.data_dir, config.storage.queue_path)
        with journal.active(pipeline.queue.engine):
            report = pipeline.reconcile()
        assert len(report.adopted) == 5
    finally:
        pipeline.close()
    run_cuts(journal, tmp_path / "cuts", 120, {})


@pytest.mark.slow
def test_power_cuts_during_sync_and_eviction(write_config: Callable[..., Path], tmp_path: Path) -> None:
    from agent.devserver import parse_user
    from agent.devserver.app import DevServer
    from agent.sinks.stickypi import make_sink
    from agent.sinks.worker import SyncWorker

    creds = tmp_path / "creds"
    creds.write_text("trap:secret\n")
    creds.chmod(0o600)
    with DevServer(tmp_path / "server", [parse_user("trap:secret")]) as server:
        config, pipeline = _pipeline(
            write_config,
            sync={"url": server.url, "credentials": str(creds), "batch_size": 2},
            retention={"keep_days": 0},  # every verified original is evicted at once
        )
        try:
            for _ in range(5):
                assert pipeline.capturer.capture().ok
            worker = SyncWorker(config, pipeline.queue, lambda: make_sink(config.sinks[0]))
            journal = Journal(config.storage.data_dir, config.storage.queue_path)
            with journal.active(pipeline.queue.engine):
                for _ in range(20):
                    if worker.cycle() > 0:
                        break
            states = {i.state for i in pipeline.queue.images()}
            assert states == {"evicted"}, states
            worker.stop()
        finally:
            pipeline.close()
    run_cuts(journal, tmp_path / "cuts", 120, {})


@pytest.mark.slow
def test_the_harness_catches_a_write_that_is_not_fsynced(
    write_config: Callable[..., Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The check can fail: with the image writer's data fsync removed, some cut points leave a
    renamed but empty image (the rename was made durable, the data not)."""
    import stat

    from agent.capture import imagewriter

    class FilesNotSynced:
        """The ``os`` module as the image writer sees it, except that fsync skips files."""

        def __getattr__(self, name: str) -> object:
            return getattr(os, name)  # the live module: the journal's wrappers included

        @staticmethod
        def fsync(fd: int) -> None:
            if stat.S_ISDIR(os.fstat(fd).st_mode):
                os.fsync(fd)

    monkeypatch.setattr(imagewriter, "os", FilesNotSynced())
    config, pipeline = _pipeline(write_config)
    try:
        journal = Journal(config.storage.data_dir, config.storage.queue_path)
        with journal.active(pipeline.queue.engine):
            for _ in range(2):
                assert pipeline.capturer.capture().ok
    finally:
        pipeline.close()
    with pytest.raises(AssertionError, match="quarantined"):
        run_cuts(journal, tmp_path / "cuts", 40, {})
