"""The request middleware: request id, problem answers, metrics and one log line per request;
and `GET /metrics`.

Per request: classify the route (cached per route: endpoint call|test|settings|other and a
bounded route label), count it in flight, run the handler, then record its outcome in the
request counter and latency histogram and write one `mcp_gateway.access` line:

    {"ts": …, "level": "INFO", "logger": "mcp_gateway.access", "msg": "request",
     "request_id": …, "method": "POST", "path": "/v1/…/mcp:call", "status": 200,
     "duration_ms": 1.7, "endpoint": "call", "client": "203.0.113.7", "tenant": "acme",
     "integration": "crm", "rpc_method": "tools/list"}

`path` never has the query string; no header value is ever logged. The MCP endpoint adds what
only it knows through `note_rpc_method`, `note_outcome` and `note_reason` (a refused key's
`reason` field). Normal client behaviour that is refused (outcome `not_offered`: the GET
stream, OAuth discovery) is logged at DEBUG, so it does not read as a failure.
"""

from __future__ import annotations

import asyncio
import logging
import time

from aiohttp import web
from aiohttp.web_urldispatcher import AbstractRoute

from gateway.observability import metrics
from gateway.observability.logs import ACCESS_LOGGER, REQUEST_ID_VAR
from gateway.observability.shared_metrics import SHARED_METRICS
from settings_api.http import SETTINGS, Handler, assign_request_id, client_address, error_answer

access_log = logging.getLogger(ACCESS_LOGGER)
log = logging.getLogger(__name__)

# What only the MCP endpoint knows, for the metrics label and the log line. Both are set (to
# None) on every request, so reading them never raises.
RPC_METHOD: web.RequestKey[str | None] = web.RequestKey("mcpgw_rpc_method", object)  # type: ignore[arg-type]
OUTCOME: web.RequestKey[str | None] = web.RequestKey("mcpgw_outcome", object)  # type: ignore[arg-type]
# Set only on a refused key (read with .get): most requests never pay for it.
REASON: web.RequestKey[str] = web.RequestKey("mcpgw_reason", str)

MAX_LOGGED_PATH = 512
MAX_LOGGED_RPC_METHOD = 100
CLIENT_CLOSED = 499  # nginx's status for a request whose client went away

# route key (name, else canonical path) → (endpoint, route label); bounded by route tables.
_ROUTES: dict[str, tuple[str, str]] = {}
_UNMATCHED = ("other", "unmatched")
_MCP_ENDPOINTS = frozenset({"call", "test"})
_RPC_LABELS = metrics.RPC_METHODS | {"batch", "invalid", "none"}
# Outcomes of what clients routinely try and are told is not offered: logged at DEBUG.
NOT_OFFERED = "not_offered"
_QUIET_OUTCOMES = frozenset({NOT_OFFERED})


def note_rpc_method(request: web.Request, body: object, invalid: bool = False) -> None:
    """Remember the JSON-RPC method of an MCP POST (for the metrics label and the log):
    `body` as parsed; `invalid` when it could not be parsed; None when it was not read."""
    if invalid:
        request[RPC_METHOD] = "invalid"
    elif isinstance(body, dict):
        method = body.get("method")
        request[RPC_METHOD] = method if isinstance(method, str) else "none"
    elif isinstance(body, list):
        request[RPC_METHOD] = "batch"
    else:
        request[RPC_METHOD] = "none"


def note_outcome(request: web.Request, outcome: str) -> None:
    """Override the outcome the status implies (e.g. `auth_throttled` for that 429)."""
    request[OUTCOME] = outcome


def note_reason(request: web.Request, reason: str) -> None:
    """Why the request's key was refused (`missing`, `revoked`, …): a field of its log line."""
    request[REASON] = reason


def outcome_for(status: int) -> str:
    if status < 400:
        return "ok"
    return _OUTCOMES.get(status) or ("client_error" if status < 500 else "error")


_OUTCOMES = {
    401: "auth_failed",
    403: "forbidden",
    404: "not_found",
    429: "rate_limited",
    CLIENT_CLOSED: "cancelled",
    503: "unavailable",
}


def classify(route: AbstractRoute) -> tuple[str, str]:
    """(endpoint, route label) of a matched route; ("other", "unmatched") when none matched."""
    resource = route.resource
    key = route.name or (resource.canonical if resource is not None else "")
    found = _ROUTES.get(key)
    if found is None:
        found = _classify(route.name, resource.canonical if resource is not None else None)
        _ROUTES[key] = found
    return found


