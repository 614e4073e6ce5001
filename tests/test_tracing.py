"""OpenTelemetry traces: one SERVER span per MCP request, a child of the caller's `traceparent`;
callUrl's upstream exchange a CLIENT span under it whose context the upstream receives; ERROR
on JSON-RPC and tool errors; no secret in any exported byte; off without an OTLP endpoint.

The spans are exported over OTLP/HTTP to a receiver in the test (tests/otlp_receiver.py)."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient
from conftest import JWT_SECRET, Api
from faults import Client
from mcp_helpers import MODERN, modern_headers, modern_message, sse_messages
from mcp_stub import StubUpstream
from otlp_receiver import CLIENT, ERROR, SERVER, UNSET, OtlpReceiver, ReceivedSpan
from polling import until
from processes import GatewayProcess, loaded_after

from gateway.observability import tracing
from gateway.server import build_app
from settings_api.config import Settings
from settings_api.jwt_auth import issue_token

VERSION = "2025-11-25"
INFO = {"name": "trace-test", "version": "1"}
UPSTREAM_SECRET = "Bearer upstream-secret-" + "u" * 16
ARGUMENT_SECRET = "argument-value-" + "a" * 16
STREAMED_TOOL_ERROR = '{"content": [{"type": "text", "text": "no"}], "isError": true}'
TOOLS = [
    {
        "name": "search_contacts",
        "inputSchema": {
            "type": "object",
            "properties": {"query": {"type": "string"}},
            "required": ["query"],
        },
    }
]


def traceparent() -> tuple[str, str, str]:
    """A caller's sampled span: (header, trace id, span id)."""
    trace_id, span_id = secrets.token_hex(16), secrets.token_hex(8)
    return f"00-{trace_id}-{span_id}-01", trace_id, span_id


class Mcp:
    """Legacy-era MCP requests against one gateway process, with optional extra headers."""

    def __init__(self, http: aiohttp.ClientSession, base: str, key: str) -> None:
        self.http, self.base, self.key = http, base, key
        self.session: str | None = None

    async def post(
        self, body: Any, *, url: str = "call", key: str | None = None, **headers: str
    ) -> tuple[int, dict[str, str], Any]:
        sent = {
            "Authorization": f"Bearer {key or self.key}",
            "MCP-Protocol-Version": VERSION,
            "Accept": "application/json, text/event-stream",
            **headers,
        }
        if self.session is not None:
            sent["Mcp-Session-Id"] = self.session
        async with self.http.post(f"{self.base}/mcp:{url}", json=body, headers=sent) as resp:
            text = await resp.text()
            if resp.content_type == "text/event-stream":
                return resp.status, dict(resp.headers), sse_messages(text)
            return resp.status, dict(resp.headers), json.loads(text) if text else None

    async def call(self, tool: str, arguments: dict[str, Any], **kw: Any) -> Any:
        body = {
            "jsonrpc": "2.0",
            "id": 7,
            "method": "tools/call",
            "params": {"name": tool, "arguments": arguments},
        }
        return await self.post(body, **kw)


def start(tmp_path: Path, otlp_url: str, **env: str) -> GatewayProcess:
    return GatewayProcess(
        tmp_path,
        "traced",
        {
            "MCPGW_DATABASE_URL": f"sqlite:///{tmp_path / 'store.db'}",
            "MCPGW_DATA_DIR": str(tmp_path / "data"),
            "MCPGW_JWT_SECRET": JWT_SECRET,
            "OTEL_EXPORTER_OTLP_ENDPOINT": otlp_url,
            **env,
        },
    ).wait_ready()


async def enable(replica: Client, upstream_url: str) -> str:
    await replica.settings("PUT", json={"name": "CRM"})
    config = await replica.settings(
        "POST",
        "/configs",
        json={
            "tools": TOOLS,
            "upstreamUrl": upstream_url,
            "upstreamHeaders": {"Authorization": UPSTREAM_SECRET},
        },
    )
    body = {"enabled": True, "configId": config["configId"], "exposedToolIds": ["search_contacts"]}
    return (await replica.settings("PATCH", "/mcp", json=body))["apiKey"]  # type: ignore[no-any-return]


def spans_of(receiver: OtlpReceiver, trace_id: str, kind: int) -> list[ReceivedSpan]:
    return [s for s in receiver.spans if s.trace_id == trace_id and s.kind == kind]


