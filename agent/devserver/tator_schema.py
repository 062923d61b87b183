"""The OpenAPI document the Tator double serves at ``GET /schema``.

The official ``tator`` client (1.8.x) builds its API at run time from ``/schema``: each
``operationId`` becomes a function, a request body named by a ``$ref`` becomes a keyword argument
(``UploadCompletionSpec`` -> ``upload_completion_spec``), and an answer's class is looked up by
its status code. This document describes, in the real server's shapes (cvisionai/tator,
``api/main/schema``), only the operations the double implements; the double validates every
request body against the same component schemas, as the real server does with openapi-core.
"""

from __future__ import annotations

from typing import Any

JSON = "application/json"


def _ref(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str = "Successful") -> dict[str, Any]:
    return {"description": description, "content": {JSON: {"schema": schema}}}


def _errors() -> dict[str, Any]:
    return {
        "400": _json(_ref("BadRequestResponse"), "Bad request."),
        "403": _json(_ref("BadRequestResponse"), "Permission denied."),
        "404": _json(_ref("NotFoundResponse"), "Not found."),
    }


def _path_param(name: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": {"type": "integer"}}


def _query(name: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "schema": schema}


ATTRIBUTE_VALUE: dict[str, Any] = {
    "nullable": True,
    "anyOf": [
        {"type": "boolean"},
        {"type": "number"},
        {"type": "string"},
        {"type": "array", "items": {"type": "number"}},
        {"type": "array", "items": {"type": "string"}},
        {"type": "object"},
    ],
}

MEDIA_SPEC: dict[str, Any] = {
    "type": "object",
    "required": ["type", "name", "md5"],
    "properties": {
        "type": {"type": "integer", "minimum": -1},
        "gid": {"type": "string"},
        "uid": {"type": "string"},
        "url": {"type": "string"},
        "thumbnail_url": {"type": "string"},
        "section": {"type": "string"},
        "section_id": {"type": "integer"},
        "name": {"type": "string"},
        "md5": {"type": "string"},
        "width": {"type": "integer", "nullable": True},
        "height": {"type": "integer", "nullable": True},
        "attributes": {"type": "object", "nullable": True, "additionalProperties": _ref("AttributeValue")},
        "elemental_id": {"type": "string"},
        "reference_only": {"type": "integer", "default": 0, "maximum": 1},
        "size": {"type": "integer", "minimum": 0},
        "media_id": {"type": "integer", "nullable": True},
    },
}

LOCALIZATION_SPEC: dict[str, Any] = {
    "type": "object",
    "required": ["media_id", "type", "frame"],
    "properties": {
        "media_id": {"type": "integer", "minimum": 1},
        "type": {"type": "integer", "minimum": 1},
        "frame": {"type": "integer", "minimum": 0},
        "version": {"type": "integer", "minimum": 1},
        "elemental_id": {"type": "string", "nullable": True},
        "x": {"type": "number", "minimum": 0.0, "maximum": 1.0, "nullable": True},
        "y": {"type": "number", "minimum": 0.0, "maximum": 1.0, "nullable": True},
        "width": {"type": "number", "minimum": 0.0, "maximum": 1.0, "nullable": True},
        "height": {"type": "number", "minimum": 0.0, "maximum": 1.0, "nullable": True},
        "u": {"type": "number", "minimum": -1.0, "maximum": 1.0, "nullable": True},
        "v": {"type": "number", "minimum": -1.0, "maximum": 1.0, "nullable": True},
        "points": {
            "type": "array",
            "nullable": True,
            "items": {
                "type": "array",
                "minItems": 2,
                "maxItems": 2,
                "items": {"type": "number", "minimum": 0.0, "maximum": 1.0},
            },
        },
        "attributes": {"type": "object", "additionalProperties": _ref("AttributeValue")},
    },
}

SCHEMAS: dict[str, Any] = {
    "AttributeValue": ATTRIBUTE_VALUE,
    "MessageResponse": {"type": "object", "properties": {"message": {"type": "string"}}},
    "BadRequestResponse": {
        "type": "object",
        "properties": {"message": {"type": "string"}, "details": {"type": "string"}},
    },
    "NotFoundResponse": {"type": "object", "properties": {"message": {"type": "string"}}},
    "CreateResponse": {
        "type": "object",
        "properties": {"message": {"type": "string"}, "id": {"type": "integer"}},
    },
    "CreateListResponse": {
        "type": "object",
        "properties": {"message": {"type": "string"}, "id": {"type": "array", "items": {"type": "integer"}}},
    },
    "MediaType": {
        "type": "object",
        "properties": {
            "id": {"type": "integer"},
            "project": {"type": "integer"},
            "name": {"type": "string"},
            "dtype": {"type": "string"},
            "attribute_types": {"type": "array", "items": {"type": "object"}},
        },
    },
    "UploadInfo": {
        "type": "object",
        "properties": {
            "urls": {"type": "array", "items": {"type": "string"}},
            "key": {"type": "string"},
            "upload_id": {"type": "string"},
        },
    },
    "UploadPart": {
        "type": "object",
        "required": ["ETag", "PartNumber"],
        "properties": {"ETag": {"type": "string"}, "PartNumber": {"type": "integer", "minimum": 1}},
    },
    "UploadCompletionSpec": {
        "type": "object",
        "required": ["key", "upload_id", "parts"],
        "properties": {
            "key": {"type": "string"},
            "upload_id": {"type": "string"},
            "parts": {"type": "array", "minItems": 2, "maxItems": 10000, "items": _ref("UploadPart")},
            "bucket_id": {"type": "integer", "nullable": True},
        },
    },
    "DownloadInfoSpec": {
        "type": "object",
        "required": ["keys"],
        "properties": {"keys": {"type": "array", "items": {"type": "string"}, "maxItems": 1000}},
    },
    "DownloadInfo": {
        "type": "object",
        "properties": {"key": {"type": "string"}, "url": {"type": "string"}},
    },
    "MediaSpec": MEDIA_SPEC,
    "Media": {
        "type": "object",
        "properties": {
            "id": {"type": "integer"},
            "project": {"type": "integer"},
            "type": {"type": "integer"},
            "name": {"type": "string"},
            "md5": {"type": "string"},
            "elemental_id": {"type": "string", "nullable": True},
            "attributes": {"type": "object"},
            "media_files": {"type": "object", "nullable": True},
            "width": {"type": "integer", "nullable": True},
            "height": {"type": "integer", "nullable": True},
        },
    },
    "LocalizationSpec": LOCALIZATION_SPEC,
    "LocalizationType": {
        "type": "object",
        "properties": {
            "id": {"type": "integer"},
            "project": {"type": "integer"},
            "name": {"type": "string"},
            "dtype": {"type": "string", "enum": ["box", "line", "dot", "poly"]},
            "media": {"type": "array", "items": {"type": "integer"}},
            "attribute_types": {"type": "array", "items": {"type": "object"}},
            "visible": {"type": "boolean"},
            "drawable": {"type": "boolean"},
        },
    },
    "LocalizationBulkDelete": {
        "type": "object",
        "properties": {
            "prune": {"type": "integer", "minimum": 0, "maximum": 1, "default": 0},
            "media_ids": {"type": "array", "items": {"type": "integer", "minimum": 1}},
            "ids": {"type": "array", "items": {"type": "integer", "minimum": 1}},
        },
    },
    "Localization": {
        "type": "object",
        "properties": {
            "id": {"type": "integer"},
            "media": {"type": "integer"},
            "type": {"type": "integer"},
            "frame": {"type": "integer"},
            "elemental_id": {"type": "string", "nullable": True},
            "version": {"type": "integer"},
            "attributes": {"type": "object"},
            "points": {"type": "array", "nullable": True, "items": {"type": "array"}},
            "x": {"type": "number", "nullable": True},
            "y": {"type": "number", "nullable": True},
            "width": {"type": "number", "nullable": True},
            "height": {"type": "number", "nullable": True},
            "variant_deleted": {"type": "boolean"},
        },
    },
}

MEDIA_LIST_QUERY = [
    _query("md5", {"type": "string"}),
    _query("name", {"type": "string"}),
    _query("elemental_id", {"type": "string"}),
    _query("type", {"type": "integer"}),
    _query("section", {"type": "integer"}),
    _query("start", {"type": "integer", "minimum": 0}),
    _query("stop", {"type": "integer", "minimum": 1}),
]


LOCALIZATION_QUERY = [
    {**_query("media_id", {"type": "array", "items": {"type": "integer"}}), "explode": False},
    _query("type", {"type": "integer"}),
    {**_query("version", {"type": "array", "items": {"type": "integer"}}), "explode": False},
    _query("elemental_id", {"type": "string"}),
    _query("show_deleted", {"type": "integer", "minimum": 0, "maximum": 1, "default": 0}),
]


def _create_list(operation: str, spec: str) -> dict[str, Any]:
    """Return a ``POST`` that takes one ``spec`` or a list of up to 500 and answers 201
    ``CreateListResponse`` (CreateMediaList, CreateLocalizationList)."""
    one_or_list = {"oneOf": [_ref(spec), {"type": "array", "items": _ref(spec), "maxItems": 500}]}
    return {
        "operationId": operation,
        "parameters": [_path_param("project")],
        "requestBody": {"required": True, "content": {JSON: {"schema": one_or_list}}},
        "responses": {**_errors(), "201": _json(_ref("CreateListResponse"))},
    }


def openapi_document() -> dict[str, Any]:
    """Return the OpenAPI 3 document describing the operations the double implements."""
    paths: dict[str, Any] = {
        "/rest/MediaType/{id}": {
            "get": {
                "operationId": "GetMediaType",
                "parameters": [_path_param("id")],
                "responses": {**_errors(), "200": _json(_ref("MediaType"))},
            }
        },
        "/rest/LocalizationType/{id}": {
            "get": {
                "operationId": "GetLocalizationType",
                "parameters": [_path_param("id")],
                "responses": {**_errors(), "200": _json(_ref("LocalizationType"))},
            }
        },
        "/rest/UploadInfo/{project}": {
            "get": {
                "operationId": "GetUploadInfo",
                "parameters": [
                    _path_param("project"),
                    _query("expiration", {"type": "integer", "minimum": 1, "maximum": 86400}),
                    _query("num_parts", {"type": "integer", "minimum": 1, "maximum": 10000}),
                    _query("media_id", {"type": "integer", "minimum": 1}),
                    _query("file_id", {"type": "integer", "minimum": 1}),
                    _query("filename", {"type": "string"}),
                    _query("bucket_id", {"type": "integer"}),
                ],
                "responses": {**_errors(), "200": _json(_ref("UploadInfo"))},
            }
        },
        "/rest/UploadCompletion/{project}": {
            "post": {
                "operationId": "CompleteUpload",
                "parameters": [_path_param("project")],
                "requestBody": {
                    "required": True,
                    "content": {JSON: {"schema": _ref("UploadCompletionSpec")}},
                },
                "responses": {**_errors(), "201": _json(_ref("MessageResponse"))},
            }
        },
        "/rest/DownloadInfo/{project}": {
            "post": {
                "operationId": "GetDownloadInfo",
                "parameters": [
                    _path_param("project"),
                    _query("expiration", {"type": "integer", "minimum": 1, "maximum": 86400}),
                ],
                "requestBody": {"required": True, "content": {JSON: {"schema": _ref("DownloadInfoSpec")}}},
                "responses": {**_errors(), "200": _json({"type": "array", "items": _ref("DownloadInfo")})},
            }
        },
        "/rest/Medias/{project}": {
            "post": _create_list("CreateMediaList", "MediaSpec"),
            "get": {
                "operationId": "GetMediaList",
                "parameters": [_path_param("project"), *MEDIA_LIST_QUERY],
                "responses": {**_errors(), "200": _json({"type": "array", "items": _ref("Media")})},
            },
        },
        "/rest/Media/{id}": {
            "get": {
                "operationId": "GetMedia",
                "parameters": [_path_param("id")],
                "responses": {**_errors(), "200": _json(_ref("Media"))},
            }
        },
        "/rest/Localizations/{project}": {
            "post": _create_list("CreateLocalizationList", "LocalizationSpec"),
            "get": {
                "operationId": "GetLocalizationList",
                "parameters": [_path_param("project"), *LOCALIZATION_QUERY],
                "responses": {**_errors(), "200": _json({"type": "array", "items": _ref("Localization")})},
            },
            "delete": {
                "operationId": "DeleteLocalizationList",
                "parameters": [
                    _path_param("project"),
                    *LOCALIZATION_QUERY,
                    _query("count", {"type": "integer", "minimum": 0}),
                ],
                "requestBody": {
                    "required": False,
                    "content": {JSON: {"schema": _ref("LocalizationBulkDelete")}},
                },
                "responses": {**_errors(), "200": _json(_ref("MessageResponse"))},
            },
        },
    }
    return {
        "openapi": "3.0.3",
        "info": {"title": "Tator REST API (sticky-agent's protocol double)", "version": "1.2.4"},
        "paths": paths,
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {"TokenAuth": {"type": "apiKey", "name": "Authorization", "in": "header"}},
        },
        "security": [{"TokenAuth": []}],
    }


