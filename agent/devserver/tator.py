"""A Tator protocol double: the REST operations an image uploader uses, as the real server runs them.

Behaviour (``../shared/specs/tator.md``; the real server is cvisionai/tator, ``api/main/rest``):

- ``GET /schema`` (no auth) serves :func:`~agent.devserver.tator_schema.openapi_document`, from
  which the official ``tator`` client builds its functions.
- Every ``/rest`` call needs ``Authorization: Token <token>``. A missing or unknown token, a
  request body that fails the schema, and throttling (over 100 requests in a second per user) are
  all 400 ``{"message", "details"}`` (the server's ``handle_exception`` override); another
  project's objects are a 403; an unknown id is a 404.
- Upload as S3 does it behind Tator: ``UploadInfo`` hands out presigned ``PUT`` URLs (no auth,
  signature checked); one part is stored at once, several parts each answer a quoted ``ETag`` and
  are joined by ``UploadCompletion`` (the ETags and part numbers must match what was put).
  ``DownloadInfo`` signs ``GET`` URLs for stored keys.
- ``CreateMediaList`` takes one ``MediaSpec`` or a list of up to 500 (images only in a list),
  creates the media at once and imports the image from ``url`` afterwards: ``media_files`` stays
  ``{}`` until the import, which the double runs when the media is next read or listed (a slow
  server can be had with ``import_after_reads``: every read and every media list counts as time
  passing). A ``url`` the double cannot resolve leaves the media without
  files, as a failed import job does. No de-duplication: the same spec twice makes two media.
- Attributes are checked against the type's attribute types: unknown names are dropped, a
  required one without a default missing is a 400 ``Missing attribute value``, a wrong type a 400.
- ``CreateLocalizationList`` takes up to 500 specs; coordinates are normalized 0..1; a ``poly``
  type needs ``points``, a ``box`` type ``x, y, width, height``.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import io
import json
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import jsonschema  # type: ignore[import-untyped]
from werkzeug.exceptions import HTTPException
from werkzeug.routing import Map, Rule
from werkzeug.wrappers import Request, Response

from agent.devserver.serving import BackgroundServer
from agent.devserver.tator_localizations import LocalizationRoutes
from agent.devserver.tator_localizations import json_response as _json
from agent.devserver.tator_schema import list_or_one, openapi_document, validation_schema
from agent.devserver.tator_state import (
    MAX_LIST,
    THROTTLE_PER_S,
    EntityType,
    TatorError,
    TatorState,
    check_attributes,
    check_uuid,
    default_types,
    tator_md5,
)

Clock = Callable[[], float]

__all__ = ["EntityType", "TatorDouble", "TatorError", "tator_md5"]

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment


#: Requests a user may make in one second before the server throttles.
class TatorApp(LocalizationRoutes):
    """The WSGI application of the double. ``base_url`` is set by the server once it listens."""

    def __init__(self, state: TatorState, clock: Clock = time.monotonic) -> None:
        self.state = state
        self.clock = clock
        self.base_url = "http://127.0.0.1"
        self.schema_body = json.dumps(openapi_document()).encode()
        self.url_map = Map(
            [
                Rule("/schema", endpoint="schema", methods=["GET"]),
                Rule("/_s3/<path:key>", endpoint="object", methods=["GET", "PUT"]),
                Rule("/rest/MediaType/<int:id>", endpoint="media_type", methods=["GET"]),
                Rule("/rest/LocalizationType/<int:id>", endpoint="localization_type", methods=["GET"]),
                Rule("/rest/UploadInfo/<int:project>", endpoint="upload_info", methods=["GET"]),
                Rule("/rest/UploadCompletion/<int:project>", endpoint="upload_completion", methods=["POST"]),
                Rule("/rest/DownloadInfo/<int:project>", endpoint="download_info", methods=["POST"]),
                Rule("/rest/Medias/<int:project>", endpoint="medias", methods=["GET", "POST"]),
                Rule("/rest/Media/<int:id>", endpoint="media", methods=["GET"]),
                Rule(
                    "/rest/Localizations/<int:project>",
                    endpoint="localizations",
                    methods=["GET", "POST", "DELETE"],
                ),
            ]
        )

    # -- plumbing ------------------------------------------------------------------------------

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        request = Request(environ)
        try:
            endpoint, args = self.url_map.bind_to_environ(environ).match()
            self.state.requests[f"{request.method} {endpoint}"] += 1
            if endpoint not in ("schema", "object"):
                self._authenticate(request)
            response = getattr(self, f"_{endpoint}")(request, **args)
            if self.state.take_lost_answer(f"{request.method} {endpoint}"):
                return _cut(response, environ, start_response)
        except TatorError as e:
            response = _json({"message": e.message, "details": e.details}, e.status)
        except HTTPException as e:
            response = _json({"message": e.description or e.name}, e.code or 500)
        out: Iterable[bytes] = response(environ, start_response)
        return out

    def _authenticate(self, request: Request) -> str:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme != "Token" or not token:
            raise TatorError(400, "Authentication credentials were not provided.")
        with self.state.lock:
            user = self.state.tokens.get(token.strip())
            if user is None:
                raise TatorError(400, "Invalid token.")
            now = self.clock()
            recent = self.state.recent[user]
            while recent and recent[0] <= now - 1.0:
                recent.popleft()
            if len(recent) >= THROTTLE_PER_S:
                raise TatorError(400, "Request was throttled.", "Expected available in 1 second.")
            recent.append(now)
        return user

    def _body(self, request: Request, component: str, listed: bool = False) -> Any:
        """Return the JSON body, validated against ``component`` (or a list of them up to 500 when
        ``listed``). Raise TatorError (400) if it is not JSON or fails the schema."""
        try:
            body = json.loads(request.get_data())
        except ValueError:
            raise TatorError(400, "Request body is not JSON.") from None
        error = jsonschema.exceptions.best_match(_validator(component, listed).iter_errors(body))
        if error is not None:
            where = "/".join(str(p) for p in error.absolute_path) or "body"
            raise TatorError(400, "Request body failed validation.", f"{where}: {error.message}")
        return body

    def _project(self, project: int) -> None:
        if all(t.project != project for t in self.state.types.values()):
            raise TatorError(403, "You do not have permission to perform this action.")

    def _presigned(self, key: str, **query: str) -> str:
        params = "&".join(f"{k}={v}" for k, v in query.items())
        signature = self.state.sign(f"{key}?{params}")
        return f"{self.base_url}/_s3/{key}?{params}&X-Amz-Signature={signature}"

    # -- objects (the S3 side) ---------------------------------------------------------------------

    def _object(self, request: Request, key: str) -> Response:
        query = [(k, v) for k, v in request.args.items(multi=True) if k != "X-Amz-Signature"]
        params = "&".join(f"{k}={v}" for k, v in query)
        if not hmac.compare_digest(
            request.args.get("X-Amz-Signature", ""), self.state.sign(f"{key}?{params}")
        ):
            return Response(
                "<Error><Code>SignatureDoesNotMatch</Code></Error>", 403, mimetype="application/xml"
            )
        with self.state.lock:
            if request.method == "GET":
                data = self.state.objects.get(key)
                if data is None:
                    return Response("<Error><Code>NoSuchKey</Code></Error>", 404, mimetype="application/xml")
                return Response(data, mimetype="image/jpeg")
            body = request.get_data()
            upload = self.state.uploads.get(request.args.get("uploadId", ""))
            if upload is None or upload["key"] != key:
                return Response("<Error><Code>NoSuchUpload</Code></Error>", 404, mimetype="application/xml")
            part = int(request.args.get("partNumber", "1"))
            upload["parts"][part] = body
            if upload["num_parts"] == 1:
                self.state.objects[key] = body
        return Response(b"", 200, headers={"ETag": f'"{hashlib.md5(body).hexdigest()}"'})

    # -- REST -----------------------------------------------------------------------------------------

    def _schema(self, request: Request) -> Response:
        return Response(self.schema_body, mimetype="application/json")

    def _media_type(self, request: Request, id: int) -> Response:
        t = self.state.types.get(id)
        if t is None or t.dtype not in ("image", "video"):
            raise TatorError(404, f"MediaType {id} not found!")
        attrs = [a.as_dict() for a in t.attribute_types]
        return _json(
            {"id": t.id, "project": t.project, "name": t.name, "dtype": t.dtype, "attribute_types": attrs}
        )

    def _upload_info(self, request: Request, project: int) -> Response:
        self._project(project)
        try:
            num_parts = int(request.args.get("num_parts", "1"))
        except ValueError:
            num_parts = 0
        if not 1 <= num_parts <= 10000:
            raise TatorError(400, "Request parameters failed validation.", "num_parts: 1 to 10000")
        upload_id = uuid.uuid4().hex
        key = f"_uploads/{time.strftime('%Y-%m-%d')}/1/{project}/1/{uuid.uuid4()}"
        with self.state.lock:
            self.state.uploads[upload_id] = {"key": key, "num_parts": num_parts, "parts": {}}
        urls = [self._presigned(key, uploadId=upload_id, partNumber=str(n)) for n in range(1, num_parts + 1)]
        return _json({"urls": urls, "key": key, "upload_id": upload_id})

    def _upload_completion(self, request: Request, project: int) -> Response:
        self._project(project)
        spec = self._body(request, "UploadCompletionSpec")
        with self.state.lock:
            upload = self.state.uploads.get(spec["upload_id"])
            if upload is None or upload["key"] != spec["key"]:
                raise TatorError(400, "Upload completion failed.", "unknown upload id or key")
            data = []
            for n, part in enumerate(spec["parts"], start=1):
                stored = upload["parts"].get(part["PartNumber"])
                etag = f'"{hashlib.md5(stored).hexdigest()}"' if stored is not None else None
                if part["PartNumber"] != n or etag != part["ETag"]:
                    raise TatorError(400, "Upload completion failed.", f"InvalidPart {part['PartNumber']}")
                data.append(stored)
            self.state.objects[spec["key"]] = b"".join(d for d in data if d is not None)
        return _json({"message": f"Upload completion for {spec['key']} successful!"}, 201)

    def _download_info(self, request: Request, project: int) -> Response:
        self._project(project)
        spec = self._body(request, "DownloadInfoSpec")
        return _json([{"key": k, "url": self._presigned(k, expiration="86400")} for k in spec["keys"]])

    def _resolve(self, url: str | None) -> bytes | None:
        """Given a media spec's ``url``, return the object it names on this double, or None."""
        if not url:
            return None
        parts = urlsplit(url)
        base = urlsplit(self.base_url)
        if parts.netloc != base.netloc or not parts.path.startswith("/_s3/"):
            return None
        key = parts.path[len("/_s3/") :]
        query = "&".join(p for p in parts.query.split("&") if not p.startswith("X-Amz-Signature="))
        signature = dict(p.split("=", 1) for p in parts.query.split("&") if "=" in p).get(
            "X-Amz-Signature", ""
        )
        if not hmac.compare_digest(signature, self.state.sign(f"{key}?{query}")):
            return None
        return self.state.objects.get(key)

    def _create_media(self, project: int, spec: dict[str, Any]) -> dict[str, Any]:
        media_type = self.state.types.get(spec["type"])
        if media_type is None:
            raise TatorError(404, f"MediaType {spec['type']} not found!")
        if media_type.project != project:
            raise TatorError(400, "Media type is not part of project")
        attributes = check_attributes(media_type.attribute_types, spec.get("attributes"))
        section = spec.get("section")
        if section:
            self.state.sections.setdefault(section.lower(), next(self.state.ids))
        media_id = next(self.state.ids)
        media = {
            "id": media_id,
            "project": project,
            "type": media_type.id,
            "name": spec["name"],
            "md5": spec["md5"],
            "gid": spec.get("gid"),
            "uid": spec.get("uid"),
            "elemental_id": check_uuid(spec.get("elemental_id")),
            "attributes": attributes,
            "media_files": {},
            "width": None,
            "height": None,
            "section": self.state.sections.get(section.lower()) if section else None,
        }
        self.state.media[media_id] = media
        self.state.pending[media_id] = [self.state.import_after_reads, spec.get("url")]
        if self.state.import_after_reads == 0:
            self._import(media_id)
        return media

    def _import(self, media_id: int) -> None:
        """Import a media's image (the server's ``_import_image`` job) once its reads are due."""
        pending = self.state.pending.get(media_id)
        if pending is None:
            return
        if pending[0] > 0:
            pending[0] -= 1
            return
        del self.state.pending[media_id]
        data = self._resolve(pending[1])
        if data is None:
            return  # the import job failed: the media never gets files
        from PIL import Image

        try:
            with Image.open(io.BytesIO(data)) as img:
                width, height, fmt = img.width, img.height, (img.format or "jpeg").lower()
        except Exception:
            return
        media = self.state.media[media_id]
        key = f"1/{media['project']}/{media_id}/{media['name']}"
        self.state.objects[key] = data
        self.state.media_bytes[media_id] = data
        files = {"path": key, "size": len(data), "resolution": [height, width], "mime": f"image/{fmt}"}
        media.update(width=width, height=height, media_files={"image": [files], "thumbnail": [dict(files)]})

    def _medias(self, request: Request, project: int) -> Response:
        self._project(project)
        if request.method == "GET":
            return _json(self._media_list(project, request))
        body = self._body(request, "MediaSpec", listed=True)
        specs = body if isinstance(body, list) else [body]
        if not specs:
            raise TatorError(400, "Expected one or more media specs, received zero!")
        with self.state.lock:
            if len(specs) == 1:
                media = self._create_media(project, specs[0])
                message = f"Media object {media['id']} created for image {media['name']} on project {project}"
                ids: Any = [media["id"]] if isinstance(body, list) else media["id"]
                obj: Any = [dict(media)] if isinstance(body, list) else dict(media)
                return _json({"message": message, "id": ids, "object": obj}, 201)
            for spec in specs:
                t = self.state.types.get(spec["type"])
                if t is None or t.dtype != "image":
                    raise TatorError(400, "Multiple media creation only supports images")
            created = []
            for spec in specs:
                try:
                    created.append(self._create_media(project, spec))
                except TatorError:
                    continue  # the server logs "Failed to import" and goes on
            return _json(
                {
                    "message": f"Started import of {len(created)} images!",
                    "id": [m["id"] for m in created],
                    "object": [dict(m) for m in created],
                },
                201,
            )

    def _media_list(self, project: int, request: Request) -> list[dict[str, Any]]:
        args = request.args
        with self.state.lock:
            for media_id in [m["id"] for m in self.state.media.values() if m["project"] == project]:
                self._import(media_id)  # time passes for every media listed
            rows = [m for m in self.state.media.values() if m["project"] == project]
        if "md5" in args:
            rows = [m for m in rows if m["md5"] == args["md5"]]
        if "name" in args:
            rows = [m for m in rows if m["name"].lower() == args["name"].lower()]
        if "elemental_id" in args:
            eid = check_uuid(args["elemental_id"])
            rows = [m for m in rows if m["elemental_id"] == eid]
        if "type" in args:
            rows = [m for m in rows if str(m["type"]) == args["type"]]
        return [dict(m) for m in rows]

    def _media(self, request: Request, id: int) -> Response:
        with self.state.lock:
            if id not in self.state.media:
                raise TatorError(404, f"Media {id} not found!")
            self._import(id)
            return _json(dict(self.state.media[id]))


