"""The Data Lake double's operation-data update: annotations of one operation (model run or project).

``POST /datalake/api/metadata/operationdata/{op_id}/update?isNormalized=True|False`` with
``{"metaUpdatesArray": "<JSON string>", "sessionId", "totalImageCount", "uploadedImageCount",
"operationMode": 1 human | 2 auto, "operationType": 1}``: the array is a JSON *string* inside the
JSON body (parsed twice). Each element names an image by ``objectKey`` (the file's unique name,
``{storagePath}_{fileName}``), by ``jobId`` + ``fileName`` or by ``storagePath`` (its S3 key), and
carries ``data.annotationObjects``. Re-using an operation id replaces that operation's annotations
of each image sent (other images of the operation, sent in other batches, are kept). Normalized
coordinates are converted to pixels with the image's size, as the backend does.

Strict where the closed backend is unknown: the whole batch is refused (406) if one element names
an image the lake does not hold or one shape is malformed, so a sink's mistake is never silent.
"""

from __future__ import annotations

import json
from typing import Any

from agent.devserver.datalake_state import DatalakeError, DatalakeState, LakeFile

#: Least number of points per shape type.
MIN_POINTS = {"rectangle": 4, "polygon": 3, "line": 2, "points": 1}
OPERATION_MODES = (1, 2)


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _resolve(state: DatalakeState, update: dict[str, Any]) -> LakeFile:
    files = [f for c in state.collections.values() for f in c.files.values()]
    if update.get("objectKey"):
        found = [f for f in files if f.unique_name == update["objectKey"]]
        what = f"objectKey {update['objectKey']}"
    elif update.get("jobId") and update.get("fileName"):
        job = state.jobs.get(update["jobId"])
        upload_id = job.upload_id if job else None
        found = [f for f in files if f.upload_id == upload_id and f.name == update["fileName"]]
        what = f"file {update['fileName']} of job {update['jobId']}"
    elif update.get("storagePath"):
        found = [f for f in files if f.key == str(update["storagePath"]).lstrip("/")]
        what = f"storagePath {update['storagePath']}"
    else:
        raise DatalakeError(406, "each update needs objectKey, jobId and fileName, or storagePath")
    if not found:
        raise DatalakeError(406, f"no image with {what} in the Data Lake")
    return found[0]


def _check_shape(state: DatalakeState, obj: Any, where: str) -> None:
    if not isinstance(obj, dict):
        raise DatalakeError(406, f"{where}: an annotation object must be an object")
    kind = obj.get("type")
    if kind not in MIN_POINTS:
        raise DatalakeError(406, f"{where}: unknown annotation type {kind!r}")
    points = obj.get("points")
    if not isinstance(points, list) or not all(
        isinstance(p, list) and len(p) == 2 and all(_is_number(v) for v in p) for p in points
    ):
        raise DatalakeError(406, f"{where}: {kind} needs points [[x, y], ...]")
    if len(points) < MIN_POINTS[kind]:
        raise DatalakeError(406, f"{where}: a {kind} needs at least {MIN_POINTS[kind]} points")
    if kind == "rectangle":
        box = obj.get("boxBoundariesAndDimensions")
        if not isinstance(box, dict) or not all(_is_number(box.get(k)) for k in "xywh"):
            raise DatalakeError(406, f"{where}: a rectangle needs boxBoundariesAndDimensions {{x, y, w, h}}")
    confidence = obj.get("confidence", 1)
    if not _is_number(confidence) or not 0 <= confidence <= 1:
        raise DatalakeError(406, f"{where}: confidence must be a number 0..1")
    label = obj.get("label")
    refs = {ref["ref"] for ref in state.labels.values()}
    if not isinstance(label, dict) or label.get("label") not in refs:
        raise DatalakeError(406, f"{where}: label is not a reference from system/label/references")


def _to_pixels(obj: dict[str, Any], lake_file: LakeFile, where: str) -> dict[str, Any]:
    if lake_file.width is None or lake_file.height is None:
        raise DatalakeError(406, f"{where}: normalized coordinates on a file that is not an image")
    w, h = lake_file.width, lake_file.height
    out = dict(obj, points=[[x * w, y * h] for x, y in obj["points"]])
    box = obj.get("boxBoundariesAndDimensions")
    if isinstance(box, dict):
        out["boxBoundariesAndDimensions"] = {
            "x": box["x"] * w,
            "y": box["y"] * h,
            "w": box["w"] * w,
            "h": box["h"] * h,
        }
    return out


def update_operation(state: DatalakeState, op_id: str, is_normalized: str, body: Any) -> dict[str, Any]:
    """Given an operation id, the ``isNormalized`` query value and the request body, store the
    annotations (all or none) and return the answer. Raise DatalakeError if anything is wrong."""
    if is_normalized not in ("True", "False", "true", "false"):
        raise DatalakeError(400, f"isNormalized must be True or False, not {is_normalized!r}")
    normalized = is_normalized.lower() == "true"
    if not isinstance(body, dict) or not isinstance(body.get("metaUpdatesArray"), str):
        raise DatalakeError(400, "metaUpdatesArray must be a JSON string")
    try:
        updates = json.loads(body["metaUpdatesArray"])
    except ValueError:
        raise DatalakeError(400, "metaUpdatesArray is not valid JSON") from None
    if not isinstance(updates, list) or not all(isinstance(u, dict) for u in updates):
        raise DatalakeError(400, "metaUpdatesArray must hold a list of objects")
    if body.get("operationMode") not in OPERATION_MODES or body.get("operationType") != 1:
        raise DatalakeError(406, "operationMode must be 1 (human) or 2 (auto), operationType 1")
    staged: dict[str, list[dict[str, Any]]] = {}
    for update in updates:
        lake_file = _resolve(state, update)
        objects = (update.get("data") or {}).get("annotationObjects")
        if not isinstance(objects, list):
            raise DatalakeError(406, f"{lake_file.unique_name}: data.annotationObjects must be a list")
        stored = []
        for i, obj in enumerate(objects):
            where = f"{lake_file.unique_name} annotation {i}"
            _check_shape(state, obj, where)
            stored.append(_to_pixels(obj, lake_file, where) if normalized else dict(obj))
        staged[lake_file.unique_name] = stored
    state.operations.setdefault(op_id, {}).update(staged)
    info = state.operation_info.setdefault(op_id, {"mode": body["operationMode"], "sessions": []})
    if body.get("sessionId") not in info["sessions"]:
        info["sessions"].append(body.get("sessionId"))
    return {"isSuccess": True, "message": f"Annotations of {len(staged)} images updated"}
