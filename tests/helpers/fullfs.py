"""A really full disk for tests: a small tmpfs (root only) and a filler file that takes all of it.

with small_tmpfs(tmp_path / "fs", size_mb=8) as mnt:   # pytest.skip()s if it cannot mount
    filler = fill(mnt)       # now every write on mnt fails with ENOSPC
    filler.unlink()          # space is back
"""

from __future__ import annotations

import contextlib
import errno
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest


@contextlib.contextmanager
def small_tmpfs(path: Path, size_mb: int = 8) -> Iterator[Path]:
    """Mount a ``size_mb`` tmpfs on ``path`` for the block; skip the test if that is not allowed."""
    path.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size_mb}m", "tmpfs", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def fill(folder: Path, name: str = "filler") -> Path:
    """Write a file in ``folder`` until the file system is 100 % full; return it."""
    path = folder / name
    chunk = b"\0" * 65536
    with path.open("wb", buffering=0) as f:
        while True:
            try:
                f.write(chunk)
            except OSError as e:
                if e.errno != errno.ENOSPC:
                    raise
                if len(chunk) == 1:
                    break
                chunk = chunk[: len(chunk) // 2]
    return path
