"""A power-cut simulator: journal a workload's file operations and queue commits, then rebuild
the data folder as a power cut at any point of that journal would have left it on disk.

Why not SIGKILL: a killed process's writes are in the page cache and survive; a power cut
keeps only what was flushed. Why not dm-flakey: it needs the kernel's device-mapper, which
this sandbox's kernel lacks (no /dev/mapper/control, no module loading).

How it works (in-process, no LD_PRELOAD):

* While :class:`Journal` is active, ``os.open/write/fsync/close/replace/rename/unlink/mkdir``
  are wrapped. Operations on paths inside the data folder (except the queue database and the
  lock files) are recorded, in order, as events.
* The queue is SQLite, whose I/O is in C: it is recorded through its own commits. Before each
  commit (SQLAlchemy's ``commit`` event) and before each recorded file event, if the database
  changed (``PRAGMA data_version``), a consistent copy of it (backup API) is recorded. With
  ``synchronous=FULL`` a commit is durable once it returns, so at a cut the database holds
  exactly the commits recorded before it; a cut "inside" a commit keeps the state before it.
* :func:`durable_state` replays a prefix of the journal on a model of the disk that keeps only
  what was made durable: a file's data only as of its last ``fsync``, a directory's entries
  (new files, renames, removals, new sub-folders) only as of that directory's last ``fsync``.
  A file whose entry is durable but whose data never was is rebuilt empty (the worst case).
  Everything on disk when the journal started counts as durable.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Engine

WRAPPED = ("open", "write", "fsync", "close", "replace", "rename", "unlink", "mkdir")
#: Root-level names that are not part of the file model (SQLite's own files, lock files).
UNTRACKED_ROOT = ("queue.sqlite", ".capture.lock", ".agent.lock")


@dataclass(frozen=True)
class Ev:
    op: str  # create | trunc | write | fsync | fsync_dir | rename | unlink | mkdir | db
    path: str = ""
    other: str = ""
    data: bytes = b""


class _Dir:
    """Marker for a directory entry."""


DIR = _Dir()


@dataclass
class _Inode:
    data: bytearray = field(default_factory=bytearray)
    durable: bytes | None = None


class Journal:
    """Record the durable-relevant operations of a workload on ``data_dir`` (see module doc)."""

    def __init__(self, data_dir: Path, db_path: Path) -> None:
        self.root = os.path.realpath(data_dir)
        self.db_path = db_path
        self.events: list[Ev] = []
        self.initial_files: dict[str, bytes] = {}
        self.initial_dirs: set[str] = set()
        self._fds: dict[int, str] = {}
        self._lock = threading.RLock()
        self._observer: sqlite3.Connection | None = None
        self._db_version: int | None = None
        self.initial_db = b""

    # -- what is tracked -----------------------------------------------------------------

    def _rel(self, path: Any) -> str | None:
        try:
            full = os.path.realpath(os.fspath(path))
        except TypeError:
            return None
        if full != self.root and not full.startswith(self.root + os.sep):
            return None
        rel = os.path.relpath(full, self.root)
        if rel == ".":
            return ""
        if os.sep not in rel and rel.startswith(UNTRACKED_ROOT):
            return None
        return rel

    def _snapshot_db(self, force: bool = False) -> None:
        assert self._observer is not None
        version = self._observer.execute("PRAGMA data_version").fetchone()[0]
        if not force and version == self._db_version:
            return
        self._db_version = version
        self.events.append(Ev("db", data=self._copy_db()))

    def _copy_db(self) -> bytes:
        """Return a consistent copy of the committed database, as a rollback-journal file image
        (an in-memory database cannot carry the WAL flag; the queue sets WAL again on open)."""
        assert self._observer is not None
        mem = sqlite3.connect(":memory:")
        self._observer.backup(mem)
        data = bytearray(mem.serialize())
        mem.close()
        data[18] = data[19] = 1  # file format: legacy (rollback journal), not WAL
        return bytes(data)

    def _record(self, ev: Ev) -> None:
        self._snapshot_db()
        self.events.append(ev)

    # -- activation ----------------------------------------------------------------------

    @contextlib.contextmanager
    def active(self, engine: Engine) -> Iterator[Journal]:
        """Record while the block runs. ``engine`` is the queue's (its commits are recorded)."""
        for dirpath, dirnames, filenames in os.walk(self.root):
            rel_dir = os.path.relpath(dirpath, self.root)
            if rel_dir != ".":
                self.initial_dirs.add(rel_dir)
            for name in filenames:
                rel = os.path.normpath(os.path.join(rel_dir, name))
                if self._rel(os.path.join(dirpath, name)) is not None:
                    self.initial_files[rel] = Path(dirpath, name).read_bytes()
            dirnames.sort()
        self._observer = sqlite3.connect(self.db_path, check_same_thread=False)
        self.initial_db = self._copy_db()
        self._db_version = self._observer.execute("PRAGMA data_version").fetchone()[0]

        def before_commit(_conn: Any) -> None:
            with self._lock:
                self._snapshot_db()

        real = {
            name: getattr(os, name)
            for name in ("open", "write", "fsync", "close", "replace", "rename", "unlink", "mkdir")
        }

        def _open(path: Any, flags: int, mode: int = 0o777, *, dir_fd: Any = None) -> int:
            fd = real["open"](path, flags, mode, dir_fd=dir_fd)
            rel = self._rel(path) if dir_fd is None else None
            if rel is not None:
                with self._lock:
                    self._fds[fd] = rel
                    if flags & os.O_CREAT:
                        self._record(Ev("create", rel))
                    if flags & os.O_TRUNC:
                        self._record(Ev("trunc", rel))
            return fd

        def _write(fd: int, data: Any) -> int:
            n = real["write"](fd, data)
            with self._lock:
                rel = self._fds.get(fd)
                if rel is not None:
                    self._record(Ev("write", rel, data=bytes(data[:n])))
            return n

        def _fsync(fd: int) -> None:
            real["fsync"](fd)
            with self._lock:
                rel = self._fds.get(fd)
                if rel is not None:
                    is_dir = rel == "" or os.path.isdir(os.path.join(self.root, rel))
                    self._record(Ev("fsync_dir" if is_dir else "fsync", rel))

        def _close(fd: int) -> None:
            with self._lock:
                self._fds.pop(fd, None)
            real["close"](fd)

        def _move(name: str) -> Any:
            def move(src: Any, dst: Any, **kw: Any) -> None:
                real[name](src, dst, **kw)
                a, b = self._rel(src), self._rel(dst)
                if a is not None and b is not None:
                    with self._lock:
                        self._record(Ev("rename", a, b))

            return move

        def _unlink(path: Any, **kw: Any) -> None:
            real["unlink"](path, **kw)
            rel = self._rel(path)
            if rel is not None:
                with self._lock:
                    self._record(Ev("unlink", rel))

        def _mkdir(path: Any, mode: int = 0o777, **kw: Any) -> None:
            real["mkdir"](path, mode, **kw)
            rel = self._rel(path)
            if rel is not None:
                with self._lock:
                    self._record(Ev("mkdir", rel))

        fakes = {
            "open": _open,
            "write": _write,
            "fsync": _fsync,
            "close": _close,
            "replace": _move("replace"),
            "rename": _move("rename"),
            "unlink": _unlink,
            "mkdir": _mkdir,
        }
        event.listen(engine, "commit", before_commit)
        for name, fake in fakes.items():
            setattr(os, name, fake)
        try:
            yield self
        finally:
            for name, fn in real.items():
                setattr(os, name, fn)
            event.remove(engine, "commit", before_commit)
            with self._lock:
                self._snapshot_db()
            self._observer.close()