def server_span(receiver: OtlpReceiver, trace_id: str) -> ReceivedSpan:
    [span] = spans_of(receiver, trace_id, SERVER)
    return span


def client_span(receiver: OtlpReceiver, trace_id: str) -> ReceivedSpan:
    [span] = spans_of(receiver, trace_id, CLIENT)
    return span


def failure(span: ReceivedSpan) -> tuple[int, Any]:
    """The span's status and `error.type`."""
    return span.status, span.attributes.get("error.type")


@pytest.mark.slow  # starts a gateway process
async def test_spans_of_a_session_on_both_urls(
    tmp_path: Path, aiohttp_server: Any, http: aiohttp.ClientSession
) -> None:
    receiver = OtlpReceiver()
    otlp = await aiohttp_server(receiver.app())
    stub = StubUpstream(tools=TOOLS, require_headers={"Authorization": UPSTREAM_SECRET})
    upstream_url = str((await aiohttp_server(stub.app())).make_url("/mcp"))
    # Nothing is exported on a schedule during the test: the spans must come from the flush
    # when the process shuts down.
    proc = await asyncio.to_thread(
        start,
        tmp_path,
        str(otlp.make_url("")).rstrip("/"),
        OTEL_SERVICE_NAME="gw-under-test",
        OTEL_BSP_SCHEDULE_DELAY="600000",
    )
    bad_key = "mcpk_" + "b" * 40
    try:
        replica = Client(http, proc)
        key = await enable(replica, upstream_url)
        mcp = Mcp(http, replica.api, key)

        init_parent, init_trace, init_caller = traceparent()
        status, headers, _ = await mcp.post(
            {
                "jsonrpc": "2.0",
                "id": "init-1",
                "method": "initialize",
                "params": {
                    "protocolVersion": VERSION,
                    "capabilities": {},
                    "clientInfo": {"name": "trace-test", "version": "1"},
                },
            },
            traceparent=init_parent,
        )
        assert status == 200
        mcp.session = session_id = headers["Mcp-Session-Id"]

        call_parent, call_trace, call_caller = traceparent()
        status, _, body = await mcp.call(
            "search_contacts", {"query": ARGUMENT_SECRET}, traceparent=call_parent
        )
        assert status == 200 and body["result"]["isError"] is False

        _, unknown_trace, _ = unknown = traceparent()
        status, _, body = await mcp.call("no_such_tool", {}, traceparent=unknown[0])
        assert body["error"]["code"] == -32602

        stub.mode, stub.error_code, stub.fail_on = "jsonrpc-error", -32042, {"tools/call"}
        _, failed_trace, _ = failed = traceparent()
        status, _, body = await mcp.call("search_contacts", {"query": "x"}, traceparent=failed[0])
        assert body["error"]["code"] == -32042
        stub.mode = "ok"

        _, tool_error_trace, _ = tool_error = traceparent()  # the simulator: bad arguments
        status, _, body = await mcp.call(
            "search_contacts", {"query": 5}, url="test", traceparent=tool_error[0]
        )
        assert body["result"]["isError"] is True

        # A call whose progress is streamed (SSE): its answer, a tool error, ends the stream.
        stub.sse, stub.raw_results["tools/call"] = True, [STREAMED_TOOL_ERROR]
        _, streamed_trace, _ = streamed = traceparent()
        body = {
            "jsonrpc": "2.0",
            "id": 8,
            "method": "tools/call",
            "params": {
                "name": "search_contacts",
                "arguments": {"query": "x"},
                "_meta": {"progressToken": "p-1"},
            },
        }
        status, _, events = await mcp.post(body, traceparent=streamed[0])
        assert "notifications/progress" in [event.get("method") for event in events]
        assert events[-1]["result"]["isError"] is True

        # The modern era: no session; the version from `_meta`.
        _, modern_trace, _ = modern = traceparent()
        message = modern_message("tools/list", id=9)
        modern_sent = {**modern_headers(message, key), "traceparent": modern[0]}
        async with http.post(f"{replica.api}/mcp:test", json=message, headers=modern_sent) as resp:
            assert resp.status == 200

        _, refused_trace, _ = refused = traceparent()
        status, _, _ = await mcp.call("search_contacts", {}, key=bad_key, traceparent=refused[0])
        assert status == 401

        status, _, _ = await mcp.post({"jsonrpc": "2.0", "id": 1, "method": "ping"})
        assert status == 200

        _, ended_trace, _ = ended = traceparent()
        sent = {"Authorization": f"Bearer {key}", "Mcp-Session-Id": session_id}
        async with http.delete(
            f"{replica.api}/mcp:call", headers={**sent, "traceparent": ended[0]}
        ) as resp:
            assert resp.status == 204
    finally:
        await asyncio.to_thread(proc.stop)

    await until(lambda: len(receiver.spans) >= 13, timeout_s=10)
    resources = {tuple(sorted(span.resource.items())) for span in receiver.spans}
    assert len(resources) == 1 and receiver.spans[0].resource["service.name"] == "gw-under-test"

    # initialize: a direct child of the caller's span; the version it negotiated.
    init = server_span(receiver, init_trace)
    assert (init.name, init.parent_span_id) == ("initialize", init_caller)
    assert init.attributes["mcp.method.name"] == "initialize"
    assert init.attributes["jsonrpc.request.id"] == "init-1"
    assert init.attributes["mcp.protocol.version"] == VERSION
    assert init.attributes["mcpgw.tenant"] == "acme"
    assert init.attributes["mcpgw.integration"] == "crm"
    assert init.attributes["mcpgw.url"] == "call"
    assert "mcp.session.id" not in init.attributes  # the client sent none
    assert init.status == UNSET

    # tools/call on callUrl: SERVER span, CLIENT span under it, its context sent upstream.
    call = server_span(receiver, call_trace)
    assert call.name == "tools/call search_contacts"
    assert call.parent_span_id == call_caller
    assert call.attributes["gen_ai.tool.name"] == "search_contacts"
    assert call.attributes["mcp.method.name"] == "tools/call"
    assert call.attributes["jsonrpc.request.id"] == "7"
    assert call.attributes["mcp.session.id"] == session_id
    assert call.status == UNSET
    upstream = client_span(receiver, call_trace)
    assert upstream.parent_span_id == call.span_id
    assert upstream.name == "tools/call search_contacts"
    assert upstream.attributes["server.address"] == "127.0.0.1"
    sent = f"00-{call_trace}-{upstream.span_id}-01"
    [(seen_headers, seen_message)] = [
        (h, m)
        for h, m in zip(stub.received_headers, stub.received_messages, strict=True)
        if m.get("method") == "tools/call" and call_trace in h.get("traceparent", "")
    ]
    assert seen_headers["traceparent"] == sent
    assert seen_message["params"]["_meta"]["traceparent"] == sent

    # Errors: a JSON-RPC error (the gateway's, the upstream's), a tool error, a refusal.
    unknown_span = server_span(receiver, unknown_trace)
    assert unknown_span.name == "tools/call"  # an unexposed name never names a span
    assert unknown_span.attributes["gen_ai.tool.name"] == "no_such_tool"
    assert failure(unknown_span) == (ERROR, "-32602")
    assert not spans_of(receiver, unknown_trace, CLIENT)
    assert failure(server_span(receiver, failed_trace)) == (ERROR, "-32042")
    assert failure(client_span(receiver, failed_trace)) == (ERROR, "-32042")
    tool_span = server_span(receiver, tool_error_trace)
    assert tool_span.attributes["mcpgw.url"] == "test"
    assert failure(tool_span) == (ERROR, "tool_error")
    assert not spans_of(receiver, tool_error_trace, CLIENT)
    assert failure(server_span(receiver, streamed_trace)) == (ERROR, "tool_error")
    assert failure(client_span(receiver, streamed_trace)) == (ERROR, "tool_error")
    modern_span = server_span(receiver, modern_trace)
    assert modern_span.name == "tools/list"
    assert modern_span.attributes["mcp.protocol.version"] == MODERN
    assert "mcp.session.id" not in modern_span.attributes
    assert modern_span.attributes["mcpgw.url"] == "test"
    assert failure(server_span(receiver, refused_trace)) == (ERROR, "401")

    ended_span = server_span(receiver, ended_trace)
    assert (ended_span.name, ended_span.attributes["mcp.session.id"]) == ("DELETE", session_id)
    assert failure(ended_span) == (UNSET, None)

    # Without a traceparent: a root span.
    [ping] = receiver.named("ping")
    assert ping.parent_span_id == "" and ping.kind == SERVER

    exported = b"".join(receiver.bodies)
    for secret in (key, bad_key, UPSTREAM_SECRET, ARGUMENT_SECRET, JWT_SECRET):
        assert secret.encode() not in exported


