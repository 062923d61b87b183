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
from agent.queue.states import (
    DELIVERY_PROBLEMS,
    PROBLEM_STATES,
    STATES_WITH_FILE,
    TO_SEND,
    DeliveryState,
    ImageState,
)

_ON_DISK = STATES_WITH_FILE[0].value
_TO_SEND = tuple(s.value for s in TO_SEND)
#: Delivery states a sink's worker is done with (the image is there, or an operator must act).
_SETTLED = tuple(s.value for s in DeliveryState if s not in TO_SEND)
#: An image on disk with no delivery row for a sink is waiting for it (shown as this).
UNSEEN = DeliveryState.WAITING.value


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


def _read_error(e: sqlite3.Error) -> QueueError:
    """Given a read's error, return the QueueError to raise (a queue of a release before per-sink
    deliveries says how to upgrade it: this reader never writes)."""
    if "no such table" in str(e) and "deliveries" in str(e):
        return QueueError(
            "the queue is from an older sticky-agent (no per-sink deliveries yet): start the agent "
            "once (sudo systemctl restart sticky-agent) and it upgrades the queue; nothing is lost"
        )
    return QueueError(f"reading the queue failed: {e}")


class QueueReader:
    """A read-only view of the queue file."""

    def __init__(self, path: Path) -> None:
        """Open ``path`` read-only. Raise QueueError if it is not a readable queue database."""
        # Images on disk, and those settled with sinks: one snapshot per reader (see settle()).
        self._disk: tuple[int, int] | None = None
        self._settled: dict[tuple[str, ...], tuple[int, int]] = {}
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
            raise _read_error(e) from e

    def iter_images(
        self,
        limit: int,
        state: str | None = None,
        sinks: list[str] | None = None,
        sink: str | None = None,
    ) -> Iterator[dict[str, Any]]:
        """Yield the most recent images, newest first, each with ``deliveries``: ``{sink: {state,
        attempts, last_error, remote_id}}`` for every one of ``sinks`` (an image on disk with no
        row for a sink is ``waiting`` for it; one gone before the sink saw it, absent). ``state``
        is a file state (``captured``...) or a delivery state (``failed``...: at ``sink``, or at
        any of ``sinks``). Rows are read a few hundred at a time (a long queue is never held in
        memory); a value a row should not have (a damaged file) is passed on as it is."""
        names = [sink] if sink else list(sinks or [])
        where, args = self._state_filter(state, names)
        sql = (
            "SELECT i.id, i.path, i.datetime, i.state, i.size, i.md5, i.manual, i.last_error"
            f" FROM images i {where} ORDER BY i.datetime DESC LIMIT ?"
        )
        try:
            cursor = self.db.execute(sql, (*args, limit))
            while rows := cursor.fetchmany(500):
                held = self.deliveries_of([r[0] for r in rows], names)
                for image_id, path, when, st, size, md5, manual, last_error in rows:
                    parsed = _time(when)
                    mine = held.get(image_id, {})
                    if st == _ON_DISK:
                        unseen = {"state": UNSEEN, "attempts": 0, "last_error": None, "remote_id": None}
                        mine = {n: mine.get(n, unseen) for n in names}
                    yield {
                        "name": Path(str(path)).name,
                        "datetime": parsed.isoformat() if parsed else when,
                        "state": st,
                        "size": size,
                        "md5": md5,
                        "manual": bool(manual),
                        "last_error": last_error,
                        "deliveries": {n: mine[n] for n in names if n in mine},
                    }
        except sqlite3.Error as e:
            raise _read_error(e) from e

    @staticmethod
    def _state_filter(state: str | None, names: list[str]) -> tuple[str, tuple[Any, ...]]:
        """Given a file or delivery state and the sinks it is about, return the WHERE clause."""
        if not state:
            return "", ()
        if state in {s.value for s in ImageState}:
            return "WHERE i.state = ?", (state,)
        if not names:
            return "WHERE 0", ()
        clauses, args = [], []
        for name in names:
            held = "EXISTS (SELECT 1 FROM deliveries d WHERE d.image_id = i.id AND d.sink = ?"
            clause = f"{held} AND d.state = ?)"
            if state == UNSEEN:  # no row yet for an image on disk: waiting too
                clause = f"({clause} OR (i.state = ? AND NOT {held})))"
                args += [name, state, _ON_DISK, name]
            else:
                args += [name, state]
            clauses.append(clause)
        return "WHERE " + " OR ".join(clauses), tuple(args)

    def deliveries_of(self, image_ids: list[int], sinks: list[str]) -> dict[int, dict[str, dict[str, Any]]]:
        """Given image ids and sink names, return ``{image id: {sink: {state, attempts,
        last_error, remote_id}}}`` for the rows the queue has."""
        if not image_ids or not sinks:
            return {}
        rows = self._all(
            "SELECT image_id, sink, state, attempts, last_error, remote_id FROM deliveries"
            f" WHERE image_id IN ({_marks(len(image_ids))}) AND sink IN ({_marks(len(sinks))})",
            *image_ids,
            *sinks,
        )
        out: dict[int, dict[str, dict[str, Any]]] = {}
        for image_id, sink, st, attempts, error, remote_id in rows:
            out.setdefault(image_id, {})[sink] = {
                "state": st,
                "attempts": attempts,
                "last_error": error,
                "remote_id": remote_id,
            }
        return out

    # -- per sink (the same figures as agent.queue.deliveries.totals) --------------------------

    def _on_disk(self) -> tuple[int, int]:
        """Return ``(images, bytes)`` whose original is on disk (one covering-index read)."""
        if self._disk is None:
            n, b = self._all("SELECT count(*), coalesce(sum(size), 0) FROM images WHERE state = ?", _ON_DISK)[
                0
            ]
            self._disk = int(n), int(b)
        return self._disk

    def settle(self, sinks: list[str]) -> None:
        """Given the configured sinks, count in one pass over the images on disk those settled
        (verified, failed, conflict) with each sink and with all of them, for
        :meth:`sink_totals` and :meth:`waiting_anywhere` (status asks for every sink at once).
        Each sink's settled ids are an in-memory set the pass looks images up in: measured 3-4
        times quicker than a probe of the deliveries table per image or a look-up per row."""
        if not sinks:
            return
        marks = _marks(len(_SETTLED))
        member = [
            f"i.id IN (SELECT image_id FROM deliveries WHERE sink = ? AND state IN ({marks}))" for _ in sinks
        ]
        cols = ", ".join(f"{m} AS s{k}" for k, m in enumerate(member))
        every = " AND ".join(f"s{k}" for k in range(len(sinks)))
        sums = ", ".join(f"sum(s{k}), sum(s{k} * size)" for k in range(len(sinks)))
        args = [a for name in sinks for a in (name, *_SETTLED)]
        row = self._all(  # MATERIALIZED: each membership is looked up once per image, not per use
            f"WITH t AS MATERIALIZED (SELECT i.size AS size, {cols} FROM images i WHERE i.state = ?)"
            f" SELECT count(*), coalesce(sum(size), 0), sum({every}), sum(({every}) * size), {sums} FROM t",
            *args,
            _ON_DISK,
        )[0]
        values = [int(v or 0) for v in row]
        self._disk = values[0], values[1]
        self._settled[tuple(sinks)] = values[2], values[3]
        for k, name in enumerate(sinks):
            self._settled[(name,)] = values[4 + 2 * k], values[5 + 2 * k]

    def _settled_on_disk(self, sinks: list[str]) -> tuple[int, int]:
        """Given sinks, return ``(images, bytes)`` on disk settled with every one of them."""
        if tuple(sinks) not in self._settled:
            self.settle(sinks)
        return self._settled[tuple(sinks)]

    def _delivery_counts(self, sink: str) -> dict[str, int]:
        rows = self._all("SELECT state, count(*) FROM deliveries WHERE sink = ? GROUP BY state", sink)
        return {st: int(n) for st, n in rows}

    def sink_totals(self, sink: str) -> dict[str, int]:
        """Given a sink's name, return its ``verified``, ``waiting`` (images on disk not settled
        there: no row yet, ``waiting`` or ``uploaded``), ``waiting_bytes``, ``uploaded``,
        ``failed``, ``conflict`` and its annotations' ``annotations_sent``,
        ``annotations_pending``, ``annotations_failed`` (as :func:`agent.queue.deliveries.totals`)."""
        counts = self._delivery_counts(sink)
        disk_n, disk_b = self._on_disk()
        settled = sum(counts.get(s, 0) for s in _SETTLED)
        settled_n, settled_b = self._settled_on_disk([sink]) if settled else (0, 0)
        uploaded = 0
        if counts.get("uploaded"):  # (few: sent, not yet seen on the sink)
            uploaded = int(
                self._all(
                    "SELECT count(*) FROM deliveries d CROSS JOIN images i ON i.id = d.image_id"
                    " WHERE d.sink = ? AND d.state = ? AND i.state = ?",
                    sink,
                    DeliveryState.UPLOADED.value,
                    _ON_DISK,
                )[0][0]
            )
        anns = {
            st: int(n)
            for st, n in self._all(
                "SELECT state, count(*) FROM annotation_deliveries WHERE sink = ? GROUP BY state", sink
            )
        }
        return {
            "verified": counts.get("verified", 0),
            "waiting": disk_n - settled_n,
            "waiting_bytes": disk_b - settled_b,
            "uploaded": uploaded,
            "failed": counts.get("failed", 0),
            "conflict": counts.get("conflict", 0),
            "annotations_sent": anns.get("uploaded", 0),
            "annotations_failed": anns.get("failed", 0),
            "annotations_pending": self.annotation_count() - anns.get("uploaded", 0) - anns.get("failed", 0),
        }

    def waiting_anywhere(self, sinks: list[str]) -> tuple[int, int]:
        """Given sink names, return ``(images, bytes)`` on disk still on their way to at least one
        (not settled with every one)."""
        if not sinks:
            return 0, 0
        disk_n, disk_b = self._on_disk()
        settled_n, settled_b = self._settled_on_disk(sinks)
        return disk_n - settled_n, disk_b - settled_b

    def oldest_waiting(self, sink: str) -> dict[str, Any] | None:
        """Given a sink's name, return the oldest image on disk still on its way there."""
        rows = self._all(
            "SELECT i.path, i.datetime FROM images i WHERE i.state = ? AND NOT EXISTS (SELECT 1 FROM"
            f" deliveries d WHERE d.image_id = i.id AND d.sink = ? AND d.state NOT IN ({_marks(2)}))"
            " ORDER BY i.datetime LIMIT 1",
            _ON_DISK,
            sink,
            *_TO_SEND,
        )
        return {"name": Path(rows[0][0]).name, "datetime": _time(rows[0][1])} if rows else None

    def sink_problems(self, sink: str, limit: int = 5) -> list[dict[str, Any]]:
        """Given a sink's name, return its latest conflicts and failures with their reasons."""
        states = [s.value for s in DELIVERY_PROBLEMS]
        rows = self._all(
            "SELECT i.path, d.state, d.last_error FROM deliveries d JOIN images i ON d.image_id = i.id"
            f" WHERE d.sink = ? AND d.state IN ({_marks(len(states))}) ORDER BY d.updated_at DESC LIMIT ?",
            sink,
            *states,
            limit,
        )
        return [{"name": Path(p).name, "state": s, "reason": e} for p, s, e in rows]

    def last_verified(self, sink: str) -> dt.datetime | None:
        """Given a sink's name, return when it last verified an image (its last success)."""
        rows = self._all(
            "SELECT max(verified_at) FROM deliveries WHERE sink = ? AND state = ?",
            sink,
            DeliveryState.VERIFIED.value,
        )
        return _time(rows[0][0]) if rows and rows[0][0] else None

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

    def problems(self, limit: int = 5) -> list[dict[str, Any]]:
        """Return the latest quarantined files with their reasons (file problems, any sink)."""
        states = [s.value for s in PROBLEM_STATES]
        rows = self._all(
            f"SELECT path, state, last_error FROM images WHERE state IN ({_marks(len(states))})"
            " ORDER BY updated_at DESC LIMIT ?",
            *states,
            limit,
        )
        return [{"name": Path(p).name, "state": s, "reason": e} for p, s, e in rows]

    def annotation_count(self) -> int:
        return int(self._all("SELECT count(*) FROM annotations")[0][0])

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
