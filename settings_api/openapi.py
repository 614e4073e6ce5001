"""`GET /openapi.json`: OpenAPI 3.1 built from the route table and the validation schemas."""

from __future__ import annotations

import re
from functools import cache
from typing import Any

from aiohttp import web

from mcp_core.version import __version__
from settings_api.problems import PROBLEM_CONTENT_TYPE
from settings_api.routes import ROUTES
from settings_api.schemas import COMPONENTS, page_of, ref

_PARAM = re.compile(r"\{(\w+)\}")
_QUERY = {
    "cursor": {
        "name": "cursor",
        "in": "query",
        "required": False,
        "description": "nextCursor of the previous page",
        "schema": {"type": "string"},
    },
    "limit": {
        "name": "limit",
        "in": "query",
        "required": False,
        "schema": {"type": "integer", "minimum": 1, "maximum": 200, "default": 50},
    },
    "url": {
        "name": "url",
        "in": "query",
        "required": False,
        "description": "only the calls of callUrl (call) or testUrl (test)",
        "schema": {"enum": ["call", "test"]},
    },
    "runId": {
        "name": "runId",
        "in": "query",
        "required": False,
        "description": "only the calls whose request carried this X-Run-Id",
        "schema": {"type": "string", "maxLength": 256},
    },
}


@cache
def document(version: str) -> dict[str, Any]:
    """The OpenAPI document of the settings API."""
    paths: dict[str, dict[str, Any]] = {}
    for route in ROUTES:
        params = [
            {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
            for name in _PARAM.findall(route.path)
        ]
        params += [_QUERY[name] for name in route.query]
        operation: dict[str, Any] = {
            "operationId": route.operation_id,
            "summary": route.summary,
            "parameters": params,
            "responses": {
                str(status): _response(status, schema)
                for status, schema in sorted(route.responses.items())
            },
        }
        if route.body:
            operation["requestBody"] = {
                "required": route.body_required,
                "content": {"application/json": {"schema": ref(route.body)}},
            }
        paths.setdefault(route.path, {})[route.method.lower()] = operation
    schemas = dict(COMPONENTS)
    for item in ("Integration", "Config", "AuditEvent", "OAuthClient"):
        schemas[f"{item}Page"] = page_of(item)
    return {
        "openapi": "3.1.0",
        "info": {"title": "mcp-gateway settings API", "version": version},
        "jsonSchemaDialect": "https://json-schema.org/draft/2020-12/schema",
        "security": [{"bearerJwt": []}],
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "bearerJwt": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
            },
        },
    }


def _response(status: int, schema: str | None) -> dict[str, Any]:
    description = {200: "OK", 201: "Created", 204: "No content"}.get(status, "Problem")
    if schema is None:
        return {"description": description}
    media = PROBLEM_CONTENT_TYPE if schema == "Problem" else "application/json"
    return {"description": description, "content": {media: {"schema": ref(schema)}}}


async def openapi_handler(request: web.Request) -> web.Response:
    return web.json_response(document(__version__))
