"""HTTP plumbing shared by both planes: typed app state, request ids, problem answers, JSON I/O."""

from __future__ import annotations

import base64
import binascii
import json
import logging
import re
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import ClientSession, web

from settings_api.config import Settings
from settings_api.problems import (
    PROBLEM_CONTENT_TYPE,
    FieldError,
    InternalError,
    MalformedJson,
    PayloadTooLarge,
    Problem,
    UnsupportedMediaType,
    ValidationFailed,
    for_status,
)

log = logging.getLogger("mcp_gateway.http")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

SETTINGS: web.AppKey[Settings] = web.AppKey("settings", Settings)
HTTP_CLIENT: web.AppKey[ClientSession] = web.AppKey("http_client", ClientSession)
REQUEST_ID: web.RequestKey[str] = web.RequestKey("request_id", str)

_REQUEST_ID_OK = re.compile(r"^[A-Za-z0-9._\-]{1,128}$")


def problem_response(problem: Problem, request: web.Request) -> web.Response:
    """The RFC 9457 answer for `problem` on `request`."""
    body = problem.body(request.path, request.get(REQUEST_ID))
    return web.Response(status=problem.status, text=json.dumps(body),
                        content_type=PROBLEM_CONTENT_TYPE, headers=problem.headers)


@web.middleware
async def request_id_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Accept a sane `X-Request-Id` or make one; echo it on every answer."""
    given = request.headers.get("X-Request-Id", "")
    request_id = given if _REQUEST_ID_OK.match(given) else uuid.uuid4().hex
    request[REQUEST_ID] = request_id
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        exc.headers["X-Request-Id"] = request_id
        raise
    response.headers["X-Request-Id"] = request_id
    return response


@web.middleware
async def problem_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every error becomes problem+json: domain problems, aiohttp's own 404/405/413, and bugs."""
    try:
        return await handler(request)
    except Problem as problem:
        return problem_response(problem, request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        problem = for_status(exc.status, exc.reason if exc.status != 413 else
                             "the request body exceeds the configured limit")
        response = problem_response(problem, request)
        for name in ("Allow", "Retry-After", "WWW-Authenticate"):
            if name in exc.headers:
                response.headers[name] = exc.headers[name]
        return response
    except Exception:
        # Details go to the log only, tied to the request id the client sees.
        log.exception("unhandled error on %s %s (request %s)", request.method, request.path,
                      request.get(REQUEST_ID))
        return problem_response(
            InternalError("an unexpected error occurred; quote the requestId when reporting it"),
            request)


async def read_json(request: web.Request) -> Any:
    """The request's JSON body, or a 413 / 415 / 400 problem."""
    settings = request.app[SETTINGS]
    if request.content_length is not None and request.content_length > settings.max_body_bytes:
        raise PayloadTooLarge(f"the body exceeds {settings.max_body_bytes} bytes")
    mime = request.content_type
    if mime != "application/json" and not mime.endswith("+json"):
        raise UnsupportedMediaType("send the body as application/json")
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge as exc:
        raise PayloadTooLarge(f"the body exceeds {settings.max_body_bytes} bytes") from exc
    try:
        return json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise MalformedJson(f"the body is not valid JSON: {_json_reason(exc)}") from exc


def _json_reason(exc: Exception) -> str:
    if isinstance(exc, json.JSONDecodeError):
        return f"{exc.msg} at line {exc.lineno} column {exc.colno}"
    if isinstance(exc, RecursionError):
        return "nested too deeply"
    return "not UTF-8"


def json_response(body: Any, status: int = 200) -> web.Response:
    return web.Response(status=status, text=json.dumps(body), content_type="application/json")


# Cursors are opaque to clients; they carry the sort key of the last item returned.
def encode_cursor(value: str | int) -> str:
    return base64.urlsafe_b64encode(json.dumps([value]).encode()).decode().rstrip("=")


def decode_cursor(cursor: str, kind: type) -> Any:
    """The sort key inside a cursor, or a 422 problem naming `cursor`."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        (value,) = json.loads(base64.urlsafe_b64decode(padded.encode()))
    except (ValueError, TypeError, binascii.Error, UnicodeDecodeError):
        value = None
    if not isinstance(value, kind) or isinstance(value, bool):
        raise ValidationFailed([FieldError("cursor", "is not a cursor this API returned")])
    return value


def page_params(request: web.Request, default_limit: int = 50,
                max_limit: int = 200) -> tuple[str | None, int]:
    """`cursor` and `limit` query parameters, validated."""
    raw_limit = request.query.get("limit")
    limit = default_limit
    if raw_limit is not None:
        if not raw_limit.isdigit() or not 1 <= int(raw_limit) <= max_limit:
            raise ValidationFailed([FieldError("limit", f"must be an integer 1-{max_limit}")])
        limit = int(raw_limit)
    return request.query.get("cursor") or None, limit
