"""What the Tator sink sends, computed from a queued image: elemental ids, Tator's md5, media
attributes from the picture's record, and localizations from Sticky Pi insect contours.

Pure functions (no HTTP), so the same image always maps to the same Tator objects: a retry
after a lost answer finds what the first try made instead of making it again.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import math
import uuid
from collections.abc import Iterable
from typing import Any, Literal

from agent.sinks.base import AnnotationBatch, ImageKey, ImageRecord

#: sticky-agent's namespace for the UUID5 elemental ids it gives Tator objects.
NAMESPACE = uuid.UUID("403f8c71-f4cb-46b7-bd80-0e162dbdfa9b")
#: Tator's md5 hashes the first 100 MB (``tator.util.md5sum``).
TATOR_MD5_SPAN = 100 * 1024 * 1024

RecordField = Literal["device", "datetime", "temperature", "humidity", "battery", "lat", "lng", "manual"]
RECORD_FIELDS: tuple[RecordField, ...] = (
    "device",
    "datetime",
    "temperature",
    "humidity",
    "battery",
    "lat",
    "lng",
    "manual",
)
#: The localization attributes naming the detector (the localization type must declare them).
ALGORITHM = "Algorithm"
ALGORITHM_VERSION = "Algorithm version"
LABEL = "Label"


def tator_datetime(when: dt.datetime) -> str:
    """Return an aware datetime as ISO 8601 UTC (``2024-06-01T12:00:00Z``)."""
    return when.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def media_elemental_id(key: ImageKey) -> str:
    """Given an image's key, return its media's elemental id (UUID5 of ``<device>.<datetime>``)."""
    device, when = key
    return str(uuid.uuid5(NAMESPACE, f"{device}.{tator_datetime(when)}"))


def localization_elemental_id(
    key: ImageKey, algo_name: str, algo_version: str, index: int, count: int
) -> str:
    """Return the elemental id of the ``index``-th of ``count`` outlines of one detector version on
    one image. The count is part of it: a set cut short by a failed request never looks whole."""
    device, when = key
    name = f"{device}.{tator_datetime(when)}/{algo_name}/{algo_version}/{index}/{count}"
    return str(uuid.uuid5(NAMESPACE, name))


def expected_localization_ids(key: ImageKey, algo_name: str, algo_version: str, count: int) -> set[str]:
    """Return the elemental ids a complete set of ``count`` outlines has."""
    return {localization_elemental_id(key, algo_name, algo_version, i, count) for i in range(count)}


def tator_md5_of_data(data: bytes) -> str:
    """Given a file's bytes, return Tator's "md5": md5 of (the hex md5 of the first 100 MB + the
    size in decimal), as ``tator.util.md5sum`` computes it."""
    inner = hashlib.md5(data[:TATOR_MD5_SPAN]).hexdigest()
    return hashlib.md5(f"{inner}{len(data)}".encode()).hexdigest()


def tator_md5_of(image: ImageRecord) -> str | None:
    """Given a queued image, return Tator's md5 of its file from our md5 and size, or None if the
    file is over 100 MB (then Tator hashes only a part of it)."""
    if image.size > TATOR_MD5_SPAN:
        return None
    return hashlib.md5(f"{image.md5}{image.size}".encode()).hexdigest()


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


def media_attributes(image: ImageRecord, fields: Iterable[str]) -> dict[str, Any]:
    """Given a queued image and the record fields wanted, return its media attributes (read from
    ``metadata["record"]``, the EXIF record ``T, H, B, lat, lng``, else flat ``temperature``,
    ``humidity``, ``battery``, ``lat``, ``lng`` keys). A reading the record holds as unknown
    (temperature -300, humidity -1, battery 0, position 0,0) is left out; ``lat`` and ``lng``
    together make the geopos attribute ``location`` ([lng, lat])."""
    wanted = set(fields)
    flat = image.metadata
    record = flat.get("record") if isinstance(flat.get("record"), dict) else {}
    assert isinstance(record, dict)

    def reading(short: str, name: str) -> float | None:
        """The record's value (``T``...), else the flat key (``temperature``...)."""
        value = record.get(short)
        return _number(flat.get(name) if value is None else value)

    device, when = image.key
    out: dict[str, Any] = {}
    if "device" in wanted:
        out["device"] = device
    if "datetime" in wanted:
        out["datetime"] = tator_datetime(when)
    temperature = reading("T", "temperature")
    if "temperature" in wanted and temperature is not None and temperature > -273.15:
        out["temperature"] = temperature
    humidity = reading("H", "humidity")
    if "humidity" in wanted and humidity is not None and 0 <= humidity <= 100:
        out["humidity"] = humidity
    battery = reading("B", "battery")
    if "battery" in wanted and battery is not None and battery > 0:
        out["battery"] = int(battery)
    lat, lng = reading("lat", "lat"), reading("lng", "lng")
    known = lat is not None and lng is not None and (lat, lng) != (0.0, 0.0)
    if {"lat", "lng"} <= wanted and known and -90 <= lat <= 90 and -180 <= lng <= 180:  # type: ignore[operator]
        out["location"] = [lng, lat]
    if "manual" in wanted:
        out["manual"] = bool(image.manual)
    return out


def _points(annotation: dict[str, Any]) -> list[tuple[float, float]]:
    """Return a Sticky Pi contour's points (``[[[x, y]], ...]`` or ``[[x, y], ...]``) in pixels."""
    points = []
    for item in annotation.get("contour") or []:
        point = item[0] if isinstance(item, list | tuple) and len(item) == 1 else item
        if isinstance(point, list | tuple) and len(point) == 2:
            x, y = _number(point[0]), _number(point[1])
            if x is not None and y is not None:
                points.append((x, y))
    return points


def _unit(value: float) -> float:
    return round(min(1.0, max(0.0, value)), 6)


def localization_specs(
    image: ImageRecord,
    batch: AnnotationBatch,
    *,
    media_id: int,
    type_id: int,
    dtype: str,
    declared: set[str],
) -> list[dict[str, Any]]:
    """Given an image, its annotations by one detector version and the localization type (id,
    ``poly`` or ``box``, declared attribute names), return the localization specs: coordinates
    normalized 0..1 by the image's size, deterministic elemental ids, and the declared ones of
    the detector's attributes. Contours of fewer than 3 points (or 1 for a box) are left out."""
    shapes = []
    for annotation in batch.annotations:
        points = _points(annotation)
        if len(points) >= (3 if dtype == "poly" else 1):
            shapes.append((annotation, points))
    width, height = max(1, image.width), max(1, image.height)
    specs = []
    for i, (annotation, points) in enumerate(shapes):
        attributes = {ALGORITHM: batch.algo_name, ALGORITHM_VERSION: batch.algo_version}
        if isinstance(annotation.get("name"), str):
            attributes[LABEL] = annotation["name"]
        spec: dict[str, Any] = {
            "media_id": media_id,
            "type": type_id,
            "frame": 0,
            "elemental_id": localization_elemental_id(
                batch.key, batch.algo_name, batch.algo_version, i, len(shapes)
            ),
            "attributes": {k: v for k, v in attributes.items() if k in declared},
        }
        if dtype == "poly":
            spec["points"] = [[_unit(x / width), _unit(y / height)] for x, y in points]
        else:
            xs, ys = [p[0] for p in points], [p[1] for p in points]
            x0, y0 = _unit(min(xs) / width), _unit(min(ys) / height)
            spec.update(
                x=x0,
                y=y0,
                width=_unit(max(xs) / width - x0),
                height=_unit(max(ys) / height - y0),
            )
        specs.append(spec)
    return specs
