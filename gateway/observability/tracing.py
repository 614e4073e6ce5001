"""OpenTelemetry traces of the MCP endpoints, exported over OTLP/HTTP (docs/operations.md).

Off unless `OTEL_EXPORTER_OTLP_ENDPOINT` or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` is set when the
app is built: `ENABLED` is decided then, once, and every hook on the request path is behind it,
so a gateway without tracing creates no span and attaches no context. When on, each MCP request
is one SERVER span (named after its JSON-RPC method, `tools/call <tool>` for a call), a child of
the caller's span when the request carries a W3C `traceparent`; callUrl's upstream exchange is a
CLIENT span under it whose context goes to the upstream in `traceparent` (header and
`params._meta`). Spans leave through a BatchSpanProcessor (its own thread; never on the request
path), flushed when the app shuts down. The SDK reads every other `OTEL_*` variable itself
(sampler, batch sizes, exporter headers and timeout).

Span attributes carry names, ids and codes only: never a key, token, upstream header value or
argument value.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from aiohttp import web
from opentelemetry import trace
from opentelemetry.trace import SpanKind, StatusCode, Tracer
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from yarl import URL

from gateway.observability import metrics
from gateway.observability.middleware import OUTCOME
from gateway.transport.era import EraChoice
from mcp_core.headers import SESSION_ID_HEADER
from mcp_core.version import __version__
from mcp_core.versions import Era
from settings_api.http import Handler

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider

__all__ = [
    "ENABLED",
    "configured",
    "note_answer",
    "note_message",
    "setup_tracing",
    "traced",
    "upstream_span",
]

log = logging.getLogger(__name__)

ENDPOINT_VARS = ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")
DEFAULT_SERVICE_NAME = "mcp-gateway"
INSTRUMENTATION_NAME = "mcp-gateway"
# Client-chosen names become span names only when known (low cardinality); attributes keep
# them, cut to this length.
MAX_NAME_CHARS = 200

# Decided once by `setup_tracing` (when the app is built); read on every request.
ENABLED = False
_tracer: Tracer | None = None
_propagator = TraceContextTextMapPropagator()


def configured(environ: Mapping[str, str]) -> bool:
    """Whether the environment asks for traces: an OTLP endpoint, and the SDK not disabled."""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    if environ.get("OTEL_TRACES_EXPORTER", "otlp").strip().lower() == "none":
        return False
    return any(environ.get(name, "").strip() for name in ENDPOINT_VARS)


def setup_tracing(app: web.Application) -> None:
    """Turn tracing on for this process when the environment configures it (before the MCP
    routes are added: they are wrapped then)."""
    global ENABLED
    if configured(os.environ):
        ENABLED = True
        app.cleanup_ctx.append(_tracer_ctx)


async def _tracer_ctx(app: web.Application) -> AsyncIterator[None]:
    global ENABLED, _tracer
    protocol = _protocol(os.environ)
    if protocol != "http/protobuf":
        log.warning("OTLP protocol %r is not supported; exporting over http/protobuf", protocol)
    provider = _provider()
    log.info("OpenTelemetry traces on: OTLP over HTTP")
    _tracer = provider.get_tracer(INSTRUMENTATION_NAME, __version__)
    try:
        yield
    finally:
        ENABLED = False
        _tracer = None
        # Flushes what is queued; blocking (the exporter's thread), so off the loop.
        await asyncio.to_thread(provider.shutdown)


def _protocol(environ: Mapping[str, str]) -> str:
    return (
        environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
        or environ.get("OTEL_EXPORTER_OTLP_PROTOCOL")
        or "http/protobuf"
    ).strip()


def _provider() -> TracerProvider:
    """The SDK's TracerProvider with the OTLP/HTTP exporter, both configured from `OTEL_*`
    (imported here: a gateway without tracing never loads the SDK)."""
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import SERVICE_NAME, SERVICE_VERSION, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    resource = Resource.create({SERVICE_VERSION: __version__})
    if str(resource.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
        resource = resource.merge(Resource({SERVICE_NAME: DEFAULT_SERVICE_NAME}))
    provider = TracerProvider(resource=resource)  # the sampler from OTEL_TRACES_SAMPLER
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    return provider


# --- the SERVER span --------------------------------------------------------------------------


def traced(handler: Handler, endpoint: str) -> Handler:
    """`handler` (an MCP endpoint's) inside one SERVER span per request."""

    async def serve(request: web.Request) -> web.StreamResponse:
        assert _tracer is not None, "the tracer starts with the app"
        parent = _propagator.extract(request.headers)
        match = request.match_info
        attributes = {
            "mcpgw.url": endpoint,
            "mcpgw.tenant": match.get("tenant", "")[:MAX_NAME_CHARS],
            "mcpgw.integration": match.get("integration", "")[:MAX_NAME_CHARS],
            "http.request.method": request.method,
        }
        if request.method == "DELETE":  # ends a legacy session
            session_id = request.headers.get(SESSION_ID_HEADER)
            if session_id is not None:
                attributes["mcp.session.id"] = session_id[:MAX_NAME_CHARS]
        with _tracer.start_as_current_span(
            request.method,
            context=parent,
            kind=SpanKind.SERVER,
            attributes=attributes,
            record_exception=False,  # an exception's text may quote what it was given
            set_status_on_exception=False,
        ) as span:
            try:
                response = await handler(request)
            except BaseException as exc:
                _fail(span, type(exc).__name__)
                raise
            span.set_attribute("http.response.status_code", response.status)
            if request.get(OUTCOME) == "rate_limited":
                _fail(span, "rate_limited")
            elif response.status >= 400 and not _failed(span):
                _fail(span, str(response.status))
            return response

    return serve


def note_message(
    body: Any, choice: EraChoice | None, headers: Mapping[str, str], tools: Mapping[str, Any]
) -> None:
    """What the parsed POST says about the request: method, tool, id, version, session. A
    span is named after a known method and an exposed tool only (names clients choose would
    make span names unbounded); the attributes say what was asked."""
    span = trace.get_current_span()
    if isinstance(body, list):
        span.update_name("batch")
        return
    if not isinstance(body, dict):
        return
    method = body.get("method")
    if isinstance(method, str):
        method = method[:MAX_NAME_CHARS]
        span.set_attribute("mcp.method.name", method)
        name = method if method in metrics.RPC_METHODS else "other"
        params = body.get("params")
        tool = params.get("name") if method == "tools/call" and isinstance(params, dict) else None
        if isinstance(tool, str):
            span.set_attribute("gen_ai.tool.name", tool[:MAX_NAME_CHARS])
            span.set_attribute("gen_ai.operation.name", "execute_tool")
            if tool in tools:
                name = f"tools/call {tool}"
        span.update_name(name)
    request_id = body.get("id")
    if isinstance(request_id, (str, int)) and not isinstance(request_id, bool):
        span.set_attribute("jsonrpc.request.id", str(request_id)[:MAX_NAME_CHARS])
    if choice is None:
        return
    if isinstance(choice.version, str):
        span.set_attribute("mcp.protocol.version", choice.version[:MAX_NAME_CHARS])
    session_id = headers.get(SESSION_ID_HEADER) if choice.era is Era.LEGACY else None
    if session_id is not None:
        span.set_attribute("mcp.session.id", session_id[:MAX_NAME_CHARS])


def note_answer(answer: Mapping[str, Any] | Sequence[Mapping[str, Any]]) -> None:
    """The JSON-RPC answer: ERROR with `error.type` for an error (its code) or a tool error."""
    span = trace.get_current_span()
    for message in answer if isinstance(answer, Sequence) else (answer,):
        kind = _error_type(message)
        if kind is not None:
            if kind != "tool_error":
                span.set_attribute("rpc.response.status_code", kind)
            _fail(span, kind)
            return
        result = message.get("result")
        version = result.get("protocolVersion") if isinstance(result, dict) else None
        if isinstance(version, str):  # initialize: the version negotiated
            span.set_attribute("mcp.protocol.version", version[:MAX_NAME_CHARS])


def _error_type(message: Mapping[str, Any]) -> str | None:
    error = message.get("error")
    if isinstance(error, dict):
        return str(error.get("code"))
    result = message.get("result")
    if isinstance(result, dict) and result.get("isError") is True:
        return "tool_error"
    return None


def _fail(span: trace.Span, error_type: str) -> None:
    span.set_attribute("error.type", error_type)
    span.set_status(StatusCode.ERROR)


def _failed(span: trace.Span) -> bool:
    status = getattr(span, "status", None)  # an SDK span's; a non-recording span has none
    return status is not None and status.status_code is StatusCode.ERROR


# --- the CLIENT span of callUrl's upstream exchange -------------------------------------------


@contextlib.contextmanager
def upstream_span(tool: str, upstream_url: str) -> Iterator[UpstreamSpan]:
    """A CLIENT span for one upstream `tools/call`, current while it runs; the caller sends
    `trace_headers()` with the request and reports the result or error."""
    assert _tracer is not None, "the tracer starts with the app"
    url = URL(upstream_url)
    attributes: dict[str, Any] = {
        "mcp.method.name": "tools/call",
        "gen_ai.tool.name": tool,
        "gen_ai.operation.name": "execute_tool",
    }
    if url.host is not None:  # never the URL itself: it may hold credentials
        attributes["server.address"] = url.host
    if url.port is not None:
        attributes["server.port"] = url.port
    with _tracer.start_as_current_span(
        f"tools/call {tool}",
        kind=SpanKind.CLIENT,
        attributes=attributes,
        record_exception=False,
        set_status_on_exception=False,
    ) as span:
        yield UpstreamSpan(span)


class UpstreamSpan:
    """The CLIENT span, as the proxy sees it."""

    __slots__ = ("_span",)

    def __init__(self, span: trace.Span) -> None:
        self._span = span

    def trace_headers(self) -> dict[str, str]:
        """`traceparent` (and `tracestate`) naming this span, for the upstream request."""
        carrier: dict[str, str] = {}
        _propagator.inject(carrier, context=trace.set_span_in_context(self._span))
        return carrier

    def result(self, result: Mapping[str, Any]) -> None:
        if result.get("isError") is True:
            _fail(self._span, "tool_error")

    def error(self, error_type: str) -> None:
        _fail(self._span, error_type)