class DiskModel:
    """What a disk holds durably, replaying journal events (see module doc)."""

    def __init__(self, journal: Journal) -> None:
        self.cur: dict[str, dict[str, _Inode | _Dir]] = {"": {}}
        self.dur: dict[str, dict[str, _Inode | _Dir]] = {"": {}}
        for d in sorted(journal.initial_dirs, key=lambda p: p.count(os.sep)):
            parent, name = os.path.split(d)
            self.cur.setdefault(d, {})
            self.dur.setdefault(d, {})
            self.cur[parent][name] = DIR
            self.dur[parent][name] = DIR
        for rel, data in journal.initial_files.items():
            parent, name = os.path.split(rel)
            inode = _Inode(bytearray(data), bytes(data))
            self.cur[parent][name] = inode
            self.dur[parent][name] = inode
        self.db = journal.initial_db

    def _inode(self, rel: str) -> _Inode | None:
        parent, name = os.path.split(rel)
        entry = self.cur.get(parent, {}).get(name)
        return entry if isinstance(entry, _Inode) else None

    def apply(self, ev: Ev) -> None:
        parent, name = os.path.split(ev.path)
        if ev.op == "db":
            self.db = ev.data
        elif ev.op == "create":
            if name not in self.cur.setdefault(parent, {}):
                self.cur[parent][name] = _Inode()
        elif ev.op == "trunc":
            inode = self._inode(ev.path)
            if inode is not None:
                inode.data = bytearray()
        elif ev.op == "write":
            inode = self._inode(ev.path)
            if inode is not None:
                inode.data += ev.data
        elif ev.op == "fsync":
            inode = self._inode(ev.path)
            if inode is not None:
                inode.durable = bytes(inode.data)
        elif ev.op == "fsync_dir":
            self.dur[ev.path] = dict(self.cur.get(ev.path, {}))
        elif ev.op == "rename":
            entry = self.cur.get(parent, {}).pop(name, None)
            if entry is not None:
                dparent, dname = os.path.split(ev.other)
                self.cur.setdefault(dparent, {})[dname] = entry
        elif ev.op == "unlink":
            self.cur.get(parent, {}).pop(name, None)
        elif ev.op == "mkdir":
            self.cur.setdefault(parent, {})[name] = DIR
            self.cur.setdefault(ev.path, {})

    def materialize(self, target: Path, db_name: str = "queue.sqlite") -> None:
        """Write the durable state into the empty folder ``target`` (database included)."""

        def walk(rel: str) -> None:
            for name, entry in self.dur.get(rel, {}).items():
                child = os.path.join(rel, name) if rel else name
                if isinstance(entry, _Dir):
                    (target / child).mkdir()
                    walk(child)
                else:
                    (target / child).write_bytes(entry.durable or b"")

        target.mkdir(parents=True, exist_ok=True)
        walk("")
        mem = sqlite3.connect(":memory:")
        mem.deserialize(self.db)
        disk = sqlite3.connect(target / db_name)
        mem.backup(disk)
        disk.close()
        mem.close()


def durable_states(journal: Journal, cuts: list[int]) -> Iterator[tuple[int, DiskModel]]:
    """Yield ``(cut, model)`` for each cut (a number of events kept), in increasing order; the
    model is shared and advanced between yields: materialize it before asking for the next."""
    model = DiskModel(journal)
    done = 0
    for cut in sorted(set(cuts)):
        for ev in journal.events[done:cut]:
            model.apply(ev)
        done = cut
        yield cut, model
