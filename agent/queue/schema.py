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

from agent.queue.states import (
    DELIVERY_TRANSITIONS,
    TRANSITIONS,
    WAITING_STATES,
    AnnotationState,
    DeliveryState,
    ImageState,
)

__all__ = [
    "DELIVERY_TRANSITIONS",
    "TRANSITIONS",
    "WAITING_STATES",
    "AnnotationState",
    "DeliveryState",
    "ImageState",
]


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
    #: Unused since schema 5 (where it stands with each sink is in ``annotation_deliveries``).
    state: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class Delivery(Base):
    """Where one image stands with one sink (:class:`DeliveryState`)."""

    __tablename__ = "deliveries"
    __table_args__ = (
        UniqueConstraint("image_id", "sink", name="uq_deliveries_image_sink"),
        Index("ix_deliveries_sink_state", "sink", "state"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id", ondelete="RESTRICT"))
    sink: Mapped[str] = mapped_column(String(32))
    state: Mapped[str] = mapped_column(String(16), default=DeliveryState.WAITING.value)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    #: The sink's own id of the image (Sticky Pi image id, Tator media id, lake file id).
    remote_id: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    verified_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)


class AnnotationDelivery(Base):
    """Where one annotation row stands with one sink (:class:`AnnotationState`)."""

    __tablename__ = "annotation_deliveries"
    __table_args__ = (
        UniqueConstraint("annotation_id", "sink", name="uq_annotation_deliveries"),
        Index("ix_annotation_deliveries_sink_state", "sink", "state"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    annotation_id: Mapped[int] = mapped_column(ForeignKey("annotations.id", ondelete="RESTRICT"))
    sink: Mapped[str] = mapped_column(String(32))
    state: Mapped[str] = mapped_column(String(16), default=AnnotationState.PENDING.value)
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
    # 5: several sinks. An image's file lifecycle stays in images.state; where it stands with
    # each sink moves to deliveries (and annotations' to annotation_deliveries). Today's rows
    # become deliveries to the sink named "stickypi" (the legacy [sync] table's name).
    [
        """CREATE TABLE deliveries (
            id INTEGER NOT NULL PRIMARY KEY,
            image_id INTEGER NOT NULL REFERENCES images (id) ON DELETE RESTRICT,
            sink VARCHAR(32) NOT NULL,
            state VARCHAR(16) NOT NULL DEFAULT 'waiting',
            attempts INTEGER NOT NULL DEFAULT 0,
            last_error TEXT,
            remote_id TEXT,
            created_at DATETIME NOT NULL,
            updated_at DATETIME NOT NULL,
            verified_at DATETIME,
            CONSTRAINT uq_deliveries_image_sink UNIQUE (image_id, sink)
        )""",
        "CREATE INDEX ix_deliveries_sink_state ON deliveries (sink, state)",
        """CREATE TABLE annotation_deliveries (
            id INTEGER NOT NULL PRIMARY KEY,
            annotation_id INTEGER NOT NULL REFERENCES annotations (id) ON DELETE RESTRICT,
            sink VARCHAR(32) NOT NULL,
            state VARCHAR(16) NOT NULL DEFAULT 'pending',
            attempts INTEGER NOT NULL DEFAULT 0,
            last_error TEXT,
            created_at DATETIME NOT NULL,
            updated_at DATETIME NOT NULL,
            CONSTRAINT uq_annotation_deliveries UNIQUE (annotation_id, sink)
        )""",
        "CREATE INDEX ix_annotation_deliveries_sink_state ON annotation_deliveries (sink, state)",
        # Images that reached the server, or are on their way: their delivery carries the state.
        # (Captured-only, quarantined, missing and discarded images get theirs when a sink first
        # looks at them: a capture-only trap may never have had this sink.)
        """INSERT INTO deliveries (image_id, sink, state, attempts, last_error, created_at,
                                   updated_at, verified_at)
           SELECT id, 'stickypi',
                  CASE state WHEN 'evicted' THEN 'verified' ELSE state END,
                  attempts,
                  CASE WHEN state IN ('failed', 'conflict', 'uploaded') THEN last_error END,
                  created_at, updated_at,
                  CASE WHEN state IN ('verified', 'evicted') THEN updated_at END
           FROM images WHERE state IN ('uploaded', 'verified', 'evicted', 'failed', 'conflict')""",
        """INSERT INTO deliveries (image_id, sink, state, attempts, last_error, created_at, updated_at)
           SELECT id, 'stickypi', 'waiting', attempts, NULL, created_at, updated_at
           FROM images WHERE state = 'captured' AND attempts > 0""",
        """UPDATE images SET state = 'captured', attempts = 0
           WHERE state IN ('uploaded', 'verified', 'failed', 'conflict')""",
        """UPDATE images SET last_error = NULL
           WHERE state = 'captured' AND id IN (SELECT image_id FROM deliveries)""",
        """INSERT INTO annotation_deliveries (annotation_id, sink, state, attempts, last_error,
                                              created_at, updated_at)
           SELECT id, 'stickypi', state, attempts, last_error, created_at, updated_at
           FROM annotations WHERE state IN ('uploaded', 'failed') OR attempts > 0""",
        # what the one sync worker published is now the stickypi sink's (sync_x -> sink.stickypi.x)
        """UPDATE agent_state SET key = 'sink.stickypi.' || substr(key, 6)
           WHERE key IN ('sync_reachable', 'sync_reachable_since', 'sync_error', 'sync_checked',
                         'sync_last', 'sync_failed_retry')""",
    ],
]
SCHEMA_VERSION = len(MIGRATIONS)