def _classify(name: str | None, canonical: str | None) -> tuple[str, str]:
    if name:
        if name.startswith("mcp."):  # mcp.<endpoint> (gateway/endpoint.py)
            endpoint = name.split(".")[1]
            return (endpoint if endpoint in ("call", "test") else "other"), "mcp"
        if name.startswith("settings."):
            return "settings", name.removeprefix("settings.")
        return "other", name
    if canonical is None:
        return _UNMATCHED
    if canonical.startswith("/.well-known/"):
        return "other", "well-known"
    return "other", canonical.strip("/") or "root"


@web.middleware
async def edge_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """What every request gets, in one layer (each middleware layer costs every request):
    its request id (echoed as `X-Request-Id`), problem+json for whatever the handler raised,
    and its metrics and log line."""
    started = time.perf_counter()
    request_id = assign_request_id(request)
    endpoint, route = classify(request.match_info.route)
    request[RPC_METHOD] = request[OUTCOME] = None
    in_flight = metrics.IN_FLIGHT_BY_ENDPOINT[endpoint]
    in_flight.inc()
    token = REQUEST_ID_VAR.set(request_id)
    status = 500
    try:
        try:
            response = await handler(request)
        except asyncio.CancelledError:
            status = CLIENT_CLOSED
            raise
        except Exception as exc:
            answer = error_answer(exc, request)
            if answer is None:  # a redirect: aiohttp sends it
                assert isinstance(exc, web.HTTPException)
                exc.headers["X-Request-Id"] = request_id
                status = exc.status
                raise
            response = answer
        response.headers["X-Request-Id"] = request_id
        status = response.status
        return response
    finally:
        in_flight.dec()
        elapsed = time.perf_counter() - started
        try:
            _record(request, request_id, endpoint, route, status, elapsed)
        except Exception:  # bookkeeping must never turn an answer into an error
            log.exception("could not record the request's metrics or log line")
        finally:
            REQUEST_ID_VAR.reset(token)


def _record(
    request: web.Request, request_id: str, endpoint: str, route: str, status: int, elapsed: float
) -> None:
    rpc_method = request[RPC_METHOD]
    mcp = endpoint in _MCP_ENDPOINTS
    if not mcp:
        rpc_label = "-"
    elif rpc_method is None:
        rpc_label = "none"
    else:
        rpc_label = rpc_method if rpc_method in _RPC_LABELS else "other"
    outcome = request[OUTCOME] or outcome_for(status)
    method = request.method
    metrics.observe_request(
        (
            endpoint,
            method if method in metrics.HTTP_METHODS else "other",
            route,
            rpc_label,
            outcome,
        ),
        elapsed,
    )
    if outcome == "rate_limited":
        metrics.RATE_LIMITED_BY_ENDPOINT[endpoint].inc()
    level = logging.DEBUG if outcome in _QUIET_OUTCOMES else logging.INFO
    if not access_log.isEnabledFor(level):
        return
    fields: dict[str, object] = {
        "request_id": request_id,
        "method": method[:16],
        "path": request.path[:MAX_LOGGED_PATH],
        "status": status,
        "duration_ms": round(elapsed * 1000, 2),
        "endpoint": endpoint,
        "route": route,
        "outcome": outcome,
        "client": _client(request),
    }
    if endpoint != "other":
        match_info = request.match_info
        fields["tenant"] = match_info.get("tenant")
        if mcp or "integration" in match_info:
            fields["integration"] = match_info.get("integration")
        if mcp:
            fields["rpc_method"] = (
                rpc_method[:MAX_LOGGED_RPC_METHOD] if rpc_method is not None else None
            )
            reason = request.get(REASON)
            if reason is not None:
                fields["reason"] = reason
    access_log.log(level, "request", extra={"fields": fields})


def _client(request: web.Request) -> str | None:
    settings = request.app.get(SETTINGS)
    return client_address(request, settings.trust_forwarded if settings else False)


async def metrics_handler(request: web.Request) -> web.Response:
    """`GET /metrics`: this process's metrics (all workers' under `--workers`) in Prometheus
    text format, or OpenMetrics when the scraper asks for it."""
    accept = request.headers.get("Accept")
    shared = request.app.get(SHARED_METRICS)  # `serve --workers`: every worker's, merged
    body, content_type = await shared.render(accept) if shared else metrics.render(accept)
    response = web.Response(body=body)
    response.headers["Content-Type"] = content_type
    return response