async def in_process_gateway(
    aiohttp_client: Any, settings: Settings, http: aiohttp.ClientSession, upstream_url: str
) -> tuple[TestClient, Mcp]:
    """The whole app in this process (the environment as the test set it), enabled on
    `upstream_url`, with an initialized legacy session."""
    client = await aiohttp_client(build_app(settings))
    api = Api(client, {"Authorization": f"Bearer {issue_token(JWT_SECRET, 'acme')}"})
    await api.call("PUT", "/crm", 201, json={"name": "CRM"})
    body = {"tools": TOOLS, "upstreamUrl": upstream_url}
    _, config = await api.call("POST", "/crm/configs", 201, json=body)
    key = await api.enable(config["configId"], ["search_contacts"])
    mcp = Mcp(http, str(client.make_url(api.base + "/crm")), key)
    status, headers, _ = await mcp.post(
        {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "initialize",
            "params": {"protocolVersion": VERSION, "capabilities": {}, "clientInfo": INFO},
        }
    )
    assert status == 200
    mcp.session = headers["Mcp-Session-Id"]
    return client, mcp


def clear_otel_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in os.environ:
        if name.startswith("OTEL_"):
            monkeypatch.delenv(name)


def upstream_call(stub: StubUpstream) -> tuple[dict[str, str], dict[str, Any]]:
    [seen] = [
        (headers, message)
        for headers, message in zip(stub.received_headers, stub.received_messages, strict=True)
        if message.get("method") == "tools/call"
    ]
    return seen


