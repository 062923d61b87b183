"""The Tator double's localization routes (``LocalizationType``, ``Localizations``), as the real
server runs them (cvisionai/tator ``api/main/rest/localization.py``, ``_annotation_query.py``):
list filters ``media_id`` and ``version`` (comma-separated), ``type``, ``elemental_id`` (a UUID),
``show_deleted``; creation of up to 500 specs, all checked before any is kept; bulk delete by the
same query plus the body's ``ids``, marking them ``variant_deleted`` (hidden from lists) or, with
``prune: 1``, purging them, aborted with a 400 if a ``count`` is given and differs.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from werkzeug.wrappers import Request, Response

from agent.devserver.tator_state import (
    LOCALIZATION_DTYPES,
    TatorError,
    TatorState,
    check_attributes,
    check_uuid,
)


class LocalizationRoutes:
    """The localization handlers of :class:`agent.devserver.tator.TatorApp` (a mixin)."""

    state: TatorState

    if TYPE_CHECKING:  # provided by TatorApp

        def _body(self, request: Request, component: str, listed: bool = False) -> Any: ...

        def _project(self, project: int) -> None: ...

    def _localization_type(self, request: Request, id: int) -> Response:
        t = self.state.types.get(id)
        if t is None or t.dtype not in LOCALIZATION_DTYPES:
            raise TatorError(404, f"LocalizationType {id} not found!")
        media = [m.id for m in self.state.types.values() if m.project == t.project and m.dtype == "image"]
        attrs = [a.as_dict() for a in t.attribute_types]
        body = {"id": t.id, "project": t.project, "name": t.name, "dtype": t.dtype, "media": media}
        return json_response({**body, "attribute_types": attrs, "visible": True, "drawable": True})

    def _localizations(self, request: Request, project: int) -> Response:
        self._project(project)
        if request.method == "GET":
            return json_response(self._localization_list(project, request))
        if request.method == "DELETE":
            return self._delete_localizations(project, request)
        body = self._body(request, "LocalizationSpec", listed=True)
        specs = body if isinstance(body, list) else [body]
        with self.state.lock:
            rows = [self._localization(project, spec) for spec in specs]  # all checked before any is kept
            for row in rows:
                self.state.localizations[row["id"]] = row
        return json_response(
            {"message": f"Successfully created {len(rows)} localizations!", "id": [r["id"] for r in rows]},
            201,
        )

    def _localization(self, project: int, spec: dict[str, Any]) -> dict[str, Any]:
        loc_type = self.state.types.get(spec["type"])
        if loc_type is None or loc_type.dtype not in LOCALIZATION_DTYPES:
            raise TatorError(404, f"LocalizationType {spec['type']} not found!")
        media = self.state.media.get(spec["media_id"])
        if media is None or media["project"] != project or loc_type.project != project:
            raise TatorError(400, f"Media {spec['media_id']} is not part of project {project}")
        needed = {
            "box": ("x", "y", "width", "height"),
            "poly": ("points",),
            "dot": ("x", "y"),
            "line": ("x", "y", "u", "v"),
        }
        missing = [k for k in needed[loc_type.dtype] if spec.get(k) is None]
        if missing:
            raise TatorError(400, f"Missing required fields for {loc_type.dtype}: {', '.join(missing)}")
        row = {
            "id": next(self.state.ids),
            "project": project,
            "media": media["id"],
            "type": loc_type.id,
            "frame": spec["frame"],
            "version": spec.get("version", 1),
            "elemental_id": check_uuid(spec.get("elemental_id")),
            "attributes": check_attributes(loc_type.attribute_types, spec.get("attributes")),
            "variant_deleted": False,
        }
        for k in needed[loc_type.dtype]:
            row[k] = spec[k]
        return row

    def _localization_rows(
        self, project: int, request: Request, ids: list[int] | None = None
    ) -> list[dict[str, Any]]:
        """Return the localizations a list query selects (``media_id`` comma-separated, ``type``,
        ``version`` comma-separated, ``elemental_id`` a UUID, ``show_deleted``), by id."""
        args = request.args
        with self.state.lock:
            rows = [r for r in self.state.localizations.values() if r["project"] == project]
        if "media_id" in args:
            wanted = set(_int_list("media_id", args["media_id"]))
            rows = [r for r in rows if r["media"] in wanted]
        if "type" in args:
            rows = [r for r in rows if str(r["type"]) == args["type"]]
        if "version" in args:
            versions = set(_int_list("version", args["version"]))
            rows = [r for r in rows if r["version"] in versions]
        if "elemental_id" in args:
            eid = check_uuid(args["elemental_id"])
            rows = [r for r in rows if r["elemental_id"] == eid]
        if ids is not None:
            rows = [r for r in rows if r["id"] in set(ids)]
        if args.get("show_deleted", "0") != "1":
            rows = [r for r in rows if not r["variant_deleted"]]
        return sorted(rows, key=lambda r: int(r["id"]))

    def _localization_list(self, project: int, request: Request) -> list[dict[str, Any]]:
        return [dict(r) for r in self._localization_rows(project, request)]

    def _delete_localizations(self, project: int, request: Request) -> Response:
        """DeleteLocalizationList: every localization the query (and the body's ``ids``) selects;
        ``prune: 1`` purges them, else they are marked ``variant_deleted`` (hidden from lists).
        A ``count`` that differs from the number selected aborts with a 400."""
        body = self._body(request, "LocalizationBulkDelete") if request.get_data() else {}
        rows = self._localization_rows(project, request, body.get("ids"))
        if "count" in request.args and request.args["count"] != str(len(rows)):
            raise TatorError(
                400,
                f"Safety check failed - attempted to delete {len(rows)} but expected {request.args['count']}",
            )
        with self.state.lock:
            for row in rows:
                if body.get("prune", 0) == 1:
                    self.state.localizations.pop(row["id"], None)
                else:
                    self.state.localizations[row["id"]]["variant_deleted"] = True
        return json_response({"message": f"Successfully deleted {len(rows)} localizations!"})


def _int_list(name: str, value: str) -> list[int]:
    """Given a comma-separated query parameter, return its integers. Raise TatorError (400) if one
    is not an integer (the server validates query parameters against its schema)."""
    try:
        return [int(x) for x in value.split(",") if x.strip()]
    except ValueError:
        raise TatorError(
            400, "Request parameters failed validation.", f"{name}: not a list of integers"
        ) from None


def json_response(body: Any, status: int = 200) -> Response:
    """Return ``body`` as a JSON answer with ``status``."""
    return Response(json.dumps(body), status, mimetype="application/json")
