"""The devserver's state: a SQLite database and image files under one data folder.

Layout of ``data_dir``::

    devserver.sqlite3                     users, images, uid_annotations
    secret.key                            HMAC key of tokens and download URLs (0600, made once)
    files/<kind>/<device>/<file name>     kind: image, thumbnail, thumbnail-mini

Every operation that the real server answers with a 500 raises :class:`StoreError` here; the
WSGI layer (:mod:`.app`) turns it into a 500 with an HTML body. Rows come out JSON-ready, with the
spec's fields in the spec's order and datetimes as ``YYYY-MM-DDTHH:MM:SSZ``, and with the value
shapes the real server (MariaDB behind SQLAlchemy) gives, as measured against it:

* stored image rows (``/get_images``, ``/get_image_series``: raw SQL) have ``but`` as ``1``/``0``,
  ``temp``/``hum``/``lum`` as a MariaDB ``FLOAT`` reads back (single precision, 6 significant
  digits: ``21.9``, not ``21.899999618530273``), ``alt``/``bat`` as small integers and
  ``device_version`` ``"1.0.0"`` (the column's default) for a 2020 image that has none;
* the ``/delete_images`` answer (ORM rows) has ``but`` as ``true``/``false`` and no ``url``;
* the upload answer carries the parser's values, not the stored ones (see :meth:`Store.put_image`);
* annotation rows have ``api_user_id: null``: the real server does not record who put them;
* device ids compare case-insensitively, as MariaDB's default collation does: ``5C173FF2`` finds
  the stored ``5c173ff2`` image and a ``5C173FF2`` upload of the same datetime is a duplicate.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import io
import json
import os
import re
import secrets
import sqlite3
import threading
from pathlib import Path
from typing import Any

from PIL import Image

from agent.devserver.parser import SpecError, parse_image
from agent.devserver.signing import Signer, load_secret
from agent.devserver.values import (
    StoreError,
    db_datetime,
    decimal6_column,
    float_column,
    format_datetime,
    key_datetime,
    out_datetime,
    parse_datetime,
    smallint_column,
)

__all__ = ["Store", "StoreError", "format_datetime", "key_datetime", "make_thumbnails", "parse_datetime"]

DB_FILE = "devserver.sqlite3"
SECRET_FILE = "secret.key"
OBJECT_KINDS = ("image", "thumbnail", "thumbnail-mini")
THUMBNAIL_SIZE = (512, 384)
THUMBNAIL_MINI_SIZE = (128, 96)
#: What the rows' ``api_version`` says: the version of the *server's* sticky-pi-api library (not
#: the agent's), its column default ``"1.0.0"`` (the real column is 8 characters).
API_VERSION = "1.0.0"
MAX_ALGO_NAME = 64
MAX_ALGO_VERSION = 46

IMAGE_FIELDS = (
    "id", "device", "datetime", "md5", "device_version", "width", "height", "lat", "lng", "alt",
    "temp", "hum", "lum", "bat", "but", "datetime_created", "api_version", "api_user_id",
)  # fmt: skip
ANNOTATION_FIELDS = (
    "id", "parent_image_id", "algo_name", "algo_version", "n_objects", "json",
    "datetime_created", "api_version", "api_user_id",
)  # fmt: skip

_SCHEMA = """
CREATE TABLE IF NOT EXISTS users (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE);
CREATE TABLE IF NOT EXISTS images (
    id INTEGER PRIMARY KEY, device TEXT NOT NULL, datetime TEXT NOT NULL, md5 TEXT NOT NULL,
    device_version TEXT, width INTEGER, height INTEGER, lat REAL, lng REAL, alt INTEGER,
    temp REAL, hum REAL, lum REAL, bat INTEGER, but INTEGER, datetime_created TEXT NOT NULL,
    api_version TEXT, api_user_id INTEGER, UNIQUE (device, datetime));
CREATE TABLE IF NOT EXISTS uid_annotations (
    id INTEGER PRIMARY KEY,
    parent_image_id INTEGER NOT NULL REFERENCES images (id) ON DELETE CASCADE,
    algo_name TEXT NOT NULL, algo_version TEXT NOT NULL, n_objects INTEGER NOT NULL,
    json TEXT NOT NULL, datetime_created TEXT NOT NULL, api_version TEXT, api_user_id INTEGER,
    UNIQUE (parent_image_id, algo_name, algo_version));
