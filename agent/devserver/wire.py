"""The devserver's wire helpers: the real server's refusals (flask-httpauth's 401 and 403), JSON
answers, and reading a JSON route's body and lookup keys."""

from __future__ import annotations

import json
import re
from typing import Any

from werkzeug.exceptions import BadRequest, UnsupportedMediaType
from werkzeug.wrappers import Request, Response

from agent.devserver.values import StoreError, key_datetime


def unauthorized() -> Response:
    return Response(
        "Unauthorized Access",
        401,
        {"WWW-Authenticate": 'Basic realm="Authentication Required"'},
        mimetype="text/html",
    )


def forbidden() -> Response:
    """A role refusal as flask-httpauth answers it: the 401's body and header, status 403."""
    response = unauthorized()
    response.status_code = 403
    return response


def json_response(data: object) -> Response:
    return Response(json.dumps(data), mimetype="application/json")


def json_list(request: Request) -> list[dict[str, Any]]:
    """Given a JSON route's request, return its body, a list of dicts.

    Raise a 415 without the JSON content type, a 400 for invalid JSON and :class:`StoreError`
    (a 500) for JSON that is not a list of dicts.
    """
    if not request.is_json:
        raise UnsupportedMediaType()
    try:
        data = json.loads(request.get_data())
    except ValueError:
        raise BadRequest("invalid JSON body") from None
    if not isinstance(data, list) or not all(isinstance(d, dict) for d in data):
        raise StoreError("the body must be a JSON list of dicts")
    return data


def unique_keys(queries: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """Given ``{"device", "datetime"}`` queries, return ``(device, datetime text)``, each key once.

    The real server selects ``WHERE (datetime, device) IN (...)``: a key asked twice (device ids
    in any case) still matches its row once. The datetime text is :func:`key_datetime`'s. Raise
    :class:`StoreError` for a missing device or a datetime that is not a string.
    """
    keys = {(string_field(q, "device").lower(), key_datetime(q.get("datetime"))): None for q in queries}
    return list(keys)


def like_regex(pattern: str) -> re.Pattern[str]:
    """Given a SQL LIKE pattern (``%``, ``_``), return the regex it means (case-insensitive)."""
    parts = (".*" if c == "%" else "." if c == "_" else re.escape(c) for c in pattern)
    return re.compile("".join(parts), re.IGNORECASE | re.DOTALL)


def string_field(query: dict[str, Any], key: str) -> str:
    value = query.get(key)
    if not isinstance(value, str):
        raise StoreError(f"{key!r} must be a string, got {value!r}")
    return value
