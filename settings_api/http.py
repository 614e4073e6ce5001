"""The service's HTTP conventions, set by the settings API and followed by the data plane
too: typed app state, request ids, problem answers, JSON I/O, the client address."""

from __future__ import annotations

import asyncio
import base64
import binascii
import itertools
import json
import logging
import re
import secrets
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from aiohttp import ClientSession, web

from mcp_core.json_codec import NotJson, strict_loads
from mcp_core.json_limits import depth_reason, too_deep
from settings_api.config import Settings
from settings_api.problems import (
    PROBLEM_CONTENT_TYPE,
    FieldError,
    InternalError,
    MalformedJson,
    PayloadTooLarge,
    Problem,
    RequestTimeout,
    UnsupportedMediaType,
    ValidationFailed,
    for_status,
)

log = logging.getLogger("mcp_gateway.http")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
T = TypeVar("T")

SETTINGS: web.AppKey[Settings] = web.AppKey("settings", Settings)
HTTP_CLIENT: web.AppKey[ClientSession] = web.AppKey("http_client", ClientSession)
REQUEST_ID: web.RequestKey[str] = web.RequestKey("request_id", str)

_REQUEST_ID_OK = re.compile(r"^[A-Za-z0-9._\-]{1,128}$")


def problem_response(problem: Problem, request: web.Request) -> web.Response:
    """The RFC 9457 answer for `problem` on `request`."""
    body = problem.body(request.path, request.get(REQUEST_ID))
    return web.Response(
        status=problem.status,
        text=json.dumps(body),
        content_type=PROBLEM_CONTENT_TYPE,
        headers=problem.headers,
    )


_ID_PREFIX = secrets.token_hex(8)
_id_counter = itertools.count(1)


def _new_request_id() -> str:
    """Unique per process start and request, far cheaper than uuid4 on every request."""
    return f"{_ID_PREFIX}{next(_id_counter):016x}"  # 32 hex digits, like a uuid4 hex


def assign_request_id(request: web.Request) -> str:
    """The request's id: a sane `X-Request-Id` it sent, else a new one; kept on the request."""
    given = request.headers.get("X-Request-Id", "")
    request_id = given if _REQUEST_ID_OK.match(given) else _new_request_id()
    request[REQUEST_ID] = request_id
    return request_id


def error_answer(exc: Exception, request: web.Request) -> web.Response | None:
    """problem+json for whatever a handler raised: domain problems, aiohttp's own 404/405/413,
    and bugs (logged, answered 500). None for an HTTP exception below 400 (a redirect)."""
    if isinstance(exc, Problem):
        return problem_response(exc, request)
    if isinstance(exc, web.HTTPException):
        if exc.status < 400:
            return None
        problem = for_status(
            exc.status,
            exc.reason if exc.status != 413 else "the request body exceeds the configured limit",
        )
        response = problem_response(problem, request)
        for name in ("Allow", "Retry-After", "WWW-Authenticate"):
            if name in exc.headers:
                response.headers[name] = exc.headers[name]
        return response
    # Details go to the log only, tied to the request id the client sees.
    log.error(
        "unhandled error on %s %s (request %s)",
        request.method,
        request.path,
        request.get(REQUEST_ID),
        exc_info=exc,
    )
    return problem_response(
        InternalError("an unexpected error occurred; quote the requestId when reporting it"),
        request,
    )


async def read_bounded(request: web.Request, read: Callable[[], Awaitable[T]]) -> T:
    """`read()` of the request's body within the app's size limit and MCPGW_BODY_TIMEOUT_S,
    else a 413 / 408 problem."""
    settings = request.app[SETTINGS]
    try:
        # A body that trickles in, or never completes, must not hold the connection and its
        # buffers: the same deadline as on the MCP endpoints.
        async with asyncio.timeout(settings.body_timeout_s):
            return await read()
    except web.HTTPRequestEntityTooLarge as exc:
        raise PayloadTooLarge(f"the body exceeds {settings.max_body_bytes} bytes") from exc
    except TimeoutError:
        raise RequestTimeout(
            f"the request body did not arrive within {settings.body_timeout_s:g} s"
        ) from None


