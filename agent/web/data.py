"""The queue queries behind the pages, the CSV export and the metrics (read-only ``sqlite3``).

:class:`WebReader` extends the read-only reader of ``stickyctl status`` with per-image rows.
The insect figures of an image (insects on the card, new insects) come from one place,
:func:`insect_figures`: today the detector's annotation counts (``n_objects`` of the newest
annotation of each image), new insects being the rise from the previous image; when the queue
stores its own per-image figures, only that function and :data:`_IMAGE_SQL` change.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from agent.capture.exif import UNKNOWN_BATTERY, UNKNOWN_HUMIDITY, UNKNOWN_TEMPERATURE
from agent.queue.readonly import QueueReader, _stored, _time


@dataclass(frozen=True)
class ImageRow:
    """One image as the pages, the export and the metrics see it."""

    id: int
    device: str
    datetime: dt.datetime
    path: str
    md5: str
    size: int
    width: int
    height: int
    manual: bool
    state: str
    last_error: str | None
    temperature: float | None
    humidity: float | None
    battery: int | None
    lat: float | None
    lng: float | None
    exposure_us: float | None
    analogue_gain: float | None
    #: The detector's count for this image; None if it has not been analysed.
    insects: int | None
    #: Insects that appeared since the previous analysed image; None if unknown.
    new_insects: int | None = None
    #: ``{sink: delivery state}`` for the sinks that have a row for it (filled on request).
    deliveries: dict[str, str] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return Path(self.path).name


# The newest annotation of each image (a re-run of a newer detector version wins).
_IMAGE_SQL = """
SELECT i.id, i.device, i.datetime, i.path, i.md5, i.size, i.width, i.height, i.manual, i.state,
       i.last_error, i.metadata,
       (SELECT a.n_objects FROM annotations a WHERE a.image_id = i.id ORDER BY a.id DESC LIMIT 1)
FROM images i
"""


def _known(value: Any, unknown: float) -> float | None:
    if isinstance(value, int | float) and value != unknown:
        return float(value)
    return None


def _row(r: tuple[Any, ...]) -> ImageRow:
    try:
        meta = json.loads(r[11])
    except (TypeError, ValueError):
        meta = {}
    record = meta.get("record") or {}
    battery = _known(record.get("B"), UNKNOWN_BATTERY)
    lat, lng = _known(record.get("lat"), 0.0), _known(record.get("lng"), 0.0)
    when = _time(r[2])
    assert when is not None
    return ImageRow(
        id=int(r[0]),
        device=r[1],
        datetime=when,
        path=r[3],
        md5=r[4],
        size=int(r[5]),
        width=int(r[6]),
        height=int(r[7]),
        manual=bool(r[8]),
        state=r[9],
        last_error=r[10],
        temperature=_known(record.get("T"), UNKNOWN_TEMPERATURE),
        humidity=_known(record.get("H"), UNKNOWN_HUMIDITY),
        battery=int(battery) if battery is not None else None,
        lat=lat if lat is not None or lng is not None else None,
        lng=lng if lat is not None or lng is not None else None,
        exposure_us=meta.get("exposure_us"),
        analogue_gain=meta.get("analogue_gain"),
        insects=None if r[12] is None else int(r[12]),
    )


def insect_figures(rows: list[ImageRow], previous: int | None = None) -> list[ImageRow]:
    """Given images in time order (and the count of the analysed image before them, if any),
    return them with ``new_insects`` filled: the rise of the count since the previous analysed
    image (never negative: an insect hidden by another is not an insect gone)."""
    out = []
    for row in rows:
        new = None
        if row.insects is not None:
            new = max(0, row.insects - previous) if previous is not None else None
            previous = row.insects
        out.append(replace(row, new_insects=new))
    return out


class WebReader(QueueReader):
    """The read-only queue with the web page's queries."""

    def latest(self, limit: int, day: dt.date | None = None, before_id: int | None = None) -> list[ImageRow]:
        """Return up to ``limit`` images, newest first, of one UTC day if given, older than
        ``before_id`` if given."""
        where: list[str] = ["1 = 1"]
        args: list[object] = []
        if day is not None:
            start = dt.datetime.combine(day, dt.time(), dt.UTC)
            where.append("i.datetime >= ? AND i.datetime < ?")
            args += [_stored(start), _stored(start + dt.timedelta(days=1))]
        if before_id is not None:
            where.append("i.id < ?")
            args.append(before_id)
        sql = f"{_IMAGE_SQL} WHERE {' AND '.join(where)} ORDER BY i.datetime DESC LIMIT ?"
        return [_row(r) for r in self._all(sql, *args, limit)]

    def image(self, image_id: int) -> ImageRow | None:
        rows = self._all(f"{_IMAGE_SQL} WHERE i.id = ?", image_id)
        return _row(rows[0]) if rows else None

    def outlines(self, image_id: int) -> list[list[tuple[int, int]]]:
        """Return the newest annotation's insect outlines of an image, in full-image pixels."""
        rows = self._all("SELECT json FROM annotations WHERE image_id = ? ORDER BY id DESC LIMIT 1", image_id)
        if not rows:
            return []
        try:
            annotations = json.loads(rows[0][0])
            return [[(int(p[0][0]), int(p[0][1])) for p in a["contour"]] for a in annotations]
        except (ValueError, KeyError, IndexError, TypeError):
            return []

    def days(self, limit: int = 60) -> list[tuple[dt.date, int]]:
        """Return the UTC days that have images, newest first, with their image counts."""
        rows = self._all(
            "SELECT substr(datetime, 1, 10) AS d, count(*) FROM images GROUP BY d ORDER BY d DESC LIMIT ?",
            limit,
        )
        return [(dt.date.fromisoformat(d), int(n)) for d, n in rows]

    def rows(self, since: dt.datetime | None = None, sinks: list[str] | None = None) -> Iterator[ImageRow]:
        """Yield every image (since ``since``) in time order with its insect figures (and its
        delivery state at each of ``sinks``), a few hundred rows at a time (the export of a
        year's queue stays small in memory)."""
        previous: int | None = None
        if since is not None:
            before = self._all(
                f"{_IMAGE_SQL} WHERE i.datetime < ? ORDER BY i.datetime DESC LIMIT 50", _stored(since)
            )
            counts = [_row(r).insects for r in before]
            previous = next((c for c in counts if c is not None), None)
        after = _stored(since) if since is not None else ""
        last_id = -1
        while True:
            batch = [
                _row(r)
                for r in self._all(
                    f"{_IMAGE_SQL} WHERE (i.datetime > ? OR (i.datetime = ? AND i.id > ?))"
                    " ORDER BY i.datetime, i.id LIMIT 500",
                    after,
                    after,
                    last_id,
                )
            ]
            if not batch:
                return
            with_new = insect_figures(batch, previous)
            if sinks:
                held = self.deliveries_of([r.id for r in batch], sinks)
                with_new = [
                    replace(r, deliveries={n: d["state"] for n, d in held.get(r.id, {}).items()})
                    for r in with_new
                ]
            counted = [r.insects for r in batch if r.insects is not None]
            previous = counted[-1] if counted else previous
            yield from with_new
            after, last_id = _stored(batch[-1].datetime), batch[-1].id