"""
# MariaDB compares device ids case-insensitively; this index (made on old data folders too)
# makes a ``(device, datetime)`` that differs only in case a duplicate here as well.
_CASE_INSENSITIVE_KEY = (
    "CREATE UNIQUE INDEX IF NOT EXISTS images_device_nocase ON images (device COLLATE NOCASE, datetime)"
)
#: The ``device_version`` column's default, stored for a 2020 image that has none.
DEFAULT_DEVICE_VERSION = "1.0.0"
_KEY_RE = re.compile(r"(image|thumbnail|thumbnail-mini)/([0-9a-fA-F]{8})/([0-9a-fA-F]{8}\.[0-9_-]{19}\.jpg)")


def make_thumbnails(blob: bytes) -> tuple[bytes, bytes]:
    """Given a JPEG's bytes, return the JPEG bytes of its 512x384 and 128x96 thumbnails.

    Both keep the aspect ratio (Pillow ``Image.thumbnail``). Raise :class:`StoreError` if the
    image cannot be decoded.
    """
    out = []
    try:
        with Image.open(io.BytesIO(blob)) as img:
            for size in (THUMBNAIL_SIZE, THUMBNAIL_MINI_SIZE):
                img.thumbnail(size)
                buffer = io.BytesIO()
                img.save(buffer, format="JPEG")
                out.append(buffer.getvalue())
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise StoreError(f"cannot make thumbnails: {exc}") from None
    return out[0], out[1]


class Store:
    """The database and files of one devserver data folder; safe to share between threads."""

    def __init__(self, data_dir: Path) -> None:
        data_dir.mkdir(parents=True, exist_ok=True)
        self.data_dir = data_dir
        self.signer = Signer(load_secret(data_dir / SECRET_FILE))
        self._lock = threading.RLock()
        self._db = sqlite3.connect(data_dir / DB_FILE, check_same_thread=False, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        with self._lock:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA foreign_keys=ON")
            self._db.executescript(_SCHEMA)
            # an old data folder holding two case variants of one key keeps working without it
            with contextlib.suppress(sqlite3.IntegrityError):
                self._db.execute(_CASE_INSENSITIVE_KEY)

    def close(self) -> None:
        """Close the database."""
        with self._lock:
            self._db.close()

    def user_id(self, name: str) -> int:
        """Given a user name, return its numeric id, stable across restarts (made on first use)."""
        with self._lock:
            self._db.execute("INSERT OR IGNORE INTO users (name) VALUES (?)", (name,))
            row = self._db.execute("SELECT id FROM users WHERE name = ?", (name,)).fetchone()
        return int(row["id"])

    def _insert(self, table: str, values: dict[str, Any]) -> int:
        """Insert one row (committed at once); return its id. Raise sqlite3.IntegrityError."""
        marks = ", ".join("?" * len(values))
        with self._lock:
            cursor = self._db.execute(
                f"INSERT INTO {table} ({', '.join(values)}) VALUES ({marks})", tuple(values.values())
            )
        return int(cursor.lastrowid or 0)

    # -- files -------------------------------------------------------------------------------

    def object_path(self, key: str) -> Path | None:
        """Given an object key ``<kind>/<device>/<file name>``, return its file, None if absent."""
        if not _KEY_RE.fullmatch(key):
            return None
        path = self.data_dir / "files" / key
        return path if path.is_file() else None

    def _put_object(self, key: str, data: bytes) -> None:
        path = self.data_dir / "files" / key
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + f".{secrets.token_hex(4)}~")
        tmp.write_bytes(data)
        os.replace(tmp, path)

    # -- images ------------------------------------------------------------------------------

    def put_image(
        self, name: str, blob: bytes, md5: str | None, user_id: int, now: dt.datetime
    ) -> dict[str, Any]:
        """Given an upload (form field name, bytes, claimed md5 or None), store it; return its row.

        As the real server: check the md5, parse the name and EXIF, compute the thumbnails,
        write (overwrite) the three files, then insert the row, so a duplicate ``(device,
        datetime)`` (device compared case-insensitively) replaces the stored files before it is
        rejected. The returned row is the real server's answer: ``id`` None, no ``url``, and the
        parser's values rather than the stored ones (``alt: 81.7``, ``bat: 72.0``, ``temp:
        21.899999618530273``, ``device_version: null`` for a 2020 image). Raise
        :class:`StoreError` for any failure.
        """
        actual = hashlib.md5(blob).hexdigest()
        if md5 is not None and md5 != actual:
            raise StoreError(f"{name}: md5 {md5!r} given, {actual} received")
        try:
            parsed = parse_image(blob, name, strict=False)
        except SpecError as exc:
            raise StoreError(f"Wrong file name or metadata: {name}: {exc}") from None
        row: dict[str, Any] = {
            "id": None,
            "device": parsed["device"],
            "datetime": format_datetime(parsed["datetime"]),
            "md5": actual,
            "device_version": parsed["device_version"],
            "width": parsed["width"],
            "height": parsed["height"],
            "lat": parsed["lat"],
            "lng": parsed["lng"],
            "alt": parsed["alt"],
            "temp": parsed["temp"],
            "hum": parsed["hum"],
            "lum": parsed["lum"],
            "bat": None if parsed["bat"] is None else float(parsed["bat"]),  # read as a float
            "but": parsed["but"],
            "datetime_created": format_datetime(now),
            "api_version": API_VERSION,
            "api_user_id": user_id,
        }
        thumbnail, thumbnail_mini = make_thumbnails(blob)
        for kind, data in zip(OBJECT_KINDS, (blob, thumbnail, thumbnail_mini), strict=True):
            self._put_object(f"{kind}/{parsed['device']}/{name}", data)
        values = dict(
            row,
            datetime=db_datetime(parsed["datetime"]),
            datetime_created=db_datetime(now),
            device_version=parsed["device_version"] or DEFAULT_DEVICE_VERSION,
            lat=decimal6_column(parsed["lat"]),
            lng=decimal6_column(parsed["lng"]),
            alt=smallint_column(parsed["alt"], "alt"),
            bat=smallint_column(parsed["bat"], "bat"),
        )
        del values["id"]
        try:
            self._insert("images", values)
        except sqlite3.IntegrityError as exc:
            raise StoreError(f"Duplicate entry {name}: {exc}") from None
        return row

    def _image_row(self, row: sqlite3.Row) -> dict[str, Any]:
        """A stored image as the real server's raw SQL gives it: ``but`` 1/0, FLOAT columns."""
        out = {k: row[k] for k in IMAGE_FIELDS}
        out["datetime"] = out_datetime(row["datetime"])
        out["datetime_created"] = out_datetime(row["datetime_created"])
        for column in ("temp", "hum", "lum"):
            out[column] = float_column(row[column])
        return out

    def get_image(self, device: str, when: dt.datetime | str) -> dict[str, Any] | None:
        """Given a device id (any case) and a datetime (or a key's text, see
        :func:`key_datetime`), return the image's row, or None if absent."""
        text = when if isinstance(when, str) else db_datetime(when)
        with self._lock:
            row = self._db.execute(
                "SELECT * FROM images WHERE device = ? COLLATE NOCASE AND datetime = ?", (device, text)
            ).fetchone()
        return None if row is None else self._image_row(row)

    def image_series(self, device_like: str, start: dt.datetime, end: dt.datetime) -> list[dict[str, Any]]:
        """Given a SQL LIKE pattern of device ids and ``[start, end)``, return the rows in it."""
        with self._lock:
            rows = self._db.execute(
                "SELECT * FROM images WHERE device LIKE ? AND datetime >= ? AND datetime < ? "
                "ORDER BY device, datetime",
                (device_like, db_datetime(start), db_datetime(end)),
            ).fetchall()
        return [self._image_row(r) for r in rows]

    def delete_image(self, device: str, when: dt.datetime | str) -> dict[str, Any] | None:
        """Given a device id (any case) and a datetime (or a key's text), delete the image, its
        annotations and files.

        Return the deleted row as the real server's ORM gives it (``but`` a bool, no ``url``),
        or None if there was no such image.
        """
        with self._lock:
            row = self.get_image(device, when)
            if row is None:
                return None
            self._db.execute("DELETE FROM images WHERE id = ?", (row["id"],))
        stored = row["device"]
        name = f"{stored}.{parse_datetime(row['datetime']).strftime('%Y-%m-%d_%H-%M-%S')}.jpg"
        for kind in OBJECT_KINDS:
            (self.data_dir / "files" / kind / stored / name).unlink(missing_ok=True)
        return dict(row, but=None if row["but"] is None else bool(row["but"]))

    # -- annotations -------------------------------------------------------------------------

    def put_annotations(self, items: list[Any], now: dt.datetime) -> list[dict[str, Any]]:
        """Given ``{"metadata": {...}, "annotations": [...]}`` items, store all or none of them
        (the real server commits once, at the end); return their rows, each with ``"json": ""``.

        Raise :class:`StoreError`, having stored nothing, if any item is malformed, its parent
        image is absent or has another md5, a name is too long, or an ``(image, algo_name,
        algo_version)`` triple already exists.
        """
        with self._lock:
            self._db.execute("BEGIN")
            try:
                rows = [self._put_annotation(item, now) for item in items]
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
        return rows

    def _put_annotation(self, item: object, now: dt.datetime) -> dict[str, Any]:
        """Insert one annotation item (in the caller's transaction); return its row."""
        if not isinstance(item, dict) or not isinstance(item.get("metadata"), dict):
            raise StoreError("annotation item without a 'metadata' dict")
        meta = item["metadata"]
        annotations = item.get("annotations")
        if not isinstance(annotations, list):
            raise StoreError("annotation item without an 'annotations' list")
        algo_name, algo_version = meta.get("algo_name"), meta.get("algo_version")
        if not isinstance(algo_name, str) or not isinstance(algo_version, str):
            raise StoreError("algo_name and algo_version must be strings")
        if len(algo_name) > MAX_ALGO_NAME or len(algo_version) > MAX_ALGO_VERSION:
            raise StoreError(f"algo_name > {MAX_ALGO_NAME} or algo_version > {MAX_ALGO_VERSION} chars")
        device, when = meta.get("device"), key_datetime(meta.get("datetime"))
        parent = self.get_image(device, when) if isinstance(device, str) else None
        if parent is None or parent["md5"] != meta.get("md5"):
            raise StoreError(f"no parent image {device} {meta.get('datetime')} with md5 {meta.get('md5')}")
        values = {
            "parent_image_id": parent["id"],
            "algo_name": algo_name,
            "algo_version": algo_version,
            "n_objects": len(annotations),
            "json": json.dumps(item),
            "datetime_created": db_datetime(now),
            "api_version": API_VERSION,
            "api_user_id": None,  # the real server does not record who put an annotation
        }
        try:
            annotation_id = self._insert("uid_annotations", values)
        except sqlite3.IntegrityError as exc:
            raise StoreError(f"Duplicate annotation {algo_name} {algo_version} for {device}: {exc}") from None
        return {"id": annotation_id, **values, "json": "", "datetime_created": format_datetime(now)}

    def get_annotations(self, device: str, when: dt.datetime | str, with_json: bool) -> list[dict[str, Any]]:
        """Given an image's device id (any case) and datetime (or a key's text), return its
        annotation rows (``json`` if asked)."""
        text = when if isinstance(when, str) else db_datetime(when)
        with self._lock:
            rows = self._db.execute(
                "SELECT a.* FROM uid_annotations a JOIN images i ON a.parent_image_id = i.id "
                "WHERE i.device = ? COLLATE NOCASE AND i.datetime = ? ORDER BY a.id",
                (device, text),
            ).fetchall()
        return [self._annotation_row(row, with_json) for row in rows]

    def annotation_series(
        self, device_like: str, start: dt.datetime, end: dt.datetime, with_json: bool
    ) -> list[dict[str, Any]]:
        """Given a SQL LIKE pattern of device ids and ``[start, end)``, return the annotation
        rows of the images in it (``json`` if asked)."""
        with self._lock:
            rows = self._db.execute(
                "SELECT a.* FROM uid_annotations a JOIN images i ON a.parent_image_id = i.id "
                "WHERE i.device LIKE ? AND i.datetime >= ? AND i.datetime < ? ORDER BY a.id",
                (device_like, db_datetime(start), db_datetime(end)),
            ).fetchall()
        return [self._annotation_row(row, with_json) for row in rows]

    @staticmethod
    def _annotation_row(row: sqlite3.Row, with_json: bool) -> dict[str, Any]:
        item = {k: row[k] for k in ANNOTATION_FIELDS if with_json or k != "json"}
        item["datetime_created"] = out_datetime(row["datetime_created"])
        item["api_user_id"] = None  # also for rows an older devserver stored with an id
        return item
