"""What the Data Lake sink sends besides the bytes: the file's metadata, its annotation objects,
and the operation id of a detector version.

Insects are Sticky Pi annotations (``{"contour": [[[x, y]], ...], ...}`` in pixels, as OpenCV
gives contours). The lake takes annotation objects as the ``layernext`` 2.3.4 client builds them
(``polygon``: ``points``; ``rectangle``: ``points`` of the four corners and
``boxBoundariesAndDimensions``), in pixels (``isNormalized=False``), each with a label
reference from ``system/label/references``. Ids are derived from the operation, the image and
the insect's place, so sending the same batch again sends the same objects.
"""

from __future__ import annotations

import datetime as dt
import math
import uuid
from typing import Any, Literal

from agent.sinks.base import AnnotationBatch, ImageRecord

Shape = Literal["polygon", "rectangle"]

#: The separator of algo_name and algo_version in an operation id (a version never holds one).
OPERATION_SEPARATOR = "@"
#: The file metadata fields the sink writes itself (the record's keys cannot replace them).
OWN_FIELDS = ("device", "datetime", "md5", "manual")
_IDS = uuid.UUID("3f1c8c3e-7d0b-4a57-9a59-0d7c2f55d1a1")


def operation_id(algo_name: str, algo_version: str) -> str:
    """Given a detector's name and version, return its stable operation id (``name@version``)."""
    return f"{algo_name}{OPERATION_SEPARATOR}{algo_version}"


def parse_operation_id(op_id: str) -> tuple[str, str] | None:
    """Given an operation id, return ``(algo_name, algo_version)``, or None if this sink did not
    make it (no separator, or an empty part)."""
    name, sep, version = op_id.rpartition(OPERATION_SEPARATOR)
    return (name, version) if sep and name and version else None


def file_metadata(image: ImageRecord) -> dict[str, Any]:
    """Given an image, return its metadata for the lake: the record's values (numbers and
    strings only) and the sink's own fields ``device``, ``datetime`` (ISO 8601, UTC), ``md5``
    (of the bytes sent: :meth:`DataLakeSink.lookup_images` compares it) and ``manual``."""
    meta: dict[str, Any] = {
        k: v
        for k, v in image.metadata.items()
        if isinstance(k, str)
        and k not in OWN_FIELDS
        and isinstance(v, str | int | float | bool)
        and not (isinstance(v, float) and not math.isfinite(v))
    }
    device, when = image.key
    meta.update(
        device=device,
        datetime=when.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        md5=image.md5,
        manual=image.manual,
    )
    return meta


def _number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def contour_points(annotation: dict[str, Any], width: int, height: int) -> list[list[float]]:
    """Given a Sticky Pi annotation, return its outline as ``[[x, y], ...]`` inside the image,
    repeated points dropped. Raise ValueError if it holds no contour of numbers."""
    contour = annotation.get("contour")
    if not isinstance(contour, list):
        raise ValueError("an annotation has no contour")
    points: list[list[float]] = []
    for item in contour:
        point = item[0] if isinstance(item, list) and len(item) == 1 else item
        if not (isinstance(point, list) and len(point) == 2):
            raise ValueError(f"a contour point is not [[x, y]]: {item!r}")
        x, y = point
        if not all(
            isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) for v in (x, y)
        ):
            raise ValueError(f"a contour point is not two numbers: {item!r}")
        clipped = [min(max(float(x), 0.0), float(width)), min(max(float(y), 0.0), float(height))]
        if not points or points[-1] != clipped:
            points.append(clipped)
    if len(points) > 1 and points[0] == points[-1]:
        points.pop()
    if not points:
        raise ValueError("an annotation has an empty contour")
    return points


def _bounding_box(points: list[list[float]]) -> dict[str, float]:
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    return {"x": min(xs), "y": min(ys), "w": max(xs) - min(xs), "h": max(ys) - min(ys)}


def annotation_objects(
    image: ImageRecord,
    batch: AnnotationBatch,
    shapes: tuple[Shape, ...],
    label: dict[str, Any],
    label_text: str,
) -> list[dict[str, Any]]:
    """Given an image, its annotation batch, the shapes to send per insect and the label's
    reference (from ``system/label/references``), return the annotation objects to send.
    An outline of fewer than 3 distinct points goes as a rectangle only. Raise ValueError if
    an annotation is malformed."""
    op = operation_id(batch.algo_name, batch.algo_version)
    created = {"$date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M:%S.%f")}
    label_object = {
        "label": label["ref"],
        "labelText": label_text,
        "metadata": {},
        "key": label["ref"],
        "color": label.get("color", "#22A7F0"),
        "attributeValues": {},
    }
    out: list[dict[str, Any]] = []
    for n, annotation in enumerate(batch.annotations):
        points = contour_points(annotation, image.width, image.height)
        box = _bounding_box(points)
        wanted = [s for s in shapes if s == "rectangle" or len(points) >= 3] or ["rectangle"]
        for shape in wanted:
            obj: dict[str, Any] = {
                "id": f"shape_{uuid.uuid5(_IDS, f'{op}/{image.name}/{n}/{shape}')}",
                "shapeId": len(out) + 1,
                "createdAt": created,
                "type": shape,
                "label": label_object,
                "metadata": {},
            }
            if shape == "polygon":
                obj["points"] = points
            else:
                x, y, w, h = box["x"], box["y"], box["w"], box["h"]
                obj["points"] = [[x, y], [x + w, y], [x + w, y + h], [x, y + h]]
                obj["boxBoundariesAndDimensions"] = box
            confidence = annotation.get("confidence")
            if (
                isinstance(confidence, int | float)
                and not isinstance(confidence, bool)
                and 0 <= confidence <= 1
            ):
                obj["confidence"] = confidence
            out.append(obj)
    return out