def _jsonschema(node: Any) -> Any:
    """Given an OpenAPI 3.0 schema node, return it as JSON Schema (``nullable`` -> null allowed,
    ``$ref`` into ``#/$defs``)."""
    if isinstance(node, list):
        return [_jsonschema(n) for n in node]
    if not isinstance(node, dict):
        return node
    out = {k: _jsonschema(v) for k, v in node.items() if k != "nullable"}
    if "$ref" in out:
        out["$ref"] = out["$ref"].replace("#/components/schemas/", "#/$defs/")
    if node.get("nullable"):
        return {"anyOf": [out, {"type": "null"}]}
    return out


def validation_schema(name: str) -> dict[str, Any]:
    """Given a component name, return a JSON Schema (with every component as ``$defs``) that
    validates a request body the way the real server's openapi-core does."""
    defs = {k: _jsonschema(v) for k, v in SCHEMAS.items()}
    return {"$defs": defs, **defs[name]}


def list_or_one(name: str, max_items: int = 500) -> dict[str, Any]:
    """Return a JSON Schema accepting one ``name`` object or a list of at most ``max_items``."""
    defs = {k: _jsonschema(v) for k, v in SCHEMAS.items()}
    ref = {"$ref": f"#/$defs/{name}"}
    return {"$defs": defs, "oneOf": [ref, {"type": "array", "items": ref, "maxItems": max_items}]}
