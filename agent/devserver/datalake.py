"""A Data Lake (LayerNext) protocol double: what the official ``layernext`` 2.3.4 client uses.

The backend is closed source, so the client is the contract (``../shared/specs/datalake.md``).
Everything lives under ``/datalake`` and needs ``Authorization: Basic base64(api_key:secret)``
(anything else is a 401); errors are LoopBack's ``{"error": {"statusCode", "name", "message"}}``.

- ``GET api/client/sdk/compatibility/{version}`` -> ``{"isCompatible"}`` (2.3.0 and later).
- Upload: ``uploadMetadataInCollection`` (creates the collection, answers ``storageType`` AWS_S3,
  ``uploadId``, ``collectionId``, ``jobId``) -> per file ``fileUpload/initializeMultipartUpload``
  (``isExisting`` for a name the collection already holds: the client skips it) ->
  ``fileUpload/getMultipartPreSignedUrls`` -> presigned ``PUT /_s3/{key}`` (no auth; the signature
  covers key, uploadId and partNumber, as SigV4 with only ``host`` signed; exactly 200 with a quoted
  ``ETag``; the object keeps the ``contentType`` given for the URLs) -> ``fileUpload/finalizeMultipartUpload``
  (part numbers and ETags checked) -> ``collectionUploadingStatus/{uploadId}/complete``.
- ``jobs/{jobId}/getStatus``: the upload's job is completed (2) at once by default; ``job_before``
  gives statuses to answer first (1 in progress, 3 queued) and ``job_outcome=4`` makes it fail
  (its files are then not indexed). Files join the collection only when the job completes.
- Annotations: ``metadata/getCollectionIdByName``, ``system/label/references`` (labels created on
  demand), ``metadata/getCollectionDetails`` (``storagePath``) and the operation-data update
  (:mod:`agent.devserver.datalake_annotations`).
- Reading back: ``metadata/getItemDetails``, ``getAnnotations/{collectionId}/collection`` and the
  presigned GET of an object (:mod:`agent.devserver.datalake_read`).

``state`` records what was stored (``collections``, ``objects``, ``operations``), counts requests
per endpoint (``requests``) and keeps every refusal (``refusals``), since the client ignores many.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
from collections.abc import Iterable
from http import HTTPStatus
from typing import TYPE_CHECKING, Any

from werkzeug.exceptions import HTTPException
from werkzeug.routing import Map, Rule
from werkzeug.wrappers import Request, Response

from agent.devserver.datalake_annotations import update_operation
from agent.devserver.datalake_read import export_annotations, item_details, read_object
from agent.devserver.datalake_state import JOB_COMPLETED, DatalakeError, DatalakeState
from agent.devserver.serving import BackgroundServer

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

CLIENT = "/datalake/api/client"
#: Endpoints answered without the Basic check: the presigned S3 side.
UNAUTHENTICATED = ("object", "object_get")


class DatalakeApp:
    """The WSGI application of the double. ``base_url`` is set by the server once it listens."""

    def __init__(self, state: DatalakeState) -> None:
        self.state = state
        self.base_url = "http://127.0.0.1"
        self.url_map = Map(
            [
                Rule("/_s3/<path:key>", endpoint="object", methods=["PUT"]),
                Rule("/_s3/<path:key>", endpoint="object_get", methods=["GET"]),
                Rule(f"{CLIENT}/sdk/compatibility/<version>", endpoint="compatibility", methods=["GET"]),
                Rule(f"{CLIENT}/uploadMetadataInCollection", endpoint="begin_upload", methods=["POST"]),
                Rule(
                    f"{CLIENT}/fileUpload/initializeMultipartUpload", endpoint="init_file", methods=["POST"]
                ),
                Rule(f"{CLIENT}/fileUpload/getMultipartPreSignedUrls", endpoint="presign", methods=["POST"]),
                Rule(f"{CLIENT}/fileUpload/finalizeMultipartUpload", endpoint="finalize", methods=["POST"]),
                Rule(
                    f"{CLIENT}/collectionUploadingStatus/<upload_id>/complete",
                    endpoint="complete",
                    methods=["GET"],
                ),
                Rule(f"{CLIENT}/jobs/<job_id>/getStatus", endpoint="job_status", methods=["GET"]),
                Rule(f"{CLIENT}/metadata/getCollectionIdByName", endpoint="collection_id", methods=["POST"]),
                Rule(
                    f"{CLIENT}/metadata/getCollectionDetails", endpoint="collection_details", methods=["POST"]
                ),
                Rule(f"{CLIENT}/system/label/references", endpoint="label_references", methods=["POST"]),
                Rule(f"{CLIENT}/metadata/getItemDetails", endpoint="item_details", methods=["POST"]),
                Rule(
                    f"{CLIENT}/getAnnotations/<collection_id>/collection",
                    endpoint="export_annotations",
                    methods=["GET"],
                ),
                Rule("/datalake/api/job/updateJob/basicAuthRequest", endpoint="client_job", methods=["POST"]),
                Rule(
                    "/datalake/api/metadata/operationdata/<op_id>/update",
                    endpoint="operation_update",
                    methods=["POST"],
                ),
            ]
        )

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        request = Request(environ)
        endpoint = "unknown"
        try:
            endpoint, args = self.url_map.bind_to_environ(environ).match()
            with self.state.lock:
                self.state.requests[f"{request.method} {endpoint}"] += 1
            if endpoint not in UNAUTHENTICATED:
                self._authenticate(request)
            response = getattr(self, f"_{endpoint}")(request, **args)
        except DatalakeError as e:
            response = self._refuse(endpoint, e.status, e.message)
        except HTTPException as e:
            response = self._refuse(endpoint, e.code or 500, e.description or e.name)
        out: Iterable[bytes] = response(environ, start_response)
        return out

    def _refuse(self, endpoint: str, status: int, message: str) -> Response:
        with self.state.lock:
            self.state.refusals.append((endpoint, status, message))
        if endpoint in UNAUTHENTICATED:  # S3 answers XML
            body = f"<Error><Code>{message}</Code></Error>"
            return Response(body, status, mimetype="application/xml")
        name = HTTPStatus(status).phrase.replace(" ", "") + "Error"
        return _json({"error": {"statusCode": status, "name": name, "message": message}}, status)

    def _authenticate(self, request: Request) -> None:
        scheme, _, encoded = request.headers.get("Authorization", "").partition(" ")
        try:
            key, _, secret = base64.b64decode(encoded, validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            key, secret = "", ""
        expected = self.state.credentials.get(key)
        if scheme != "Basic" or expected is None or not hmac.compare_digest(secret, expected):
            raise DatalakeError(401, "Authorization Required: unknown API key or wrong secret")

    @staticmethod
    def _body(request: Request) -> dict[str, Any]:
        try:
            body = json.loads(request.get_data())
        except ValueError:
            raise DatalakeError(400, "Request body is not JSON") from None
        if not isinstance(body, dict):
            raise DatalakeError(400, "Request body must be a JSON object")
        return body

    def _call(self, method: str, *args: Any) -> Any:
        with self.state.lock:
            return getattr(self.state, method)(*args)

    # -- endpoints -------------------------------------------------------------------------------

    def _object(self, request: Request, key: str) -> Response:
        args = {k: request.args.get(k, "") for k in ("uploadId", "partNumber", "X-Amz-Signature")}
        etag = self._call("put_part", key, args, request.get_data())
        return Response(b"", 200, headers={"ETag": etag})

    def _object_get(self, request: Request, key: str) -> Response:
        with self.state.lock:
            data = read_object(self.state, key, request.args.get("X-Amz-Signature", ""))
        etag = f'"{hashlib.md5(data).hexdigest()}"'
        return Response(data, 200, mimetype="image/jpeg", headers={"ETag": etag})

    def _compatibility(self, request: Request, version: str) -> Response:
        if not re.fullmatch(r"\d+(\.\d+)*", version):
            raise DatalakeError(400, f"Invalid SDK version {version}")
        if tuple(int(x) for x in version.split(".")) < self.state.min_sdk_version:
            wanted = ".".join(map(str, self.state.min_sdk_version))
            return _json({"isCompatible": False, "message": f"SDK {version} is too old: upgrade to {wanted}"})
        return _json({"isCompatible": True, "message": ""})

    def _begin_upload(self, request: Request) -> Response:
        return _json(self._call("begin_upload", self._body(request)))

    def _init_file(self, request: Request) -> Response:
        return _json(self._call("init_file", self._body(request)))

    def _presign(self, request: Request) -> Response:
        return _json(self._call("presign", self._body(request), self.base_url))

    def _finalize(self, request: Request) -> Response:
        self._call("finalize", self._body(request))
        return _json({"isSuccess": True})

    def _complete(self, request: Request, upload_id: str) -> Response:
        names = self._call("complete", upload_id)
        if request.args.get("isReturnedUniqueName") == "True":
            return _json({"uploadedFileList": names})
        return Response(status=204)

    def _job_status(self, request: Request, job_id: str) -> Response:
        return _json(self._call("job_status", job_id))

    def _collection_id(self, request: Request) -> Response:
        return _json(self._call("collection_id", self._body(request)))

    def _collection_details(self, request: Request) -> Response:
        return _json(self._call("collection_details", self._body(request)))

    def _label_references(self, request: Request) -> Response:
        return _json(self._call("label_references", self._body(request)))

    def _operation_update(self, request: Request, op_id: str) -> Response:
        body = self._body(request)
        with self.state.lock:
            answer = update_operation(self.state, op_id, request.args.get("isNormalized", ""), body)
        return _json(answer)

    def _item_details(self, request: Request) -> Response:
        with self.state.lock:
            return _json(item_details(self.state, self._body(request), self.base_url))

    def _export_annotations(self, request: Request, collection_id: str) -> Response:
        with self.state.lock:
            return _json(export_annotations(self.state, collection_id, dict(request.args), self.base_url))

    def _client_job(self, request: Request) -> Response:
        body = self._body(request)
        with self.state.lock:
            self.state.client_jobs.append(body)
        return _json({"isSuccess": True})


def _json(body: Any, status: int = 200) -> Response:
    return Response(json.dumps(body), status, mimetype="application/json")


class DatalakeDouble(BackgroundServer):
    """The Data Lake double in a background thread: ``with DatalakeDouble({"key": "secret"}) as d:``
    then ``layernext.LayerNextClient("key", "secret", d.url)``. See the module docstring."""

    label = "Data Lake double"

    def __init__(
        self,
        credentials: dict[str, str],
        *,
        job_outcome: int = JOB_COMPLETED,
        job_before: tuple[int, ...] = (),
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.state = DatalakeState(credentials, job_outcome=job_outcome, job_before=job_before)
        super().__init__(DatalakeApp(self.state), host, port)
