"""The CSV export: one row per image (``/export.csv`` and ``stickyctl export --csv``).

Columns (documented in the README): ``device``, ``datetime`` (UTC, ISO 8601 with ``Z``),
``temperature_c``, ``humidity_pct``, ``battery_pct``, ``lat``, ``lng`` (empty when unknown),
``button`` (1: a manual capture), ``insects_on_card``, ``new_insects`` (empty until the image
has been analysed), one ``sync_<sink>`` column per sink with the image's state there
(:func:`sink_state`), and
``md5``. Rows are in time order and streamed: a year of images does not sit in memory.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections.abc import Iterable, Iterator

from agent.web.data import ImageRow

BASE_COLUMNS = (
    "device",
    "datetime",
    "temperature_c",
    "humidity_pct",
    "battery_pct",
    "lat",
    "lng",
    "button",
    "insects_on_card",
    "new_insects",
)


def columns(sink_names: list[str]) -> list[str]:
    return [*BASE_COLUMNS, *(f"sync_{name}" for name in sink_names), "md5"]


def _cell(value: object) -> str:
    return "" if value is None else str(value)


#: Delivery states that say more than the file's state: the sink's word is final for these.
_SETTLED = ("verified", "failed", "conflict")


def sink_state(row: ImageRow, sink: str) -> str:
    """Given an image (with its deliveries) and a sink name, return the image's state at that
    sink: ``verified``, ``failed``, ``conflict`` as the sink left it; else, for an original that
    is no longer on disk, the file's state (``evicted``, ``quarantined``, ``missing``,
    ``discarded``: it will not go there); else ``waiting`` or ``uploaded``."""
    state = row.deliveries.get(sink)
    if state in _SETTLED:
        return state
    if row.state != "captured":
        return row.state
    return state or "waiting"


def csv_lines(rows: Iterable[ImageRow], sink_names: list[str]) -> Iterator[str]:
    """Given images in time order, yield the CSV text, a header line first, then one per image."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")

    def flush() -> str:
        text = buf.getvalue()
        buf.seek(0)
        buf.truncate()
        return text

    writer.writerow(columns(sink_names))
    yield flush()
    for r in rows:
        writer.writerow(
            [
                r.device,
                r.datetime.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                _cell(r.temperature),
                _cell(r.humidity),
                _cell(r.battery),
                _cell(r.lat),
                _cell(r.lng),
                int(r.manual),
                _cell(r.insects),
                _cell(r.new_insects),
                *(sink_state(r, s) for s in sink_names),
                r.md5,
            ]
        )
        yield flush()