@pytest.mark.backends("sqlite")
async def test_sampled_out_requests_export_nothing_but_keep_the_trace(
    aiohttp_client: Any,
    aiohttp_server: Any,
    settings: Settings,
    http: aiohttp.ClientSession,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    receiver = OtlpReceiver()
    otlp = await aiohttp_server(receiver.app())
    stub = StubUpstream(tools=TOOLS)
    upstream_url = str((await aiohttp_server(stub.app())).make_url("/mcp"))
    clear_otel_environment(monkeypatch)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", str(otlp.make_url("/v1/traces")))
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "always_off")
    client, mcp = await in_process_gateway(aiohttp_client, settings, http, upstream_url)
    parent, trace_id, _ = traceparent()
    status, _, _ = await mcp.call("search_contacts", {"query": "q"}, traceparent=parent)
    assert status == 200
    await client.close()  # shuts the exporter down, flushing what it holds

    assert receiver.spans == []
    headers, message = upstream_call(stub)
    version, sent_trace, _, flags = headers["traceparent"].split("-")
    assert (version, sent_trace, flags) == ("00", trace_id, "00")  # the caller's trace, unsampled
    assert message["params"]["_meta"]["traceparent"] == headers["traceparent"]


@pytest.mark.backends("sqlite")
async def test_without_an_endpoint_nothing_is_traced(
    aiohttp_client: Any,
    aiohttp_server: Any,
    settings: Settings,
    http: aiohttp.ClientSession,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    stub = StubUpstream(tools=TOOLS)
    upstream_url = str((await aiohttp_server(stub.app())).make_url("/mcp"))
    clear_otel_environment(monkeypatch)
    client, mcp = await in_process_gateway(aiohttp_client, settings, http, upstream_url)
    assert not tracing.ENABLED
    parent, _, _ = traceparent()
    body = {
        "jsonrpc": "2.0",
        "id": 2,
        "method": "tools/call",
        "params": {"name": "search_contacts", "arguments": {}, "_meta": {"traceparent": parent}},
    }
    status, _, _ = await mcp.post(body, traceparent=parent)
    assert status == 200
    await client.close()

    headers, message = upstream_call(stub)
    assert "traceparent" not in {name.lower() for name in headers}
    assert message["params"]["_meta"] == {"traceparent": parent}  # relayed as the client sent it


def test_configured_by_the_standard_variables_and_the_sdk_loaded_only_then() -> None:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    assert not tracing.configured(environ)
    assert tracing.configured({**environ, "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://c:4318"})
    assert tracing.configured({**environ, "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"})
    for off in ({"OTEL_SDK_DISABLED": "true"}, {"OTEL_TRACES_EXPORTER": "none"}):
        assert not tracing.configured({**environ, "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c", **off})
    statement = "from gateway.server import build_app"
    assert loaded_after(statement, ("opentelemetry.sdk.trace", "opentelemetry.exporter")) == []
