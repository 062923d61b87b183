"""The SQLite queue: open it safely, migrate it, and the operations the agent needs.

SQLite through SQLAlchemy 2, WAL mode (readers such as ``stickyctl status`` never
block a capture), foreign keys on, ``synchronous=FULL`` (a committed row survives
a power cut) and a busy timeout, so the agent and ``stickyctl`` can share it.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import shutil
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, event, func, select, text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError, OperationalError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from agent.errors import DuplicateImageError, QueueError, QueueFullError
from agent.queue.schema import (
    MIGRATIONS,
    SCHEMA_VERSION,
    TRANSITIONS,
    AgentState,
    CaptureAttempt,
    Image,
    ImageState,
    utcnow,
)

log = logging.getLogger(__name__)

BUSY_TIMEOUT_MS = 15_000
SQLITE_FULL = 13
SQLITE_IOERR = 10
#: Below this much free space an SQLite I/O error (e.g. SQLITE_IOERR_SHMSIZE) means "disk full".
FULL_DISK_BYTES = 1_000_000


def is_disk_full(error: BaseException, path: Path) -> bool:
    """Given an sqlite3 error from the database at ``path``, return True if it means the disk
    (or the database's page limit) is full: SQLITE_FULL, or an I/O error on a full disk."""
    code = getattr(error, "sqlite_errorcode", None)
    if code is None:
        return "database or disk is full" in str(error)
    if code & 0xFF == SQLITE_FULL:
        return True
    if code & 0xFF == SQLITE_IOERR:
        try:
            return shutil.disk_usage(path.parent).free < FULL_DISK_BYTES
        except OSError:
            return False
    return False


def _queue_error(what: str, error: BaseException, path: Path) -> QueueError:
    if is_disk_full(error, path):
        return QueueFullError(
            f"{what} ({path}): the disk is full ({error}); the agent keeps going and writes "
            "again by itself when space returns"
        )
    return QueueError(f"{what} ({path}): {error}")


@dataclass(frozen=True)
class StateTotals:
    count: int
    bytes: int


def _on_connect(dbapi_conn: sqlite3.Connection, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    cur.execute("PRAGMA foreign_keys = ON")
    cur.execute("PRAGMA synchronous = FULL")
    cur.close()


class Queue:
    """The local queue of images, annotations and capture attempts in one SQLite file."""

    def __init__(self, path: Path, *, create: bool = True) -> None:
        """Given the database path, open (and if needed create and migrate) the queue.

        Raise QueueError if the file is not a database, is of a newer schema than
        this agent, or cannot be created (``create=False`` refuses a missing file).
        """
        self.path = path
        if not path.exists():
            if not create:
                raise QueueError(f"no queue database at {path} (has the agent run yet?)")
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise QueueError(f"cannot create the queue folder {path.parent}: {e}") from e
        self.engine: Engine = create_engine(f"sqlite:///{path}", future=True)
        event.listen(self.engine, "connect", _on_connect)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        #: Facts :meth:`publish` could not write (disk full), kept in memory until it can.
        self._unwritten: dict[str, str | None] = {}
        self._unwritten_lock = threading.Lock()
        try:
            self._migrate()
        except sqlite3.DatabaseError as e:
            self.engine.dispose()
            raise _queue_error("the queue database is unusable", e, path) from e
        except SQLAlchemyError as e:
            self.engine.dispose()
            raise _queue_error("the queue database is unusable", getattr(e, "orig", e), path) from e

    def _migrate(self) -> None:
        with self.engine.connect() as conn:
            mode = conn.exec_driver_sql("PRAGMA journal_mode = WAL").scalar()
            if mode != "wal":
                raise QueueError(f"cannot put {self.path} in WAL mode (got {mode!r})")
            version = self._check_version(conn)
            if version == SCHEMA_VERSION:
                return
            # Several processes may open a new queue at once: migrate under the write lock,
            # re-reading the version once we hold it.
            conn.exec_driver_sql("BEGIN IMMEDIATE")
            try:
                version = self._check_version(conn)
                for target in range(version + 1, SCHEMA_VERSION + 1):
                    for statement in MIGRATIONS[target - 1]:
                        conn.exec_driver_sql(statement)
                    conn.exec_driver_sql(f"PRAGMA user_version = {target}")
                conn.exec_driver_sql("COMMIT")
            except BaseException:
                conn.exec_driver_sql("ROLLBACK")
                raise

    def _check_version(self, conn: Any) -> int:
        version = int(conn.exec_driver_sql("PRAGMA user_version").scalar() or 0)
        if version > SCHEMA_VERSION:
            raise QueueError(
                f"the queue database {self.path} has schema version {version}, newer than "
                f"this agent's {SCHEMA_VERSION}: upgrade sticky-agent, do not delete the file"
            )
        return version

    @property
    def schema_version(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.exec_driver_sql("PRAGMA user_version").scalar() or 0)

    def close(self) -> None:
        self.engine.dispose()

    @contextmanager
    def session(self) -> Iterator[Session]:
        """Yield a session in a transaction; commit on success, roll back on error.

        Raise QueueFullError if the disk is full, QueueError for other database errors
        (locked past the busy timeout, I/O error).
        """
        try:
            with self._sessions.begin() as s:
                yield s
        except IntegrityError:
            raise
        except OperationalError as e:
            raise _queue_error("queue database error", e.orig or e, self.path) from e

    # -- images -------------------------------------------------------------------------

    def add_image(
        self,
        *,
        device: str,
        when: dt.datetime,
        path: str,
        md5: str,
        size: int,
        width: int,
        height: int,
        metadata: dict[str, Any],
        manual: bool,
        state: ImageState = ImageState.CAPTURED,
        last_error: str | None = None,
    ) -> Image:
        """Insert one image row and return it. Raise QueueError if (device, datetime) or path exists."""
        row = Image(
            device=device,
            datetime=when,
            path=path,
            md5=md5,
            size=size,
            width=width,
            height=height,
            image_metadata=json.dumps(metadata, sort_keys=True),
            manual=manual,
            state=state.value,
            last_error=last_error,
        )
        try:
            with self.session() as s:
                s.add(row)
        except IntegrityError as e:
            raise DuplicateImageError(
                f"the queue already has an image {device} at {when:%Y-%m-%d %H:%M:%S} or at {path}"
            ) from e
        return row

    def image_at(self, device: str, when: dt.datetime) -> Image | None:
        with self.session() as s:
            return s.scalar(select(Image).where(Image.device == device, Image.datetime == when))

    def latest_image_time(self, device: str) -> dt.datetime | None:
        with self.session() as s:
            return s.scalar(select(func.max(Image.datetime)).where(Image.device == device))

    def images(self, limit: int = 20, state: ImageState | None = None) -> list[Image]:
        """Return the most recent images, newest first, optionally of one state."""
        q = select(Image).order_by(Image.datetime.desc()).limit(limit)
        if state is not None:
            q = q.where(Image.state == state.value)
        with self.session() as s:
            return list(s.scalars(q))

    def image_paths(self) -> dict[str, tuple[int, str]]:
        """Return ``{relative path: (id, state)}`` for every row."""
        with self.session() as s:
            return {p: (i, st) for i, p, st in s.execute(select(Image.id, Image.path, Image.state))}

    def set_state(self, image_id: int, new: ImageState, error: str | None = None) -> None:
        """Move an image to ``new``. Raise QueueError if the state machine forbids that move."""
        with self.session() as s:
            row = s.get(Image, image_id)
            if row is None:
                raise QueueError(f"no image with id {image_id}")
            old = ImageState(row.state)
            if new != old and new not in TRANSITIONS[old]:
                raise QueueError(f"image {row.path}: {old} -> {new} is not an allowed transition")
            row.state, row.updated_at = new.value, utcnow()
            if error is not None:
                row.last_error = error

    def totals_by_state(self) -> dict[str, StateTotals]:
        """Return the count and bytes of images in each state (states with none are left out)."""
        q = select(Image.state, func.count(), func.coalesce(func.sum(Image.size), 0)).group_by(Image.state)
        with self.session() as s:
            return {st: StateTotals(int(n), int(b)) for st, n, b in s.execute(q)}

    def record_attempt(
        self,
        *,
        started_at: dt.datetime,
        outcome: str,
        manual: bool,
        image_id: int | None = None,
        error: str | None = None,
    ) -> None:
        with self.session() as s:
            s.add(
                CaptureAttempt(
                    started_at=started_at,
                    finished_at=utcnow(),
                    outcome=outcome,
                    manual=manual,
                    image_id=image_id,
                    error=error,
                )
            )

    def attempts(self, limit: int = 10, outcome: str | None = None) -> list[CaptureAttempt]:
        """Return the latest capture attempts, newest first (only ``outcome`` ones if given)."""
        q = select(CaptureAttempt).order_by(CaptureAttempt.id.desc()).limit(limit)
        if outcome is not None:
            q = q.where(CaptureAttempt.outcome == outcome)
        with self.session() as s:
            return list(s.scalars(q))

    def prune_attempts(self, keep: int) -> int:
        """Delete all but the newest ``keep`` capture attempts; return how many went."""
        with self.session() as s:
            cutoff = s.scalar(
                select(CaptureAttempt.id).order_by(CaptureAttempt.id.desc()).offset(keep).limit(1)
            )
            if cutoff is None:
                return 0
            result = s.execute(text("DELETE FROM capture_attempts WHERE id <= :c"), {"c": cutoff})
            return int(getattr(result, "rowcount", 0) or 0)

    # -- agent state ---------------------------------------------------------------------

    def publish(self, **values: str | None) -> bool:
        """Store small key/value facts for status (``None`` removes a key); return True if written.

        On a full disk the facts are kept in memory (:meth:`published` shows them) and written
        with the next publish that succeeds: a heartbeat must never stop the agent. Raise
        QueueError for other database errors.
        """
        with self._unwritten_lock:
            pending = {**self._unwritten, **values}
            try:
                with self.session() as s:
                    for key, value in pending.items():
                        if value is None:
                            s.execute(text("DELETE FROM agent_state WHERE key = :k"), {"k": key})
                        else:
                            s.merge(AgentState(key=key, value=value, updated_at=utcnow()))
            except QueueFullError as e:
                if not self._unwritten:
                    log.error("cannot write status facts (heartbeat, ...): %s; keeping them in memory", e)
                self._unwritten = pending
                return False
            if self._unwritten:
                log.warning("the queue database is writable again: status facts written")
                self._unwritten = {}
            return True

    def published(self) -> dict[str, str]:
        """Return the published facts, including those a full disk kept in memory."""
        with self.session() as s:
            stored = {k: v for k, v in s.execute(select(AgentState.key, AgentState.value))}
        with self._unwritten_lock:
            for key, value in self._unwritten.items():
                if value is None:
                    stored.pop(key, None)
                else:
                    stored[key] = value
        return stored
