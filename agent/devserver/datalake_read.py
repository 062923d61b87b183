"""The Data Lake double's read side: what the official ``layernext`` 2.3.4 client reads back.

- ``POST api/client/metadata/getItemDetails`` ``{"uniqueFileName", "requiredMetaObj"}`` (the SDK's
  ``get_item_details``, documented as ``get_file_details``): ``{"isSuccess", "itemDetails"}`` with
  the default fields ``id``, ``name``, ``uniqueName`` and ``url`` (a presigned GET), plus those
  asked for with ``true``: ``fileSize``, ``resolution``, ``storagePath`` (the object's key),
  ``bucketName``, ``Tags``, ``createdAt``, ``updatedAt`` and the file's custom metadata fields; a
  default field asked with ``false`` is left out. An unknown unique name is a 404 (LoopBack's
  error body), which the SDK raises as an exception.
- ``GET api/client/getAnnotations/{collectionId}/collection`` (the SDK's ``download_collection``):
  pages (``pageNo`` from 0, ``pageSize``) of the collection's files, each with its presigned
  ``fileUrl`` and its ``rawAnnotations`` in the upload format (``{"image", "annotations": [{"type",
  "polygon"|"bbox"|"line"|"points", "label", "confidence"}]}``, pixels), filtered by
  ``operationIdList`` (a JSON list) or else ``annotationType`` (``machine``, ``human``, ``all``).
  The backend's export beyond what the SDK writes to its file is not public; the double adds
  ``operationIds`` to ``rawAnnotations``: the operations that hold annotations of the file (also
  those that hold an empty list), so a client can tell what the lake holds per operation.
- ``POST /datalake/api/job/updateJob/basicAuthRequest``: the progress the SDK reports while
  downloading (recorded in ``DatalakeState.client_jobs``).
"""

from __future__ import annotations

import hmac
import json
from typing import Any
from urllib.parse import quote

from agent.devserver.datalake_state import DatalakeError, DatalakeState, LakeFile

#: The fields of ``getItemDetails`` that come unless asked ``false``.
DEFAULT_FIELDS = ("id", "name", "uniqueName", "url")
#: Fields answered when asked ``true`` (besides custom metadata fields).
SYSTEM_FIELDS = ("fileSize", "resolution", "storagePath", "bucketName", "Tags", "createdAt", "updatedAt")
BUCKET = "datalake-double"
#: The most files per annotation page.
MAX_PAGE_SIZE = 1000


def download_url(state: DatalakeState, base_url: str, key: str) -> str:
    """Given an object key, return a presigned GET URL for it (as S3 signs one)."""
    signature = state.sign("GET\n" + key)
    return f"{base_url}/_s3/{quote(key)}?X-Amz-Signature={signature}"


def read_object(state: DatalakeState, key: str, signature: str) -> bytes:
    """Given an object key and a presigned GET's signature, return the object's bytes. Raise
    DatalakeError 403 on a bad signature, 404 on an unknown key."""
    if not hmac.compare_digest(signature, state.sign("GET\n" + key)):
        raise DatalakeError(403, "SignatureDoesNotMatch")
    if key not in state.objects:
        raise DatalakeError(404, "NoSuchKey")
    return state.objects[key]


def _indexed(state: DatalakeState, unique_name: str) -> LakeFile | None:
    for coll in state.collections.values():
        for lake_file in coll.files.values():
            if lake_file.unique_name == unique_name:
                return lake_file
    return None


