"""OpenAPI for the ingest routes, which are plain Starlette routes, from the same schemas."""

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
        "content": {"application/json": {"schema": {"type": "object", "properties": {"success": {"type": "boolean"}, "warnings": {"type": "array"}}}}},
    },
    **{
        code: {"description": text, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/IngestError"}}}}
        for code, text in {
            "400": "Invalid JSON or an invalid event; `errors` names each field (and, in a batch, the index).",
            "401": "Missing or unknown write key.",
            "413": "Body over 500 KB or an event over 32 KB.",
            "415": "Content-Type is not application/json, or an unsupported Content-Encoding.",
            "429": "Workspace ingest rate exceeded; see Retry-After.",
            "503": "Not stored (database unavailable); retry.",
        }.items()
    },
}


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
    security = [{"writeKeyBasic": []}, {}]
    spec["components"].setdefault("securitySchemes", {})["writeKeyBasic"] = {
        "type": "http",
        "scheme": "basic",
        "description": "The write key as the user name, with an empty password (or `writeKey` in the body).",
    }
    spec["components"]["securitySchemes"]["adminToken"] = {"type": "http", "scheme": "bearer"}
    paths = spec.setdefault("paths", {})
    by_type = {"track": ev.Track, "identify": ev.Identify, "page": ev.Page, "screen": ev.Screen, "group": ev.Group, "alias": ev.Alias}
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
                "requestBody": {"required": True, "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{type_.capitalize()}Message"}}}},
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
                "requestBody": {"required": True, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Batch"}}}},
                "responses": _RESPONSES,
            }
        }
    for path, item in paths.items():
        if path.startswith("/api/"):
            for operation in item.values():
                operation["security"] = [{"adminToken": []}]
    app.openapi_schema = spec
    return spec
