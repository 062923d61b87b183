"""The queue's tables and the versioned schema migrations.

The state machines live in :mod:`agent.queue.states`.

Schema versions live in ``PRAGMA user_version``; :data:`MIGRATIONS` lists, for
each version, the SQL that brings the previous version to it. A database newer
than this agent is refused rather than guessed at.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import (
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from agent.queue.states import TRANSITIONS, WAITING_STATES, AnnotationState, ImageState

__all__ = ["TRANSITIONS", "WAITING_STATES", "AnnotationState", "ImageState"]


class UTCDateTime(TypeDecorator[dt.datetime]):
    """Stores aware datetimes as naive UTC text; returns them aware (UTC)."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the queue")
        return value.astimezone(dt.UTC).replace(tzinfo=None)

    def process_result_value(self, value: Any, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        assert isinstance(value, dt.datetime)
        return value.replace(tzinfo=dt.UTC)


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class Base(DeclarativeBase):
    pass


class Image(Base):
    """One original image, its fingerprint and where it stands."""

    __tablename__ = "images"
    __table_args__ = (
        UniqueConstraint("device", "datetime", name="uq_images_device_datetime"),
        Index("ix_images_state_datetime", "state", "datetime"),
        # covering indexes for status: totals by state, latest problems
        Index("ix_images_state_size", "state", "size"),
        Index("ix_images_state_updated", "state", "updated_at"),
        Index("ix_images_datetime", "datetime"),  # newest-first listings
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    device: Mapped[str] = mapped_column(String(8))
    datetime: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    #: Relative to the data folder, so the folder can move.
    path: Mapped[str] = mapped_column(Text, unique=True)
    md5: Mapped[str] = mapped_column(String(32))
    size: Mapped[int] = mapped_column(Integer)
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    #: JSON: the UserComment record's values, EXIF model, exposure.
    image_metadata: Mapped[str] = mapped_column("metadata", Text)
    manual: Mapped[bool] = mapped_column(Integer, default=0)
    state: Mapped[str] = mapped_column(String(16), default=ImageState.CAPTURED.value)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class Annotation(Base):
    """The insect outlines a detector found on one image (one row per algorithm version)."""

    __tablename__ = "annotations"
    __table_args__ = (
        UniqueConstraint("image_id", "algo_name", "algo_version", name="uq_annotations_triple"),
        Index("ix_annotations_state", "state"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id", ondelete="RESTRICT"))
    algo_name: Mapped[str] = mapped_column(String(64))
    algo_version: Mapped[str] = mapped_column(String(46))
    json: Mapped[str] = mapped_column(Text)
    n_objects: Mapped[int] = mapped_column(Integer, default=0)
    #: Insects not on the previous capture's card (None: no earlier capture to compare with yet).
    n_new: Mapped[int | None] = mapped_column(Integer, nullable=True, default=None)
    #: 1 if the card was replaced since the previous capture (all its insects are new).
    new_card: Mapped[int] = mapped_column(Integer, default=0)
    state: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class CaptureAttempt(Base):
    """One scheduled or manual capture attempt and its outcome (``ok``, ``failed``, ``clock``)."""

    __tablename__ = "capture_attempts"
    __table_args__ = (Index("ix_capture_attempts_started", "started_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    started_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    finished_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    outcome: Mapped[str] = mapped_column(String(16))
    manual: Mapped[bool] = mapped_column(Integer, default=0)
    image_id: Mapped[int | None] = mapped_column(ForeignKey("images.id"), nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)


class AgentState(Base):
    """Small facts the running agent publishes for ``stickyctl status`` (next capture, pid...)."""

    __tablename__ = "agent_state"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


# Version N's statements take a database at version N-1 to version N. Append, never edit.
MIGRATIONS: list[list[str]] = [
    [
        """CREATE TABLE images (
            id INTEGER NOT NULL PRIMARY KEY,
            device VARCHAR(8) NOT NULL,
            datetime DATETIME NOT NULL,
            path TEXT NOT NULL UNIQUE,
            md5 VARCHAR(32) NOT NULL,
            size INTEGER NOT NULL,
            width INTEGER NOT NULL,
            height INTEGER NOT NULL,
            metadata TEXT NOT NULL,
            manual INTEGER NOT NULL DEFAULT 0,
            state VARCHAR(16) NOT NULL DEFAULT 'captured',
            attempts INTEGER NOT NULL DEFAULT 0,
            last_error TEXT,
            created_at DATETIME NOT NULL,
            updated_at DATETIME NOT NULL,
            CONSTRAINT uq_images_device_datetime UNIQUE (device, datetime)
        )""",
        "CREATE INDEX ix_images_state_datetime ON images (state, datetime)",
        """CREATE TABLE annotations (
            id INTEGER NOT NULL PRIMARY KEY,
            image_id INTEGER NOT NULL REFERENCES images (id) ON DELETE RESTRICT,
            algo_name VARCHAR(64) NOT NULL,
            algo_version VARCHAR(46) NOT NULL,
            json TEXT NOT NULL,
            n_objects INTEGER NOT NULL DEFAULT 0,
            state VARCHAR(16) NOT NULL DEFAULT 'pending',
            attempts INTEGER NOT NULL DEFAULT 0,
            last_error TEXT,
            created_at DATETIME NOT NULL,
            updated_at DATETIME NOT NULL,
            CONSTRAINT uq_annotations_triple UNIQUE (image_id, algo_name, algo_version)
        )""",
        "CREATE INDEX ix_annotations_state ON annotations (state)",
        """CREATE TABLE capture_attempts (
            id INTEGER NOT NULL PRIMARY KEY,
            started_at DATETIME NOT NULL,
            finished_at DATETIME NOT NULL,
            outcome VARCHAR(16) NOT NULL,
            manual INTEGER NOT NULL DEFAULT 0,
            image_id INTEGER REFERENCES images (id),
            error TEXT
        )""",
        "CREATE INDEX ix_capture_attempts_started ON capture_attempts (started_at)",
        """CREATE TABLE agent_state (
            key VARCHAR(64) NOT NULL PRIMARY KEY,
            value TEXT NOT NULL,
            updated_at DATETIME NOT NULL
        )""",
    ],
    # 2: status reads counts and bytes by state from an index, not the whole table
    [
        "CREATE INDEX ix_images_state_size ON images (state, size)",
        "CREATE INDEX ix_images_state_updated ON images (state, updated_at)",
    ],
    # 3: new insects per capture (matched against the previous capture's), and card changes
    [
        "ALTER TABLE annotations ADD COLUMN n_new INTEGER",
        "ALTER TABLE annotations ADD COLUMN new_card INTEGER NOT NULL DEFAULT 0",
    ],
    # 4: newest-first listings (queue ls, the web page, export) read the index instead of
    # sorting the whole table in memory (a LIMIT sort holds every row it returns)
    ["CREATE INDEX ix_images_datetime ON images (datetime)"],
]
SCHEMA_VERSION = len(MIGRATIONS)
