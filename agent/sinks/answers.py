"""The Sticky Pi API's answers, checked: given the bytes of an answer, return typed values.

Nothing the server sends is trusted: each function checks the shape the protocol promises
(``shared/specs/sticky-pi-api.md``) and raises :class:`SinkProtocolError` with one line naming
the route and what was wrong (``/get_images/metadata: row 3 has no "md5"``), never the body
itself: a hostile or broken server must not be able to write into our log.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import re
from typing import Any

from agent.errors import SinkProtocolError
from agent.sinks.base import ImageKey, RemoteImage

_MD5 = re.compile(r"[0-9a-fA-F]{32}")
#: A token goes back as the user name of a Basic header: printable ASCII, no colon.
_TOKEN = re.compile(r"[\x21-\x39\x3b-\x7e]{1,4096}")


def parse_api_datetime(value: str) -> dt.datetime:
    """Parse the API's ``YYYY-MM-DDTHH:MM:SSZ`` (or legacy ``YYYY-MM-DD_HH-MM-SS``) as UTC.

    Raise SinkProtocolError if it is in neither form."""
    if isinstance(value, str) and len(value) <= 32:
        for fmt in ("%Y-%m-%dT%H:%M:%SZ", "%Y-%m-%d_%H-%M-%S", "%Y-%m-%dT%H:%M:%S"):
            try:
                return dt.datetime.strptime(value, fmt).replace(tzinfo=dt.UTC)
            except ValueError:
                continue
    raise SinkProtocolError("the API sent a datetime in an unknown form")


def json_answer(route: str, body: bytes) -> Any:
    """Given an answer's body, return its JSON value. Raise SinkProtocolError if it is not
    UTF-8 JSON (or is nested too deeply to read)."""
    try:
        return json.loads(body.decode("utf-8"))
    except UnicodeDecodeError:
        raise SinkProtocolError(f"{route}: the API answered something that is not UTF-8 text") from None
    except (ValueError, RecursionError):
        raise SinkProtocolError(f"{route}: the API answered something that is not JSON") from None


def _finite_number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            return None
    if isinstance(value, int | float):
        try:
            number = float(value)
        except OverflowError:
            return None
        return number if math.isfinite(number) else None
    return None


def token_answer(body: bytes) -> tuple[str, float]:
    """Given the body of ``/get_token``, return ``(token, expiration in unix seconds)``.

    Raise SinkProtocolError if it is not ``{"token": "<printable>", "expiration": <number>}``."""
    route = "/get_token"
    answer = json_answer(route, body)
    if not isinstance(answer, dict):
        raise SinkProtocolError(f"{route}: the API did not answer a JSON object")
    token = answer.get("token")
    if not isinstance(token, str):
        raise SinkProtocolError(f'{route}: the API answered no "token" string')
    if not _TOKEN.fullmatch(token):
        raise SinkProtocolError(
            f"{route}: the API sent a token we cannot send back (empty, too long, or not printable ASCII)"
        )
    expiration = _finite_number(answer.get("expiration"))
    if expiration is None:
        raise SinkProtocolError(f'{route}: the API sent no "expiration" as a number of unix seconds')
    return token, expiration


def _rows(route: str, answer: Any) -> list[dict[str, Any]]:
    if not isinstance(answer, list):
        raise SinkProtocolError(f"{route}: the API did not answer a list")
    for i, row in enumerate(answer):
        if not isinstance(row, dict):
            raise SinkProtocolError(f"{route}: row {i} is not a JSON object")
    return answer


def _field(route: str, i: int, row: dict[str, Any], name: str, pattern: re.Pattern[str] | None = None) -> str:
    value = row.get(name)
    if not isinstance(value, str):
        raise SinkProtocolError(f'{route}: row {i} has no "{name}" string')
    if pattern is not None and not pattern.fullmatch(value):
        raise SinkProtocolError(f'{route}: row {i} has a malformed "{name}"')
    return value


def _remote_id(route: str, i: int, row: dict[str, Any], name: str) -> int | None:
    value = row.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise SinkProtocolError(f'{route}: row {i} has an "{name}" that is not an integer')
    return value


def image_rows(route: str, body: bytes) -> dict[ImageKey, RemoteImage]:
    """Given the body of ``/get_images/metadata``, return what the server holds, by key.

    Raise SinkProtocolError unless it is a list of rows each with ``device``, ``datetime``
    and ``md5`` (``id`` an integer or absent). The device comes back in lower case, as the
    agent's ids are: the real server (MariaDB) matches ids case-insensitively and answers the
    stored spelling, so ``5C173FF2`` is the image a ``5c173ff2`` key asked for."""
    found: dict[ImageKey, RemoteImage] = {}
    for i, row in enumerate(_rows(route, json_answer(route, body))):
        device = _field(route, i, row, "device").lower()
        try:
            when = parse_api_datetime(_field(route, i, row, "datetime"))
        except SinkProtocolError:
            raise SinkProtocolError(f'{route}: row {i} has a "datetime" in an unknown form') from None
        md5 = _field(route, i, row, "md5", _MD5).lower()
        found[(device, when)] = RemoteImage(md5=md5, remote_id=_remote_id(route, i, row, "id"))
    return found


def annotation_rows(route: str, body: bytes) -> list[tuple[int | None, str, str]]:
    """Given the body of ``/get_uid_annotations/metadata``, return ``(parent_image_id,
    algo_name, algo_version)`` per row. Raise SinkProtocolError if a row lacks one."""
    out = []
    for i, row in enumerate(_rows(route, json_answer(route, body))):
        parent = _remote_id(route, i, row, "parent_image_id")
        out.append((parent, _field(route, i, row, "algo_name"), _field(route, i, row, "algo_version")))
    return out


def list_answer(route: str, body: bytes) -> list[Any]:
    """Given the body of an upload's answer, return it. Raise SinkProtocolError unless it is
    a JSON list."""
    answer = json_answer(route, body)
    if not isinstance(answer, list):
        raise SinkProtocolError(f"{route}: the API did not answer a list")
    return answer