async def read_json(request: web.Request) -> Any:
    """The request's JSON body, or a 413 / 415 / 400 problem."""
    settings = request.app[SETTINGS]
    if request.content_length is not None and request.content_length > settings.max_body_bytes:
        raise PayloadTooLarge(f"the body exceeds {settings.max_body_bytes} bytes")
    mime = request.content_type
    if mime != "application/json" and not mime.endswith("+json"):
        raise UnsupportedMediaType("send the body as application/json")
    raw = await read_bounded(request, request.read)
    try:
        body = strict_loads(raw)
        if too_deep(body, raw=raw):  # mcp_core/json_limits.py
            raise MalformedJson(depth_reason())
        # "\ud800" escapes parse into lone surrogates, which no store or client can encode.
        json.dumps(body, ensure_ascii=False).encode("utf-8")
    except RecursionError as exc:
        raise MalformedJson(depth_reason()) from exc
    except ValueError as exc:  # JSONDecodeError, UnicodeError included
        raise MalformedJson(f"the body is not valid JSON: {_json_reason(exc)}") from exc
    return body


def _json_reason(exc: Exception) -> str:
    if isinstance(exc, json.JSONDecodeError):
        return f"{exc.msg} at line {exc.lineno} column {exc.colno}"
    if isinstance(exc, RecursionError):
        return "nested too deeply"
    if isinstance(exc, UnicodeDecodeError):
        return "not UTF-8"
    if isinstance(exc, UnicodeEncodeError):
        return "a string is not valid Unicode (lone surrogate)"
    if isinstance(exc, NotJson):
        return str(exc)
    return "a number is too long"  # int() digit limit


def json_response(body: Any, status: int = 200) -> web.Response:
    return web.Response(status=status, text=json.dumps(body), content_type="application/json")


# Cursors are opaque to clients; they carry the sort key of the last item returned (checked
# to fit the store's column types: bigint, text without NUL).
_MAX_SORT_KEY = 2**63 - 1


def encode_cursor(value: str | int) -> str:
    return base64.urlsafe_b64encode(json.dumps([value]).encode()).decode().rstrip("=")


def decode_cursor(cursor: str, kind: type) -> Any:
    """The sort key inside a cursor, or a 422 problem naming `cursor`."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        (value,) = json.loads(base64.urlsafe_b64decode(padded.encode()))
    except (ValueError, TypeError, binascii.Error, UnicodeDecodeError, RecursionError):
        value = None
    if (
        not isinstance(value, kind)
        or isinstance(value, bool)
        or (isinstance(value, int) and not 0 <= value <= _MAX_SORT_KEY)
        or (isinstance(value, str) and "\x00" in value)
    ):
        raise ValidationFailed([FieldError("cursor", "is not a cursor this API returned")])
    return value


def page_params(
    request: web.Request, default_limit: int = 50, max_limit: int = 200
) -> tuple[str | None, int]:
    """`cursor` and `limit` query parameters, validated."""
    raw_limit = request.query.get("limit")
    limit = default_limit
    if raw_limit is not None:
        # ASCII digits only: str.isdigit() also accepts "²", which int() refuses.
        if (
            not (raw_limit.isascii() and raw_limit.isdigit())
            or len(raw_limit) > 6
            or not 1 <= int(raw_limit) <= max_limit
        ):
            raise ValidationFailed([FieldError("limit", f"must be an integer 1-{max_limit}")])
        limit = int(raw_limit)
    return request.query.get("cursor") or None, limit


def client_address(request: web.Request, trust_forwarded: bool = False) -> str | None:
    """The client's address: the peer's (`request.remote`), or with `trust_forwarded` the last
    `X-Forwarded-For` entry (the address the nearest proxy saw; only safe when every request
    comes through a proxy that appends it). Behind a proxy without it, every client shares the
    proxy's address."""
    if trust_forwarded:
        forwarded = request.headers.getall("X-Forwarded-For", ())
        if forwarded:
            last = forwarded[-1].rpartition(",")[2].strip()
            if last:
                return last[:64]
    return request.remote
