"""The Data Lake sink: a LayerNext Data Lake, spoken the way the ``layernext`` 2.3.4 client does.

The backend is closed source; the official client is the contract (``shared/specs/datalake.md``),
and where it ignores an answer this sink checks it. Every call goes to ``{url}/datalake/...``
with ``Authorization: Basic base64(api_key:secret)`` over one :class:`HttpTransport`.

- :meth:`probe`: the SDK's compatibility check (``sdk/compatibility/2.3.4``).
- :meth:`upload_image`: one image per upload, as ``upload_files_to_collection`` on one file:
  ``uploadMetadataInCollection`` (the record as the file's metadata) ->
  ``fileUpload/initializeMultipartUpload`` (``isExisting``: the lake holds that name, nothing is
  sent) -> ``getMultipartPreSignedUrls`` -> presigned ``PUT``s (each part's ETag must be the md5
  of its bytes, as S3 answers for a part) -> ``finalizeMultipartUpload`` ->
  ``collectionUploadingStatus/{uploadId}/complete`` (which must list the file: the SDK ignores
  it) -> the job's status, polled (bounded by
  ``job_timeout``) until 2 (completed) or 4 (failed: :class:`SinkRejected`; the SDK reports it
  as completed). A job still running at the bound is polled first on the next try of the same
  image, so a retry never makes a second upload of it.
- :meth:`lookup_images`: ``metadata/getItemDetails`` of ``{storagePath}_{file name}`` (the SDK's
  ``get_file_details``; the collection's storage path from ``getCollectionIdByName`` and
  ``getCollectionDetails``, once). The lake reports the file's ``fileSize`` and the metadata the
  sink wrote, ``md5`` among them: an image is held when both match; a file of that name whose
  size or md5 differs, or that has no ``md5`` (not sent by this sink), is reported with another
  md5 (a conflict: the lake keeps one file per name in a collection).
- :meth:`upload_annotations`: insect outlines as polygons (and/or rectangles, ``shapes``) in
  pixels through ``metadata/operationdata/{operation id}/update``, the operation id being
  ``<algo_name>@<algo_version>``: sending a batch again replaces it. The answer must say
  ``isSuccess``.
- :meth:`lookup_annotations`: the collection's annotation export (``getAnnotations``, what the
  SDK's ``download_collection`` reads), machine annotations, page by page; each file's
  ``operationIds`` name the detector versions the lake holds for it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote

from pydantic import Field, field_validator

from agent.errors import SinkAuthError, SinkForbidden, SinkProtocolError, SinkRejected, SinkUnreachable
from agent.registry import register
from agent.settings import Duration
from agent.sinks import transport  # the HTTP transport: loaded when a sink is made
from agent.sinks.base import AnnotationBatch, ImageKey, ImageRecord, RemoteImage, SinkSettings, check_url
from agent.sinks.credentials import Credentials, load_credentials
from agent.sinks.datalake_shapes import (
    Shape,
    annotation_objects,
    file_metadata,
    operation_id,
    parse_operation_id,
)
from agent.sinks.datalake_wire import ABSENT, IMAGE_COLLECTION, LakeWire, lake_error, strings
from agent.sinks.throttle import Bandwidth

__all__ = ["DataLakeSettings", "DataLakeSink", "make_sink"]

log = logging.getLogger(__name__)

SDK_VERSION = "2.3.4"
JOB_IN_PROGRESS, JOB_COMPLETED, JOB_QUEUED, JOB_FAILED = 1, 2, 3, 4
#: The SDK's part size (``MULTI_PART_UPLOAD_CHUNK_SIZE``); S3's least part is 5 MiB.
DEFAULT_PART_SIZE = 100 * 2**20
#: Files per page of the annotation export (the SDK's page size).
EXPORT_PAGE_SIZE = 250
MAX_EXPORT_PAGES = 10_000
#: Waits between job polls (seconds); the last repeats until ``job_timeout``.
JOB_POLL_WAITS = (0.2, 0.5, 1.0, 2.0, 5.0)


class DataLakeSettings(SinkSettings):
    """``[[sink]] type = "datalake"``: a LayerNext Data Lake collection.

    The credentials file holds ``api_key:secret``: an API key of the lake and its secret (the
    pair the official client takes, ``LayerNextClient(api_key, secret, url)``).
    """

    type: Literal["datalake"]
    #: The lake's address (``https://lake.example.org``); calls go to ``{url}/datalake/...``.
    url: str
    #: The image collection the trap's pictures go to (made by the first upload).
    collection: str
    credential_name: str = "datalake-key"
    #: Bytes per part of a multipart upload (the SDK's 100 MiB; at least S3's 5 MiB).
    part_size: int = Field(default=DEFAULT_PART_SIZE, ge=5 * 2**20, le=5 * 2**30)
    #: How long an upload waits for the lake's job to index the file before trying later.
    job_timeout: Duration = Field(default=120.0, ge=1, le=3600)
    #: The label of every insect outline, and the shapes sent per insect.
    label: str = Field(default="insect", min_length=1, max_length=64)
    shapes: tuple[Shape, ...] = Field(default=("polygon",), min_length=1, max_length=2)

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        return check_url(v)

    @field_validator("collection")
    @classmethod
    def _collection(cls, v: str) -> str:
        if not 1 <= len(v) <= 128 or "/" in v or v != v.strip() or not v.isprintable():
            raise ValueError(f"must be 1-128 printable characters without '/' or edge spaces, got {v!r}")
        return v


class DataLakeSink:
    """A client of one Data Lake collection, safe to share between upload threads."""

    def __init__(
        self,
        url: str,
        collection: str,
        credentials: Credentials,
        *,
        name: str = "datalake",
        section: str = "sink.datalake",
        part_size: int = DEFAULT_PART_SIZE,
        job_timeout: float = 120.0,
        label: str = "insect",
        shapes: tuple[Shape, ...] = ("polygon",),
        connect_timeout: float = 10.0,
        read_timeout: float = 120.0,
        ca_bundle: Path | None = None,
        pool_size: int = 4,
        sleep: Callable[[float], None] | None = None,
    ) -> None:
        """``sleep`` waits between job polls (default: a wait that :meth:`close` cuts). Raise
        ConfigError if a timeout is not a positive number or the CA bundle is not readable."""
        self.name = name
        self.url = url.rstrip("/")
        self.collection = collection
        self.part_size, self.job_timeout = part_size, job_timeout
        self.label, self.shapes = label, shapes
        self.http = transport.HttpTransport(
            "the Data Lake",
            section,
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            ca_bundle=ca_bundle,
            pool_size=pool_size,
        )
        self.wire = LakeWire(self.http, url, credentials)
        self._stopped = threading.Event()
        self._sleep = sleep or self._wait
        self._lock = threading.Lock()
        self._collection_id: str | None = None
        self._storage_path: str | None = None
        self._label_ref: dict[str, Any] | None = None
        #: Image name -> the job of an upload whose indexing outlasted ``job_timeout``.
        self._pending_jobs: dict[str, str] = {}

    @property
    def requests_sent(self) -> int:
        """Requests sent (for status and benchmarks)."""
        return self.http.requests_sent

    def close(self) -> None:
        """Stop: every request in flight is cut at once, a job poll stops waiting."""
        self._stopped.set()
        self.http.close()

    def _wait(self, seconds: float) -> None:
        self._stopped.wait(seconds)

    # -- the collection -------------------------------------------------------------------------

    def _collection(self) -> tuple[str, str] | None:
        """Return the collection's (id, storage path), or None while the lake has no such
        collection (it is made by the first upload)."""
        with self._lock:
            if self._collection_id is not None and self._storage_path is not None:
                return self._collection_id, self._storage_path
        found = self.wire.collection(self.collection)
        if found is None:
            return None
        cid, path = found
        with self._lock:
            self._collection_id, self._storage_path = cid, path
        return cid, path

    # -- the Sink protocol ----------------------------------------------------------------------

    def probe(self) -> None:
        """Check the lake answers, takes our key, and speaks the SDK 2.3.4 protocol. Raise
        SinkAuthError on a refused key, SinkForbidden if the lake no longer takes this protocol."""
        route = f"api/client/sdk/compatibility/{SDK_VERSION}"
        try:
            answer = self.wire.api("GET", route)
        except SinkAuthError:
            raise SinkAuthError(
                "the Data Lake refused the API key and secret (401); check the credentials file"
            ) from None
        if not isinstance(answer, dict) or not isinstance(answer.get("isCompatible"), bool):
            raise SinkProtocolError(f"/{route}: the answer is not the Data Lake's")
        if not answer["isCompatible"]:
            why = " ".join(str(answer.get("message") or "").split())[:200]
            raise SinkForbidden(f"the Data Lake no longer takes the protocol of SDK {SDK_VERSION}: {why}")

    def lookup_images(self, images: list[ImageRecord]) -> dict[ImageKey, RemoteImage]:
        found: dict[ImageKey, RemoteImage] = {}
        if not images:
            return found
        collection = self._collection()
        if collection is None:
            return found
        route = "/api/client/metadata/getItemDetails"
        wanted = {"fileSize": True, "md5": True}
        for image in images:
            body = {"uniqueFileName": f"{collection[1]}_{image.name}", "requiredMetaObj": wanted}
            answer = self.wire.api_or_absent("POST", route[1:], json=body)
            if answer is ABSENT:
                continue  # the lake holds no file of that name
            item = answer.get("itemDetails") if isinstance(answer, dict) else None
            file_id = strings(route, item, "id")["id"]
            assert isinstance(item, dict)
            size, md5 = item.get("fileSize"), item.get("md5")
            if md5 == image.md5 and size == image.size:
                found[image.key] = RemoteImage(image.md5, remote_id=file_id)
            else:  # another file under that name, or one this sink did not send
                found[image.key] = RemoteImage(f"{md5 or 'no-md5'}/{size}", remote_id=file_id)
        return found

    def upload_image(self, image: ImageRecord, data: bytes, throttle: Bandwidth | None = None) -> None:
        with self._lock:
            pending = self._pending_jobs.get(image.name)
        if pending is not None:
            with contextlib.suppress(SinkRejected):  # failed: it is uploaded anew
                self._wait_for_job(image, pending)
                return
        route = "/api/client/uploadMetadataInCollection"
        begin = strings(
            route,
            self.wire.api(
                "POST",
                route[1:],
                json={
                    "collectionType": IMAGE_COLLECTION,
                    "collectionName": self.collection,
                    "metaDataObject": file_metadata(image),
                    "isOverrideMetaData": False,
                    "storagePrefixPath": None,
                    "objectKeyList": [image.name],
                },
            ),
            "storageType",
            "uploadId",
            "jobId",
        )
        if begin["storageType"] != "AWS_S3":
            raise SinkProtocolError(
                f"{route}: the lake stores files in {begin['storageType']}; this sink uploads to AWS S3 only"
            )
        upload_id, job_id = begin["uploadId"], begin["jobId"]
        route = "/api/client/fileUpload/initializeMultipartUpload"
        init = self.wire.api(
            "POST",
            route[1:],
            json={"fileName": image.name, "collectionName": self.collection, "uploadId": upload_id},
        )
        if isinstance(init, dict) and init.get("uploadRemovedFile"):
            raise SinkRejected(f"{route}: {image.name} was removed from the collection and is in another one")
        ids = strings(route, init, "fileId", "fileKey")
        if not init.get("isExisting"):
            parts, last_url = self.wire.put_parts(ids, data, self.part_size, throttle)
            route = "/api/client/fileUpload/finalizeMultipartUpload"
            self.wire.api(
                "POST",
                route[1:],
                json={**ids, "parts": parts, "uploadId": upload_id, "finalizeUrl": last_url},
            )
        route = f"api/client/collectionUploadingStatus/{quote(upload_id)}/complete"
        done = self.wire.api("GET", route + "?isReturnedUniqueName=True")  # as for one file
        listed = done.get("uploadedFileList") if isinstance(done, dict) else None
        ours = [n for n in listed or () if isinstance(n, str) and n.endswith("_" + image.name)]
        if not init.get("isExisting") and isinstance(listed, list) and not ours:
            raise SinkRejected(f"/{route}: the Data Lake does not list {image.name} as uploaded")
        self._wait_for_job(image, job_id)

    def _wait_for_job(self, image: ImageRecord, job_id: str) -> int:
        """Poll the upload's job until it completes (return 2). Raise SinkRejected if it failed
        (status 4, with the lake's message if it gave one), SinkUnreachable if it still runs
        after ``job_timeout`` (the next try of the image polls it again)."""
        waited, waits, wait = 0.0, iter(JOB_POLL_WAITS), 0.0
        while True:
            status, message = self.wire.job_status(job_id)
            if status in (JOB_COMPLETED, JOB_FAILED):
                with self._lock:
                    self._pending_jobs.pop(image.name, None)
                if status == JOB_FAILED:
                    why = f": {message}" if message else ""
                    raise SinkRejected(
                        f"the Data Lake's job {job_id} failed (status 4) to index {image.name}{why}"
                    )
                return status
            wait = next(waits, wait)
            if waited + wait > self.job_timeout:
                with self._lock:
                    self._pending_jobs[image.name] = job_id
                raise SinkUnreachable(
                    f"the Data Lake's job {job_id} has not indexed {image.name} after {waited:g}s "
                    "(it is checked again next time)"
                )
            self._sleep(wait)
            waited += wait
            if self._stopped.is_set():
                raise SinkUnreachable(f"job {job_id}: stopped, the sync is stopping")

    def lookup_annotations(self, images: list[ImageRecord]) -> set[tuple[ImageKey, str, str]]:
        out: set[tuple[ImageKey, str, str]] = set()
        by_name = {image.name: image.key for image in images}
        collection = self._collection() if images else None
        if collection is None:
            return out
        for page in range(MAX_EXPORT_PAGES):
            resources, more = self.wire.export_page(collection[0], page, EXPORT_PAGE_SIZE)
            for name, operations in resources:
                key = by_name.get(name)
                parsed = [parse_operation_id(op) for op in operations if key is not None]
                out.update((key, *p) for p in parsed if key is not None and p is not None)
            if not more:
                return out
        raise SinkProtocolError(
            f"the Data Lake's annotation export did not end after {MAX_EXPORT_PAGES} pages"
        )

    def upload_annotations(self, image: ImageRecord, batch: AnnotationBatch) -> None:
        collection = self._collection()
        if collection is None:
            raise SinkRejected(f"annotations: the Data Lake has no collection {self.collection!r} yet")
        try:
            objects = annotation_objects(image, batch, self.shapes, self._label(), self.label)
        except ValueError as e:
            raise SinkRejected(f"annotations of {image.name}: {e}") from None
        update = {
            "objectKey": f"{collection[1]}_{image.name}",
            "storagePath": None,
            "bucketName": None,
            "jobId": None,
            "fileName": None,
            "data": {"annotationObjects": objects, "isUserAnnotated": False},
        }
        op = operation_id(batch.algo_name, batch.algo_version)
        answer = self.wire.api(
            "POST",
            f"api/metadata/operationdata/{quote(op, safe='')}/update",
            params={"isNormalized": "False"},
            json={
                "metaUpdatesArray": json.dumps([update]),
                "sessionId": f"{time.time():.6f}",
                "totalImageCount": 1,
                "uploadedImageCount": 1,
                "operationMode": 2,
                "operationType": 1,
            },
        )
        if not isinstance(answer, dict) or answer.get("isSuccess") is not True:
            raise SinkRejected(lake_error("/api/metadata/operationdata/update", answer))

    def _label(self) -> dict[str, Any]:
        """Return the label's reference (``system/label/references`` makes it if new)."""
        with self._lock:
            if self._label_ref is not None:
                return self._label_ref
        ref = self.wire.label_reference(self.label)
        with self._lock:
            self._label_ref = ref
        return ref


@register("sink", DataLakeSettings)
def make_sink(config: DataLakeSettings, environ: Mapping[str, str] | None = None) -> DataLakeSink:
    """Given a Data Lake sink's settings, return its sink. Raise CredentialsError if the
    ``api_key:secret`` file is missing, malformed or readable by others."""
    return DataLakeSink(
        config.url,
        config.collection,
        load_credentials(config, environ),
        name=config.name,
        section=config.section,
        part_size=config.part_size,
        job_timeout=config.job_timeout,
        label=config.label,
        shapes=config.shapes,
        **config.http_options(),
    )