def item_details(state: DatalakeState, body: dict[str, Any], base_url: str) -> dict[str, Any]:
    """Given a ``getItemDetails`` body, return the answer. Raise DatalakeError 400 without a
    unique name, 404 if the lake holds no such file."""
    name = body.get("uniqueFileName")
    wanted = body.get("requiredMetaObj") or {}
    if not isinstance(name, str) or not name or not isinstance(wanted, dict):
        raise DatalakeError(400, "uniqueFileName must be a string and requiredMetaObj an object")
    lake_file = _indexed(state, name)
    if lake_file is None:
        raise DatalakeError(404, f"File {name} not found")
    known: dict[str, Any] = {
        "id": lake_file.file_id,
        "name": lake_file.name,
        "uniqueName": lake_file.unique_name,
        "url": download_url(state, base_url, lake_file.key),
        "fileSize": len(lake_file.data),
        "resolution": {"width": lake_file.width, "height": lake_file.height},
        "storagePath": lake_file.key,
        "bucketName": BUCKET,
        "Tags": list(lake_file.metadata.get("Tags") or []),
        "createdAt": lake_file.created_at,
        "updatedAt": lake_file.created_at,
    }
    details = {k: known[k] for k in DEFAULT_FIELDS if wanted.get(k, True)}
    for field, asked in wanted.items():
        if asked is True and field not in details:
            if field in SYSTEM_FIELDS:
                details[field] = known[field]
            elif field in lake_file.metadata:
                details[field] = lake_file.metadata[field]
    return {"isSuccess": True, "itemDetails": details}


def _upload_format(obj: dict[str, Any]) -> dict[str, Any]:
    """Given a stored annotation object (points in pixels), return it in the SDK's upload format."""
    out: dict[str, Any] = {"type": obj["type"], "label": (obj.get("label") or {}).get("labelText")}
    if obj["type"] == "rectangle":
        box = obj["boxBoundariesAndDimensions"]
        out["bbox"] = [box["x"], box["y"], box["w"], box["h"]]
    else:
        out[obj["type"]] = obj["points"]
    if "confidence" in obj:
        out["confidence"] = obj["confidence"]
    return out


def _operations(state: DatalakeState, args: dict[str, str]) -> list[str]:
    try:
        listed = json.loads(args.get("operationIdList") or "[]")
    except ValueError:
        raise DatalakeError(400, "operationIdList must be a JSON list") from None
    if not isinstance(listed, list) or not all(isinstance(op, str) for op in listed):
        raise DatalakeError(400, "operationIdList must be a JSON list of operation ids")
    if listed:
        return listed
    kind = args.get("annotationType") or "all"
    modes = {"machine": (2,), "human": (1,), "all": (1, 2)}.get(kind)
    if modes is None:
        raise DatalakeError(400, f"annotationType must be machine, human or all, not {kind!r}")
    return [op for op, info in state.operation_info.items() if info["mode"] in modes]


def export_annotations(
    state: DatalakeState, collection_id: str, args: dict[str, str], base_url: str
) -> dict[str, Any]:
    """Given a collection id and the ``getAnnotations`` query, return one page of the export.
    Raise DatalakeError 404 for an unknown collection, 400 for a malformed query."""
    coll = next((c for c in state.collections.values() if c.id == collection_id), None)
    if coll is None:
        raise DatalakeError(404, f"Collection {collection_id} not found")
    try:
        page, size = int(args.get("pageNo", "0")), int(args.get("pageSize", "250"))
    except ValueError:
        raise DatalakeError(400, "pageNo and pageSize must be integers") from None
    if page < 0 or not 1 <= size <= MAX_PAGE_SIZE:
        raise DatalakeError(400, f"pageNo must be >= 0 and pageSize 1..{MAX_PAGE_SIZE}")
    operations = _operations(state, args)
    files = sorted(coll.files.values(), key=lambda f: f.name)
    resources = []
    for lake_file in files[page * size : (page + 1) * size]:
        held = [op for op in operations if lake_file.unique_name in state.operations.get(op, {})]
        objects = [o for op in held for o in state.operations[op][lake_file.unique_name]]
        resources.append(
            {
                "fileName": lake_file.name,
                "fileDownloadFolderLocation": "data",
                "fileUrl": download_url(state, base_url, lake_file.key),
                "isMediaFile": True,
                "rawAnnotations": {
                    "image": lake_file.name,
                    "annotations": [_upload_format(o) for o in objects],
                    "operationIds": held,
                },
            }
        )
    return {
        "isSuccess": True,
        "data": {
            "identifier": coll.id,
            "groupUniqueName": coll.name,
            "rawFileName": f"{coll.name}.json",
            "format": "RAW",
            "creatableDirectories": ["data"],
            "resourceArray": resources,
            "nextPage": (page + 1) * size < len(files),
        },
    }