def _cut(response: Response, environ: WSGIEnvironment, start_response: StartResponse) -> Iterator[bytes]:
    """Send ``response``'s status, headers and half its body, then drop the connection: the request
    was carried out, its answer lost on the way."""
    body = response.get_data()
    start_response(response.status, list(response.headers.items()))
    yield body[: len(body) // 2]
    raise ConnectionResetError("the double drops this answer")


@functools.cache
def _validator(component: str, listed: bool) -> jsonschema.protocols.Validator:
    """Return a (cached) validator for one ``component``, or for one or a list of up to 500."""
    schema = list_or_one(component, MAX_LIST) if listed else validation_schema(component)
    return jsonschema.Draft202012Validator(schema)


class TatorDouble(BackgroundServer):
    """The Tator double in a background thread: ``with TatorDouble({"tok": "user"}) as t: t.url``.

    ``state`` holds what was stored (``media``, ``media_bytes``, ``localizations``, ``requests``).
    """

    label = "Tator double"

    def __init__(
        self,
        tokens: dict[str, str],
        *,
        types: list[EntityType] | None = None,
        import_after_reads: int = 0,
        host: str = "127.0.0.1",
        port: int = 0,
        clock: Clock = time.monotonic,
    ) -> None:
        self.state = TatorState(tokens, types or default_types(), import_after_reads)
        super().__init__(TatorApp(self.state, clock), host, port)
