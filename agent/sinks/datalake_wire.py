"""The Data Lake's wire: its API calls with the key, "not found" answers, presigned PUTs.

Every call goes to ``{url}/datalake/{path}`` with ``Authorization: Basic base64(api_key:secret)``
(never to the storage: a presigned URL carries its own signature) over one
:class:`agent.sinks.http.HttpTransport`, so every call has its timeouts, a deadline, a byte cap
and a typed failure (:mod:`agent.sinks.http`). Errors are LoopBack's ``{"error": {"message"}}``,
read into the exception's message.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit

from agent.errors import SinkForbidden, SinkProtocolError, SinkRejected
from agent.sinks.credentials import Credentials
from agent.sinks.throttle import Bandwidth, ThrottledBody

if TYPE_CHECKING:
    from agent.sinks.http import HttpTransport


#: ``collectionType``/``objectType`` of an image collection.
IMAGE_COLLECTION = 5
JOB_STATUSES = (1, 2, 3, 4)  # in progress, completed, queued, failed
#: What :meth:`LakeWire.api_or_absent` returns for "not found".
ABSENT = object()


def lake_error(route: str, answer: Any) -> str:
    """Given an answer that says it failed, return its message for an error."""
    if isinstance(answer, dict):
        for key in ("message", "error"):
            value = answer.get(key)
            if isinstance(value, dict):
                value = value.get("message")
            if isinstance(value, str) and value:
                return f"{route}: the Data Lake refused: {' '.join(value.split())[:200]}"
    return f"{route}: the Data Lake refused"


def strings(route: str, answer: Any, *names: str) -> dict[str, str]:
    """Given a JSON answer, return its fields ``names`` (non-empty strings). Raise
    SinkProtocolError if one is missing."""
    if not isinstance(answer, dict) or not all(isinstance(answer.get(n), str) and answer[n] for n in names):
        raise SinkProtocolError(f"{route}: the Data Lake's answer lacks {', '.join(names)}")
    return {n: answer[n] for n in names}


class LakeWire:
    """The calls of one sink to one lake, safe to share between threads."""

    def __init__(self, http: HttpTransport, url: str, credentials: Credentials) -> None:
        self.http, self.url = http, url.rstrip("/")
        secret = f"{credentials.username}:{credentials.password}".encode()
        self._auth = {"Authorization": "Basic " + base64.b64encode(secret).decode("ascii")}

    def api(self, method: str, path: str, **kw: Any) -> Any:
        """Call ``{url}/datalake/{path}`` with the key; return the JSON answer (None if empty)."""
        route = "/" + path.split("?")[0]
        headers = {**self._auth, **kw.pop("headers", {})}
        return self.http.call_json(method, f"{self.url}/datalake/{path}", route, headers=headers, **kw)

    def api_or_absent(self, method: str, path: str, **kw: Any) -> Any:
        """Like :meth:`api`, but return :data:`ABSENT` if the lake answers "no content" (204,
        as the SDK expects of its lookups) or 404/406 with its own error body ("not found").
        Raise SinkProtocolError for a 404/406 that is not the lake's (a wrong URL behind a proxy
        must not read as "the lake holds nothing")."""
        route = "/" + path.split("?")[0]
        headers = {**self._auth, **kw.pop("headers", {})}
        with self.http.watch():
            response = self.http.send(method, f"{self.url}/datalake/{path}", route, headers=headers, **kw)
            if response.status_code == 204:
                response.close()
                return ABSENT
            if response.status_code not in (404, 406):
                body = self.http.read(route, self.http.check(route, response, read_error=True))
                try:
                    return json.loads(body) if body.strip() else None
                except ValueError:
                    raise SinkProtocolError(
                        f"{route}: the Data Lake answered something that is not JSON"
                    ) from None
            body = self.http.read(route, response)
        try:
            error = json.loads(body).get("error")
        except (ValueError, AttributeError):
            error = None
        if not isinstance(error, dict):
            raise SinkProtocolError(
                f"{route}: {response.status_code} without the Data Lake's error body; check the url"
            )
        return ABSENT

    def storage_url(self, url: Any) -> str:
        """Given a presigned URL from the lake, return it. Raise SinkProtocolError unless it is
        https, or http to the lake's own host (a double on this machine)."""
        parts = urlsplit(url) if isinstance(url, str) else None
        lake = urlsplit(self.url)
        if parts is None or not parts.hostname or parts.scheme not in ("https", "http"):
            raise SinkProtocolError("presigned URL: the Data Lake sent no usable storage URL")
        if parts.scheme == "http" and (lake.scheme, lake.hostname) != ("http", parts.hostname):
            raise SinkProtocolError(
                f"presigned URL: plain http to {parts.hostname} refused; storage must be https"
            )
        return str(url)

    def put(self, url: str, piece: memoryview, throttle: Bandwidth | None) -> str:
        """PUT one part to a presigned URL; return its ETag (quotes stripped). Raise
        SinkRejected unless the storage answers 200 with the md5 of the part as its ETag (a 403
        too: an expired or refused signature is this URL's, the next try gets new ones)."""
        route = "presigned PUT"
        with self.http.watch():
            response = self.http.send(
                "PUT",
                self.storage_url(url),
                route,
                data=ThrottledBody(piece, throttle),
                headers={"Content-Type": "image/jpeg"},
            )
            try:
                self.http.check(route, response, read_error=True)
            except SinkForbidden as e:
                raise SinkRejected(f"{e}; the next try asks for new URLs") from None
            etag = response.headers.get("ETag", "").strip('"')
            self.http.read(route, response)
        if response.status_code != 200 or etag != hashlib.md5(piece).hexdigest():
            raise SinkRejected(f"{route}: the storage did not keep the part as sent (ETag {etag!r})")
        return etag

    def put_parts(
        self, ids: dict[str, str], data: bytes, part_size: int, throttle: Bandwidth | None
    ) -> tuple[list[dict[str, Any]], str]:
        """Given a file's ``fileId``/``fileKey``, ask for presigned URLs and send the bytes in
        parts; return ``[{PartNumber, ETag}]`` and the last URL (the SDK's ``finalizeUrl``).
        Raise SinkProtocolError if the lake does not send one URL per part, SinkRejected if a
        part is not stored as sent."""
        count = max(1, math.ceil(len(data) / part_size))
        route = "/api/client/fileUpload/getMultipartPreSignedUrls"
        answer = self.api("POST", route[1:], json={**ids, "parts": count, "contentType": "image/jpeg"})
        urls = answer.get("parts") if isinstance(answer, dict) else None
        numbers = [p.get("PartNumber") if isinstance(p, dict) else None for p in urls or ()]
        if not isinstance(urls, list) or numbers != list(range(1, count + 1)):
            raise SinkProtocolError(f"{route}: the Data Lake did not send one URL per part 1..{count}")
        view, done, url = memoryview(data), [], ""
        for n, part in enumerate(urls, start=1):
            url = part.get("signedUrl")
            done.append(
                {"PartNumber": n, "ETag": self.put(url, view[(n - 1) * part_size : n * part_size], throttle)}
            )
        return done, url

    def collection(self, name: str) -> tuple[str, str] | None:
        """Given an image collection's name, return its id and storage path (the prefix of its
        files' unique names), or None if the lake has no such collection."""
        route = "/api/client/metadata/getCollectionIdByName"
        answer = self.api_or_absent(
            "POST", route[1:], json={"collectionName": name, "objectType": IMAGE_COLLECTION}
        )
        if answer is ABSENT:
            return None
        cid = strings(route, answer, "collectionId")["collectionId"]
        route = "/api/client/metadata/getCollectionDetails"
        body = {"collectionId": cid, "requiredMetaObj": {"storagePath": True}}
        details = self.api("POST", route[1:], json=body)
        item = details.get("itemDetails") if isinstance(details, dict) else None
        return cid, strings(route, item, "storagePath")["storagePath"]

    def label_reference(self, label: str) -> dict[str, Any]:
        """Given a label's text, return its reference (``{"ref", "color", ...}``), made by the
        lake if new. Raise SinkProtocolError if the answer holds none."""
        route = "/api/client/system/label/references"
        answer = self.api("POST", route[1:], json={"labels": {label: {}}, "username": "sticky-agent"})
        ref = answer.get(label) if isinstance(answer, dict) else None
        if not isinstance(ref, dict) or not isinstance(ref.get("ref"), str):
            raise SinkProtocolError(f"{route}: the Data Lake sent no reference for the label {label!r}")
        return ref

    def job_status(self, job_id: str) -> tuple[int, str]:
        """Given a job id, return its status (1 in progress, 2 completed, 3 queued, 4 failed)
        and the answer's message, if any. Raise SinkProtocolError if it holds no status."""
        route = f"api/client/jobs/{quote(job_id)}/getStatus"
        answer = self.api("GET", route)
        status = answer.get("status") if isinstance(answer, dict) else None
        if not isinstance(answer, dict) or answer.get("isSuccess") is False or status not in JOB_STATUSES:
            raise SinkProtocolError(f"/{route}: the Data Lake's answer has no job status")
        assert isinstance(status, int)
        message = answer.get("message") or answer.get("error") or ""
        return status, " ".join(str(message).split())[:200]

    def export_page(
        self, collection_id: str, page: int, size: int
    ) -> tuple[list[tuple[str, list[str]]], bool]:
        """Given a collection id and a page number, return that page of the machine-annotation
        export as ``[(file name, [operation id, ...])]`` and whether another page follows.
        Raise SinkProtocolError if the answer has no ``data.resourceArray``."""
        route = f"api/client/getAnnotations/{quote(collection_id)}/collection"
        query = {
            "pageNo": page,
            "pageSize": size,
            "operationIdList": "[]",
            "annotationType": "machine",
            "sessionId": f"{time.time():.6f}",
        }
        answer = self.api("GET", route, params=query)
        data = answer.get("data") if isinstance(answer, dict) else None
        resources = data.get("resourceArray") if isinstance(data, dict) else None
        if not isinstance(data, dict) or not isinstance(resources, list):
            raise SinkProtocolError(f"/{route}: the Data Lake's export has no resourceArray")
        out = []
        for resource in resources:
            raw = resource.get("rawAnnotations") if isinstance(resource, dict) else None
            if isinstance(raw, dict) and isinstance(resource.get("fileName"), str):
                ops = [op for op in raw.get("operationIds") or () if isinstance(op, str)]
                out.append((resource["fileName"], ops))
        return out, data.get("nextPage") is True
