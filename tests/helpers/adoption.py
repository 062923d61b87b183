"""Images waiting for adoption: a complete original on disk whose queue row is gone."""

from __future__ import annotations

from pathlib import Path

from agent.service import Pipeline


def capture_without_row(pipeline: Pipeline) -> Path:
    """Capture one image, then delete its row: return the path of a complete original waiting to
    be adopted by reconciliation."""
    result = pipeline.capturer.capture()
    assert result.ok and result.image is not None
    with pipeline.queue.engine.begin() as c:
        c.exec_driver_sql("DELETE FROM capture_attempts")
        c.exec_driver_sql("DELETE FROM images")
    return pipeline.config.storage.data_dir / result.image.path
