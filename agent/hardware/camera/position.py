"""Where a simulated camera is in its sequence, kept across runs in a small file of the data folder.

The synthetic camera's card gains insects capture after capture, and the replay camera steps
through its folder: without this, every process (each ``stickyctl capture``, each restart of the
agent) would start again at the first card or the first file. The file
(``<data_dir>/camera-position.json``) is written atomically after each capture and names what it
belongs to (the seed and size, or the folder): another camera setup starts from the beginning.
A file that cannot be read or written costs the position, never a capture.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

POSITION_FILE = "camera-position.json"


class Position:
    """The saved position of one camera setup (``identity``) in ``path`` (None: not kept)."""

    def __init__(self, path: Path | None, identity: dict[str, Any]) -> None:
        self.path = path
        self.identity = identity

    def load(self) -> dict[str, Any]:
        """Return the saved state of this camera setup, or ``{}`` (none, another setup, unreadable)."""
        if self.path is None:
            return {}
        try:
            saved = json.loads(self.path.read_text())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as e:
            log.warning("camera position %s unreadable (%s): starting from the beginning", self.path, e)
            return {}
        if not isinstance(saved, dict) or saved.get("camera") != self.identity:
            return {}
        state = saved.get("state")
        return state if isinstance(state, dict) else {}

    def save(self, state: dict[str, Any]) -> None:
        """Write ``state`` atomically (a temporary file, fsync, rename); log a failure, never raise."""
        if self.path is None:
            return
        tmp = self.path.with_name(self.path.name + ".tmp")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            data = json.dumps({"camera": self.identity, "state": state}, sort_keys=True).encode()
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            try:
                os.write(fd, data)
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, self.path)
        except OSError as e:
            with contextlib.suppress(OSError):
                tmp.unlink()
            log.warning("could not save the camera position in %s: %s", self.path, e)


def position_file(state_dir: Path | None) -> Path | None:
    """The position file in ``state_dir`` (the data folder), or None when positions are not kept."""
    return None if state_dir is None else state_dir / POSITION_FILE
