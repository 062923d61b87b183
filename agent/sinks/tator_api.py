"""Tator's REST API for one project, as the Tator sink uses it (:mod:`agent.sinks.tator`).

Every ``/rest`` call carries ``Authorization: Token <token>``; the presigned ``PUT``s of an
upload carry none. Refusals become the typed errors of :mod:`agent.sinks.http`, with Tator's
400s read: a refused token is :class:`SinkAuthError`, throttling :class:`SinkUnreachable` with
the wait Tator asks for (:func:`classify`). Answers of the wrong shape are
:class:`SinkProtocolError`. The token never appears in a message.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from agent.errors import SinkAuthError, SinkForbidden, SinkProtocolError, SinkRejected, SinkUnreachable
from agent.sinks.credentials import Secret
from agent.sinks.throttle import Bandwidth, ThrottledBody

if TYPE_CHECKING:
    from agent.sinks.http import HttpTransport


#: Tator's default upload part size (``tator.util.upload_media``).
PART_SIZE = 10 * 2**20
_AUTH_MESSAGES = ("invalid token", "credentials were not provided", "user inactive", "token has expired")
_THROTTLE_WAIT = re.compile(r"available in (\d+(?:\.\d+)?) second")


def has_file(media: Mapping[str, Any]) -> bool:
    """Given a media as Tator lists it, return True once its image file is imported."""
    files = media.get("media_files")
    return isinstance(files, dict) and bool(files.get("image"))


class TatorApi:
    """The REST calls of one Tator project over one :class:`HttpTransport`."""

    def __init__(
        self,
        http: HttpTransport,
        host: str,
        token: Secret,
        *,
        project: int,
        media_type: int,
        localization_type: int | None = None,
        part_size: int = PART_SIZE,
    ) -> None:
        self.http = http
        self.host = host.rstrip("/")
        self.project, self.media_type, self.localization_type = project, media_type, localization_type
        self.part_size = max(1, int(part_size))
        self._headers = {"Authorization": f"Token {token.value}", "Accept": "application/json"}

    def rest(self, method: str, path: str, *, params: dict[str, Any] | None = None, body: Any = None) -> Any:
        """Call ``/rest/<path>`` with the token; return the JSON answer. Raise the typed errors of
        the module's docstring."""
        route = f"{method} /rest/{path}"
        kw: dict[str, Any] = {"headers": self._headers, "params": params}
        if body is not None:
            kw["json"] = body
        try:
            return self.http.call_json(method, f"{self.host}/rest/{path}", route, **kw)
        except SinkRejected as e:
            raise classify(e) from None
        except SinkAuthError as e:
            raise SinkAuthError(f"{e}; check the token in the credentials file") from None
        except SinkForbidden as e:
            raise SinkForbidden(
                f"{e}; the token's user may not use project {self.project} (is it a member, with "
                f"edit rights?): check {self.http.section}.project"
            ) from None

    def media_list(self, **query: Any) -> list[dict[str, Any]]:
        """Return the project's media of our media type matching ``query`` (GetMediaList)."""
        rows = self.rest("GET", f"Medias/{self.project}", params={"type": self.media_type, **query})
        if not isinstance(rows, list) or not all(
            isinstance(r, dict) and isinstance(r.get("id"), int) for r in rows
        ):
            raise SinkProtocolError(f"GET /rest/Medias/{self.project}: Tator's answer is not a media list")
        return rows

    def media(self, media_id: int) -> dict[str, Any]:
        """Return one media (GetMedia)."""
        media = self.rest("GET", f"Media/{media_id}")
        if not isinstance(media, dict) or media.get("id") != media_id:
            raise SinkProtocolError(f"GET /rest/Media/{media_id}: Tator's answer is not that media")
        return media

    def entity_type(self, kind: str, type_id: int, key: str) -> dict[str, Any]:
        """Given ``MediaType`` or ``LocalizationType``, its id and its settings key, return the type.
        Raise SinkForbidden (naming the setting) if Tator has none or it is another project's."""
        try:
            answer = self.rest("GET", f"{kind}/{type_id}")
        except SinkRejected as e:
            if " 404" in str(e) or "not found" in str(e).lower():
                raise SinkForbidden(
                    f"Tator has no {kind} {type_id} (404): check {self.http.section}.{key}"
                ) from None
            raise
        if not isinstance(answer, dict) or not isinstance(answer.get("project"), int):
            raise SinkProtocolError(f"GET /rest/{kind}/{type_id}: Tator's answer is not a {kind}")
        if answer["project"] != self.project:
            raise SinkForbidden(
                f"Tator's {kind} {type_id} is in project {answer['project']}, not {self.project}: "
                f"check {self.http.section}.project and .{key}"
            )
        return answer

    def put_object(self, name: str, data: bytes, throttle: Bandwidth | None) -> str:
        """Put ``data`` where ``UploadInfo`` says, in parts above the part size; return its key."""
        parts = max(1, math.ceil(len(data) / self.part_size))
        route = f"GET /rest/UploadInfo/{self.project}"
        info = self.rest("GET", f"UploadInfo/{self.project}", params={"num_parts": parts})
        urls = info.get("urls") if isinstance(info, dict) else None
        if not (
            isinstance(urls, list)
            and len(urls) == parts
            and all(isinstance(u, str) and u.startswith(("https://", "http://")) for u in urls)
            and isinstance(info.get("key"), str)
            and isinstance(info.get("upload_id"), str)
        ):
            raise SinkProtocolError(f"{route}: Tator's answer is not {parts} upload URL(s) with a key")
        view = memoryview(data)
        done = []
        for number, url in enumerate(urls, start=1):
            piece = view[(number - 1) * self.part_size : number * self.part_size]
            put_route = f"PUT part {number}/{parts} of {name}"
            with self.http.watch():
                response = self.http.send("PUT", url, put_route, data=ThrottledBody(piece, throttle))
                etag = response.headers.get("ETag")
                try:
                    self.http.check(put_route, response, read_error=True)
                except (SinkForbidden, SinkAuthError) as e:  # the object store's, not our token's
                    raise SinkRejected(
                        f"{e} (the presigned URL was refused: expired, or a clock is wrong?)"
                    ) from None
                self.http.read(put_route, response)
            if parts > 1 and not etag:
                raise SinkProtocolError(f"{put_route}: the object store answered no ETag")
            done.append({"ETag": etag, "PartNumber": number})
        if parts > 1:
            body = {"key": info["key"], "upload_id": info["upload_id"], "parts": done}
            self.rest("POST", f"UploadCompletion/{self.project}", body=body)
        return str(info["key"])

    def localizations(self, media_ids: list[int]) -> list[dict[str, Any]]:
        """Return the localizations of our localization type on the given media."""
        params = {"media_id": ",".join(map(str, media_ids)), "type": self.localization_type}
        rows = self.rest("GET", f"Localizations/{self.project}", params=params)
        if not isinstance(rows, list) or not all(
            isinstance(r, dict) and isinstance(r.get("id"), int) for r in rows
        ):
            raise SinkProtocolError(f"GET /rest/Localizations/{self.project}: Tator's answer is not a list")
        return rows


def classify(error: SinkRejected) -> Exception:
    """Given Tator's refusal (a 400 carries a bad token and throttling too), return the error to
    raise: SinkAuthError, SinkUnreachable (throttled, with the wait asked for) or the refusal."""
    text = str(error)
    lower = text.lower()
    if " 400" in text and "throttled" in lower:
        wait = _THROTTLE_WAIT.search(lower)
        return SinkUnreachable(f"{text} (Tator allows 100 requests/s)", float(wait.group(1)) if wait else 1.0)
    if " 400" in text and any(m in lower for m in _AUTH_MESSAGES):
        return SinkAuthError(f"{text}; check the token in the credentials file")
    return error
