"""The Data Lake double's data and rules: collections, uploads, jobs, S3 parts, labels, operations.

The LayerNext backend is closed source: these rules are what the official ``layernext`` 2.3.4
client expects (``../shared/specs/datalake.md``), made strict where the client leaves room, so a
sink that gets something wrong is refused with a message rather than silently accepted. The WSGI
side is :mod:`agent.devserver.datalake`; every method here runs under ``DatalakeState.lock``.
"""

from __future__ import annotations

import collections
import datetime
import hashlib
import hmac
import io
import threading
import uuid
from dataclasses import dataclass, field
from typing import Any

JOB_IN_PROGRESS, JOB_COMPLETED, JOB_QUEUED, JOB_FAILED = 1, 2, 3, 4
#: ``collectionType`` values: video, image, other.
COLLECTION_TYPES = (4, 5, 7)
#: S3: every part but the last is at least 5 MiB; at most 10 000 parts.
MIN_PART_SIZE = 5 * 1024 * 1024
MAX_PARTS = 10_000


class DatalakeError(Exception):
    """A refusal answered with ``status`` and LoopBack's ``{"error": {statusCode, name, message}}``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


@dataclass
class LakeFile:
    """One file of a collection; ``unique_name`` is ``{storagePath}_{fileName}``."""

    file_id: str
    name: str
    key: str
    unique_name: str
    collection: str
    upload_id: str
    data: bytes = b""
    metadata: dict[str, Any] = field(default_factory=dict)
    width: int | None = None
    height: int | None = None
    content_type: str = ""
    s3_upload_id: str = ""
    parts: dict[int, bytes] = field(default_factory=dict)
    part_count: int = 0
    created_at: str = ""


@dataclass
class Collection:
    id: str
    name: str
    object_type: int
    storage_path: str
    metadata: dict[str, Any] = field(default_factory=dict)
    files: dict[str, LakeFile] = field(default_factory=dict)  # fileName -> indexed file


@dataclass
class Upload:
    id: str
    collection: str
    job_id: str
    names: list[str]
    metadata: dict[str, Any]
    override: bool
    finalized: dict[str, LakeFile] = field(default_factory=dict)  # fileName -> file
    completed: bool = False


@dataclass
class Job:
    id: str
    upload_id: str
    status: int = JOB_IN_PROGRESS
    progress: float = 0.0
    before: list[int] = field(default_factory=list)  # statuses still to answer before the outcome
    outcome: int = JOB_COMPLETED


def _new_id() -> str:
    return uuid.uuid4().hex[:24]  # MongoDB ObjectId shape


def _require(body: dict[str, Any], *names: str) -> None:
    missing = [n for n in names if body.get(n) in (None, "")]
    if missing:
        raise DatalakeError(400, f"missing field(s): {', '.join(missing)}")


def _image_size(data: bytes) -> tuple[int | None, int | None]:
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as img:
            return img.width, img.height
    except Exception:
        return None, None


class DatalakeState:
    """Everything the double holds, behind one lock.

    ``job_before`` are the statuses a job answers (one per poll) after its upload is completed and
    before ``job_outcome`` (2 completed, 4 failed: a failed job indexes none of its files).
    """

    def __init__(
        self,
        credentials: dict[str, str],
        *,
        job_outcome: int = JOB_COMPLETED,
        job_before: tuple[int, ...] = (),
        min_sdk_version: tuple[int, ...] = (2, 3, 0),
    ) -> None:
        self.lock = threading.Lock()
        self.credentials = dict(credentials)  # api key -> secret
        self.job_outcome, self.job_before = job_outcome, job_before
        self.min_sdk_version = min_sdk_version
        self.secret = uuid.uuid4().hex.encode()
        self.collections: dict[str, Collection] = {}  # name -> collection
        self.uploads: dict[str, Upload] = {}
        self.jobs: dict[str, Job] = {}
        self.files: dict[str, LakeFile] = {}  # fileId -> file being uploaded or uploaded
        self.objects: dict[str, bytes] = {}  # S3 key -> bytes of finalized files
        self.labels: dict[str, dict[str, Any]] = {}  # label text -> reference
        #: operation id -> unique name -> annotation objects as stored (pixels).
        self.operations: dict[str, dict[str, list[dict[str, Any]]]] = {}
        self.operation_info: dict[str, dict[str, Any]] = {}
        self.requests: collections.Counter[str] = collections.Counter()
        self.refusals: list[tuple[str, int, str]] = []  # (endpoint, status, message)
        #: The next ``fail_puts`` presigned PUTs answer S3's 500 InternalError (a flaky store).
        self.fail_puts = 0
        #: The progress reports of SDK downloads (``job/updateJob/basicAuthRequest`` bodies).
        self.client_jobs: list[dict[str, Any]] = []

    def sign(self, text: str) -> str:
        return hmac.new(self.secret, text.encode(), hashlib.sha256).hexdigest()[:32]

    def file(self, collection: str, name: str) -> LakeFile | None:
        """Given a collection name and a file name, return the indexed file or None."""
        c = self.collections.get(collection)
        return c.files.get(name) if c else None

    # -- upload --------------------------------------------------------------------------------

    def begin_upload(self, body: dict[str, Any]) -> dict[str, Any]:
        _require(body, "collectionName", "collectionType")
        if body["collectionType"] not in COLLECTION_TYPES:
            raise DatalakeError(406, f"Invalid collection type {body['collectionType']!r}")
        names = body.get("objectKeyList")
        if not isinstance(names, list) or not all(isinstance(n, str) and n for n in names):
            raise DatalakeError(400, "objectKeyList must be a list of file names")
        meta = body.get("metaDataObject") or {}
        if not isinstance(meta, dict):
            raise DatalakeError(406, "metaDataObject must be an object")
        name = body["collectionName"]
        coll = self.collections.get(name)
        if coll is None:
            prefix = body.get("storagePrefixPath") or ""
            storage_path = f"{prefix.strip('/')}/{name}" if prefix else name
            coll = self.collections[name] = Collection(_new_id(), name, body["collectionType"], storage_path)
        elif coll.object_type != body["collectionType"]:
            raise DatalakeError(406, f"Collection {name} exists with another content type")
        coll.metadata.update(meta)
        upload = Upload(
            _new_id(), name, _new_id(), list(names), dict(meta), bool(body.get("isOverrideMetaData"))
        )
        self.uploads[upload.id] = upload
        self.jobs[upload.job_id] = Job(upload.job_id, upload.id)
        return {
            "storageType": "AWS_S3",
            "uploadId": upload.id,
            "collectionId": coll.id,
            "jobId": upload.job_id,
        }

    def _upload(self, upload_id: Any) -> Upload:
        upload = self.uploads.get(upload_id) if isinstance(upload_id, str) else None
        if upload is None:
            raise DatalakeError(404, f"Upload {upload_id} not found")
        return upload

    def init_file(self, body: dict[str, Any]) -> dict[str, Any]:
        _require(body, "fileName", "collectionName", "uploadId")
        upload = self._upload(body["uploadId"])
        name = body["fileName"]
        if upload.collection != body["collectionName"] or name not in upload.names:
            raise DatalakeError(406, f"{name} is not part of upload {upload.id} to {body['collectionName']}")
        if upload.completed:
            raise DatalakeError(406, f"Upload {upload.id} is already completed")
        existing = self.file(upload.collection, name)
        if existing is not None:
            if upload.override:
                existing.metadata.update(upload.metadata)
            return {"fileId": existing.file_id, "fileKey": existing.key, "isExisting": True}
        coll = self.collections[upload.collection]
        lake_file = LakeFile(
            _new_id(),
            name,
            f"{coll.storage_path}/{name}",
            f"{coll.storage_path}_{name}",
            coll.name,
            upload.id,
        )
        self.files[lake_file.file_id] = lake_file
        return {"fileId": lake_file.file_id, "fileKey": lake_file.key}

    def _pending_file(self, body: dict[str, Any]) -> LakeFile:
        _require(body, "fileId", "fileKey")
        lake_file = self.files.get(body["fileId"]) if isinstance(body["fileId"], str) else None
        if lake_file is None or lake_file.key != body["fileKey"]:
            raise DatalakeError(404, f"File {body['fileId']} with key {body['fileKey']} not found")
        return lake_file

    def presign(self, body: dict[str, Any], base_url: str) -> dict[str, Any]:
        lake_file = self._pending_file(body)
        parts = body.get("parts")
        if not isinstance(parts, int) or isinstance(parts, bool) or not 1 <= parts <= MAX_PARTS:
            raise DatalakeError(400, f"parts must be 1 to {MAX_PARTS}")
        lake_file.content_type = str(body.get("contentType") or "application/octet-stream")
        if not lake_file.s3_upload_id or lake_file.part_count != parts:
            lake_file.s3_upload_id, lake_file.part_count, lake_file.parts = uuid.uuid4().hex, parts, {}
        urls = []
        for n in range(1, parts + 1):
            query = f"uploadId={lake_file.s3_upload_id}&partNumber={n}"
            signature = self.sign(f"PUT\n{lake_file.key}\n{query}")
            urls.append(
                {
                    "signedUrl": f"{base_url}/_s3/{lake_file.key}?{query}&X-Amz-Signature={signature}",
                    "PartNumber": n,
                }
            )
        return {"parts": urls}

    def put_part(self, key: str, args: dict[str, str], data: bytes) -> str:
        """Store one presigned part; return its ETag (the md5, quoted as S3 does). Raise
        DatalakeError 403 on a bad signature (SigV4 signs only the host: the
        Content-Type is not checked), 500 while ``fail_puts`` lasts,
        404 on an unknown upload."""
        query = f"uploadId={args.get('uploadId', '')}&partNumber={args.get('partNumber', '')}"
        if not hmac.compare_digest(args.get("X-Amz-Signature", ""), self.sign(f"PUT\n{key}\n{query}")):
            raise DatalakeError(403, "SignatureDoesNotMatch")
        if self.fail_puts > 0:
            self.fail_puts -= 1
            raise DatalakeError(500, "InternalError")
        lake_file = next((f for f in self.files.values() if f.s3_upload_id == args["uploadId"]), None)
        if lake_file is None or lake_file.key != key:
            raise DatalakeError(404, "NoSuchUpload")
        lake_file.parts[int(args["partNumber"])] = data
        return f'"{hashlib.md5(data).hexdigest()}"'

    def finalize(self, body: dict[str, Any]) -> None:
        lake_file = self._pending_file(body)
        upload = self._upload(body.get("uploadId"))
        if lake_file.upload_id != upload.id:
            raise DatalakeError(406, f"File {lake_file.file_id} is not part of upload {upload.id}")
        given = body.get("parts")
        if not isinstance(given, list) or not given:
            raise DatalakeError(400, "parts must be a non-empty list of {PartNumber, ETag}")
        numbers = [p.get("PartNumber") if isinstance(p, dict) else None for p in given]
        if numbers != list(range(1, lake_file.part_count + 1)):
            raise DatalakeError(
                400, f"InvalidPartOrder: expected parts 1..{lake_file.part_count}, got {numbers}"
            )
        for part in given:
            data = lake_file.parts.get(part["PartNumber"])
            etag = str(part.get("ETag", "")).strip('"')
            if data is None or etag != hashlib.md5(data).hexdigest():
                raise DatalakeError(
                    400, f"InvalidPart: part {part['PartNumber']} ETag {etag!r} does not match"
                )
            if part["PartNumber"] < lake_file.part_count and len(data) < MIN_PART_SIZE:
                raise DatalakeError(400, f"EntityTooSmall: part {part['PartNumber']}")
        lake_file.data = b"".join(lake_file.parts[n] for n in sorted(lake_file.parts))
        lake_file.parts, lake_file.metadata = {}, dict(upload.metadata)
        lake_file.width, lake_file.height = _image_size(lake_file.data)
        lake_file.created_at = datetime.datetime.now(datetime.UTC).isoformat(timespec="milliseconds")
        self.objects[lake_file.key] = lake_file.data
        upload.finalized[lake_file.name] = lake_file

    def complete(self, upload_id: str) -> list[str]:
        """Close an upload and start its job; return the unique names of its finalized files."""
        upload = self._upload(upload_id)
        if not upload.completed:
            upload.completed = True
            job = self.jobs[upload.job_id]
            job.before, job.outcome = list(self.job_before), self.job_outcome
            if not job.before:
                self._finish(job)
        return [f.unique_name for f in upload.finalized.values()]

    def _finish(self, job: Job) -> None:
        upload = self.uploads[job.upload_id]
        job.status, job.progress = job.outcome, 100.0
        if job.outcome == JOB_COMPLETED:
            self.collections[upload.collection].files.update(upload.finalized)
        else:  # a failed job indexes nothing: the files are not in the lake
            for lake_file in upload.finalized.values():
                self.objects.pop(lake_file.key, None)

    def job_status(self, job_id: str) -> dict[str, Any]:
        job = self.jobs.get(job_id)
        if job is None:
            raise DatalakeError(404, f"Job {job_id} not found")
        if self.uploads[job.upload_id].completed and job.status in (JOB_IN_PROGRESS, JOB_QUEUED):
            if job.before:
                job.status, job.progress = job.before.pop(0), 50.0
            else:
                self._finish(job)
        return {"isSuccess": True, "status": job.status, "progress": job.progress}

    # -- collections and labels -----------------------------------------------------------------

    def collection_id(self, body: dict[str, Any]) -> dict[str, Any]:
        _require(body, "collectionName")
        coll = self.collections.get(body["collectionName"])
        if coll is None or coll.object_type != body.get("objectType", coll.object_type):
            raise DatalakeError(406, f"Collection {body['collectionName']} not found")
        return {"collectionId": coll.id}

    def collection_details(self, body: dict[str, Any]) -> dict[str, Any]:
        coll = next((c for c in self.collections.values() if c.id == body.get("collectionId")), None)
        if coll is None:
            raise DatalakeError(404, f"Collection {body.get('collectionId')} not found")
        details = {"name": coll.name, "storagePath": coll.storage_path, "fileCount": len(coll.files)}
        wanted = body.get("requiredMetaObj") or {}
        item = {k: v for k, v in details.items() if not wanted or wanted.get(k)}
        return {"isSuccess": True, "itemDetails": item}

    def label_references(self, body: dict[str, Any]) -> dict[str, Any]:
        """Given ``{"labels": {label: {attribute: [values]}}}``, return each label's reference,
        creating the labels, attributes and values the lake does not know yet."""
        labels = body.get("labels")
        if not isinstance(labels, dict):
            raise DatalakeError(400, "labels must be an object")
        out = {}
        for text, attributes in labels.items():
            ref = self.labels.setdefault(text, {"ref": _new_id(), "color": "#22A7F0", "texts": {}})
            for attr, values in (attributes or {}).items():
                a = ref["texts"].setdefault(attr, {"ref": _new_id(), "texts": {}})
                for value in values:
                    a["texts"].setdefault(str(value), _new_id())
            out[text] = ref
        return out
