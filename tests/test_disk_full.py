"""A full disk stops captures with a clear status message instead of writing broken files,
and captures resume by themselves when space returns."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import run_stickyctl

from agent.config import load_config
from agent.service import Pipeline


def test_a_full_disk_stops_captures_and_they_resume_by_themselves(
    write_config: Callable[..., Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = write_config(retention={"min_free_disk_mb": 500})
    pipeline = Pipeline.build(load_config(cfg, environ={}))
    free = {"mb": 120.0}
    monkeypatch.setattr("agent.capture.free_mb", lambda _path: free["mb"])
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
    from agent.queue import ImageState

    cfg = write_config(retention={"min_free_disk_mb": 500})
    pipeline = Pipeline.build(load_config(cfg, environ={}))
    try:
        first = pipeline.capturer.capture()
        assert first.ok and first.image is not None
        # the server verifiably holds the first image
        pipeline.queue.set_state(first.image.id, ImageState.VERIFIED)
        original = pipeline.config.storage.data_dir / first.image.path
        # the disk is low until that original is gone
        monkeypatch.setattr("agent.capture.free_mb", lambda _p: 5000.0 if not original.exists() else 100.0)
        monkeypatch.setattr("agent.retention.free_mb", lambda _p: 5000.0 if not original.exists() else 100.0)
        assert pipeline.capturer.capture().ok
        assert not original.exists()
        states = {i.id: i.state for i in pipeline.queue.images()}
        assert states[first.image.id] == "evicted" and len(states) == 2
    finally:
        pipeline.close()
