"""Crash points for the crash-safety tests: die by SIGKILL at a named step of a capture.

``STICKY_AGENT_KILL_AT=<point>[:<n>]`` makes the process kill itself with SIGKILL
the n-th time (default first) it reaches ``checkpoint(<point>)``. Unset (always,
in the field) a checkpoint is one dictionary lookup.
"""

from __future__ import annotations

import os
import signal

KILL_ENV = "STICKY_AGENT_KILL_AT"
_hits: dict[str, int] = {}


def checkpoint(point: str) -> None:
    spec = os.environ.get(KILL_ENV)
    if not spec:
        return
    name, _, nth = spec.partition(":")
    if name != point:
        return
    _hits[point] = _hits.get(point, 0) + 1
    if _hits[point] >= int(nth or 1):
        os.kill(os.getpid(), signal.SIGKILL)
