"""Inter-process locks on the data folder (``flock``: released by the kernel if the holder dies).

- the *capture lock* serialises captures and start-up reconciliation across
  processes, so ``stickyctl capture`` is safe while ``stickyctl run`` runs;
- the *agent lock* is held by ``stickyctl run`` for its lifetime: a second agent
  refuses to start, and ``status`` can tell whether one is running.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import time
from collections.abc import Iterator
from pathlib import Path

from agent.errors import CaptureBusyError, StorageError

CAPTURE_LOCK = ".capture.lock"
AGENT_LOCK = ".agent.lock"


def _open_lock(path: Path) -> int:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        return os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as e:
        raise StorageError(f"cannot open lock file {path}: {e.strerror}") from e


def _try_lock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except OSError as e:
        if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
            return False
        raise


@contextlib.contextmanager
def capture_lock(data_dir: Path, timeout: float) -> Iterator[None]:
    """Hold the capture lock for the block. Raise CaptureBusyError if not had within ``timeout`` s."""
    fd = _open_lock(data_dir / CAPTURE_LOCK)
    try:
        deadline = time.monotonic() + timeout
        while not _try_lock(fd):
            if time.monotonic() >= deadline:
                raise CaptureBusyError(
                    f"another capture held the capture lock for over {timeout:g}s "
                    f"({data_dir / CAPTURE_LOCK}); is a capture stuck on the camera?"
                )
            time.sleep(0.05)
        yield
    finally:
        os.close(fd)


class AgentLock:
    """The lock ``stickyctl run`` holds while it lives; the pid is written into the file."""

    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / AGENT_LOCK
        self._fd: int | None = None

    def acquire(self) -> bool:
        """Take the lock and write our pid; return False if another agent holds it."""
        fd = _open_lock(self.path)
        if not _try_lock(fd):
            os.close(fd)
            return False
        try:
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
        except OSError:  # a full disk: the lock is held all the same, only the pid is unknown
            pass
        self._fd = fd
        return True

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def running_agent_pid(data_dir: Path) -> int | None:
    """Return the pid of the running agent for this data folder, or None if none runs."""
    path = data_dir / AGENT_LOCK
    if not path.exists():
        return None
    fd = os.open(path, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError:
            content = path.read_text().strip()
            return int(content) if content.isdigit() else -1
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)
