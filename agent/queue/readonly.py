"""Read-only queries for ``stickyctl status``, with the standard ``sqlite3`` module.

Status runs often, by hand, on a Pi Zero: it must not pay ~250 ms (seconds on a Pi) to
import SQLAlchemy's ORM for a handful of indexed queries. This module reads the same
tables as :mod:`agent.queue.store` (the schema is in :mod:`agent.queue.schema`) and
writes nothing.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from agent.errors import QueueError
from agent.queue.states import PROBLEM_STATES, WAITING_STATES


def _time(value: str | None) -> dt.datetime | None:
    """Parse a stored datetime (naive UTC text) as an aware UTC datetime; None if it is not one."""
    try:
        return None if value is None else dt.datetime.fromisoformat(value).replace(tzinfo=dt.UTC)
    except (TypeError, ValueError):
        return None  # a damaged row must not break status


def _stored(when: dt.datetime) -> str:
    """Format an aware datetime the way the queue stores it."""
    return when.astimezone(dt.UTC).replace(tzinfo=None).isoformat(sep=" ", timespec="microseconds")


def _marks(n: int) -> str:
    return ",".join("?" * n)


class QueueReader:
    """A read-only view of the queue file."""

    def __init__(self, path: Path) -> None:
        """Open ``path`` read-only. Raise QueueError if it is not a readable queue database."""
        try:
            self.db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=15)
            self.db.execute("SELECT 1 FROM images LIMIT 1")
        except sqlite3.Error as e:
            raise QueueError(f"cannot read the queue database {path}: {e}") from e

    def close(self) -> None:
        self.db.close()

    def _all(self, sql: str, *args: Any) -> list[tuple[Any, ...]]:
        try:
            return self.db.execute(sql, args).fetchall()
        except sqlite3.Error as e:
            raise QueueError(f"reading the queue failed: {e}") from e

    def iter_images(self, limit: int, state: str | None = None) -> Iterator[dict[str, Any]]:
        """Yield the most recent images, newest first, one row at a time (a long queue is never
        held in memory). A value the row should not have (a damaged file) is passed on as it is."""
        where, args = ("WHERE state = ?", (state,)) if state else ("", ())
        sql = (
            "SELECT path, datetime, state, size, md5, manual, attempts, last_error FROM images "
            f"{where} ORDER BY datetime DESC LIMIT ?"
        )
        try:
            cursor = self.db.execute(sql, (*args, limit))
            for path, when, st, size, md5, manual, attempts, last_error in cursor:
                parsed = _time(when)
                yield {
                    "name": Path(str(path)).name,
                    "datetime": parsed.isoformat() if parsed else when,
                    "state": st,
                    "size": size,
                    "md5": md5,
                    "manual": bool(manual),
                    "attempts": attempts,
                    "last_error": last_error,
                }
        except sqlite3.Error as e:
            raise QueueError(f"reading the queue failed: {e}") from e

    def published(self) -> dict[str, str]:
        return {k: v for k, v in self._all("SELECT key, value FROM agent_state")}

    def attempts(self, limit: int, outcome: str | None = None) -> list[dict[str, Any]]:
        """Return the latest capture attempts, newest first."""
        where, args = ("WHERE outcome = ?", (outcome,)) if outcome else ("", ())
        rows = self._all(
            f"SELECT started_at, outcome, manual, error FROM capture_attempts {where}"
            " ORDER BY id DESC LIMIT ?",
            *args,
            limit,
        )
        return [{"time": _time(t), "outcome": o, "manual": bool(m), "error": e} for t, o, m, e in rows]

    def attempt_counts(self, since: dt.datetime) -> dict[str, int]:
        rows = self._all(
            "SELECT outcome, count(*) FROM capture_attempts WHERE started_at >= ? GROUP BY outcome",
            _stored(since),
        )
        return {o: int(n) for o, n in rows}

    def totals_by_state(self) -> dict[str, tuple[int, int]]:
        """Return ``{state: (count, bytes)}`` (from the covering index on state, size)."""
        rows = self._all("SELECT state, count(*), coalesce(sum(size), 0) FROM images GROUP BY state")
        return {st: (int(n), int(b)) for st, n, b in rows}

    def oldest_waiting(self) -> dict[str, Any] | None:
        states = [s.value for s in WAITING_STATES]
        rows = self._all(
            f"SELECT path, datetime FROM images WHERE state IN ({_marks(len(states))})"
            " ORDER BY datetime LIMIT 1",
            *states,
        )
        return {"name": Path(rows[0][0]).name, "datetime": _time(rows[0][1])} if rows else None

    def problems(self, limit: int = 5) -> list[dict[str, Any]]:
        """Return the latest conflicts, failures and quarantines with their reasons."""
        states = [s.value for s in PROBLEM_STATES]
        rows = self._all(
            f"SELECT path, state, last_error FROM images WHERE state IN ({_marks(len(states))})"
            " ORDER BY updated_at DESC LIMIT ?",
            *states,
            limit,
        )
        return [{"name": Path(p).name, "state": s, "reason": e} for p, s, e in rows]

    def annotation_totals(self) -> dict[str, int]:
        return {s: int(n) for s, n in self._all("SELECT state, count(*) FROM annotations GROUP BY state")}

    def insect_counts(self, since: dt.datetime) -> dict[str, Any]:
        """Return the newest two annotated images' insects (on the card, new since the capture
        before, as the detection worker tracked them) and the new ones since ``since``."""
        last = self._all(  # the newest two: status falls back on their difference when untracked
            "SELECT i.path, i.datetime, a.n_objects, a.n_new, a.new_card FROM annotations a"
            " JOIN images i ON a.image_id = i.id ORDER BY i.datetime DESC LIMIT 2"
        )
        total = self._all(
            "SELECT coalesce(sum(a.n_new), 0), count(*) FROM annotations a"
            " JOIN images i ON a.image_id = i.id WHERE i.datetime >= ?",
            _stored(since),
        )[0]
        images = [
            {
                "name": Path(p).name,
                "datetime": _time(t),
                "insects": int(n),
                "new": None if new is None else int(new),
                "new_card": bool(card),
            }
            for p, t, n, new, card in last
        ]
        return {
            "last_image": images[0] if images else None,
            "previous_image": images[1] if len(images) > 1 else None,
            "since": since,
            "new_since": int(total[0]),
            "images_since": int(total[1]),
        }
