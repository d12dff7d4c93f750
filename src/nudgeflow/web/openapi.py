"""The OpenAPI document: FastAPI's for the admin API, completed with the ingest routes (plain
Starlette routes, described from the same schemas) and with the errors every route answers.

Every error body outside ingest is {"detail": "what is wrong, naming the field", ...}
(`errors` from request validation, `problems` from a journey definition): the `Error`
schema, given as each admin operation's 401 and 422 and, for the rest (404, 409, 413, 503),
as its `default` response."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import TypeAdapter

from nudgeflow.ingest.api import SINGLE_TYPES
from nudgeflow.model import events as ev

_ERROR = {
    "type": "object",
    "properties": {
        "success": {"type": "boolean", "const": False},
        "code": {"type": "string"},
        "message": {"type": "string"},
        "errors": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "field": {"type": "string", "examples": ["batch[3].userId"]},
                    "index": {"type": "integer"},
                    "message": {"type": "string"},
                },
            },
        },
    },
}

_RESPONSES = {
    "200": {
        "description": "Committed: the events are durable.",
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "properties": {"success": {"type": "boolean"}, "warnings": {"type": "array"}},
                }
            }
        },
    },
    **{
        code: {
            "description": text,
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/IngestError"}}},
        }
        for code, text in {
            "400": (
                "Invalid JSON, an invalid event, or an event over 32 KB (code event_too_large); "
                "`errors` names each field (and, in a batch, the index)."
            ),
            "401": "Missing or unknown write key.",
            "403": (
                "Identity verification is on and an event needs a valid context.userHash "
                "(code identity_not_verified); `errors` names each such event. Nothing of the request was stored."
            ),
            "413": "Body over 500 KB (a batch: split it).",
            "415": "Content-Type is not application/json, or an unsupported Content-Encoding.",
            "429": "Workspace ingest rate exceeded; see Retry-After.",
            "503": "Not stored (database unavailable); retry.",
        }.items()
    },
}


_ADMIN_ERROR = {
    "type": "object",
    "required": ["detail"],
    "properties": {
        "detail": {"type": "string", "description": "What is wrong, naming the field or parameter."},
        "errors": {
            "type": "array",
            "description": "Request validation: one entry per field.",
            "items": {"type": "object", "properties": {"field": {"type": "string"}, "message": {"type": "string"}}},
        },
        "problems": {"type": "array", "description": "A journey definition's problems.", "items": {"type": "object"}},
    },
}


def _error(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }


def _document_errors(path: str, operation: dict[str, Any]) -> None:
    responses = operation.setdefault("responses", {})
    if path.startswith("/api/"):
        responses["401"] = _error("Missing or unknown admin token.")
    if "422" in responses:  # FastAPI's HTTPValidationError is not what the app answers
        responses["422"] = _error("A parameter or the body is invalid: `detail` and `errors` name it.")
    responses.setdefault(
        "default",
        _error(
            "Any other error (404 not found, 409 conflict, 412 a draft changed since its ETag, "
            "413 too large, 503 unavailable…): `detail` says what is wrong."
        ),
    )


def _schema(kind: type) -> tuple[dict[str, Any], dict[str, Any]]:
    schema = TypeAdapter(kind).json_schema(ref_template="#/components/schemas/{model}")
    defs = schema.pop("$defs", {})
    return schema, defs


def build_openapi(app: FastAPI) -> dict[str, Any]:
    if app.openapi_schema:
        return app.openapi_schema
    spec = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
    components = spec.setdefault("components", {}).setdefault("schemas", {})
    components["IngestError"] = _ERROR
    security: list[dict[str, list[str]]] = [{"writeKeyBasic": []}, {}]
    spec["components"].setdefault("securitySchemes", {})["writeKeyBasic"] = {
        "type": "http",
        "scheme": "basic",
        "description": "The write key as the user name, with an empty password (or `writeKey` in the body).",
    }
    spec["components"]["securitySchemes"]["adminToken"] = {"type": "http", "scheme": "bearer"}
    paths = spec.setdefault("paths", {})
    by_type = {
        "track": ev.Track,
        "identify": ev.Identify,
        "page": ev.Page,
        "screen": ev.Screen,
        "group": ev.Group,
        "alias": ev.Alias,
    }
    for type_ in SINGLE_TYPES:
        schema, defs = _schema(by_type[type_])
        components.update(defs)
        components[f"{type_.capitalize()}Message"] = schema
        paths[f"/v1/{type_}"] = {
            "post": {
                "tags": ["ingest"],
                "summary": f"Segment {type_} call",
                "operationId": f"ingest_{type_}",
                "security": security,
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {"schema": {"$ref": f"#/components/schemas/{type_.capitalize()}Message"}}
                    },
                },
                "responses": _RESPONSES,
            }
        }
    schema, defs = _schema(ev.BatchBody)
    components.update(defs)
    components["Batch"] = schema
    for path, summary in (("/v1/batch", "A batch of Segment calls"), ("/v1/import", "Alias of /v1/batch")):
        paths[path] = {
            "post": {
                "tags": ["ingest"],
                "summary": summary,
                "operationId": "ingest_" + path.rsplit("/", 1)[1],
                "security": security,
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Batch"}}},
                },
                "responses": _RESPONSES,
            }
        }
    components["Error"] = _ADMIN_ERROR
    for name in ("HTTPValidationError", "ValidationError"):  # replaced by Error
        components.pop(name, None)
    for path, item in paths.items():
        for operation in item.values():
            if path.startswith("/api/"):
                operation["security"] = [{"adminToken": []}]
            if path.startswith(("/api/", "/webhooks/")):
                _document_errors(path, operation)
    if "/healthz" in paths:
        paths["/healthz"]["get"]["responses"]["503"] = {
            "description": "Not ready: the database does not answer.",
            "content": {
                "application/json": {"schema": {"type": "object", "properties": {"status": {"type": "string"}}}}
            },
        }
    if "/metrics" in paths:
        paths["/metrics"]["get"]["responses"]["200"] = {
            "description": "Prometheus text exposition format.",
            "content": {"text/plain": {"schema": {"type": "string"}}},
        }
    app.openapi_schema = spec
    return spec
