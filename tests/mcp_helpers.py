"""The MCP endpoints' test rig: a data-plane app on fakes (resolver, limiter, executors) and
request helpers for both protocol eras, shared by the MCP transport, limit-counting and SDK
client tests. Not a test module.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from aiohttp import ClientResponse, web
from aiohttp.test_utils import TestClient, make_mocked_request
from conftest import make_settings

from gateway.context import (
    Charge,
    Decision,
    Endpoint,
    IntegrationView,
    KeyEntry,
    LimiterUnavailable,
    RequestContext,
)
from gateway.endpoint import setup_mcp_routes
from gateway.observability.middleware import edge_middleware
from gateway.state import GATEWAY, AuthFailure, GatewayState
from mcp_core.errors import RATE_LIMIT_META, RATE_LIMITED, McpError
from mcp_core.log_levels import LOG_LEVELS
from mcp_core.versions import Era
from settings_api.http import SETTINGS

TENANT = "acme"
KEY = "mcpk_crm_key"  # bound to acme/crm
OTHER_KEY = "mcpk_billing_key"  # bound to acme/billing
OFF_KEY = "mcpk_off_key"  # bound to acme/off (MCP disabled)
GHOST_KEY = "mcpk_ghost_key"  # bound to acme/ghost (no such integration)
BIG_KEY = "mcpk_big_key"  # bound to acme/big (250 tools)
CALL = f"/v1/tenants/{TENANT}/integrations/crm/mcp:call"
TEST = f"/v1/tenants/{TENANT}/integrations/crm/mcp:test"
PUBLIC_URL = "http://gw.test:8080"  # MCPGW_PUBLIC_URL of make_settings
TOKEN = "mcpat_" + "t" * 43  # an OAuth access token KEY approved for crm's callUrl
MODERN = "2026-07-28"
ALL_VERSIONS = ["2026-07-28", "2025-11-25", "2025-06-18", "2025-03-26", "2024-11-05"]
MAX_BODY = 8192

TOOLS: tuple[dict[str, Any], ...] = (
    {
        "name": "search_contacts",
        "description": "Search the CRM's contacts",
        "inputSchema": {"type": "object", "properties": {"query": {"type": "string"}}},
    },
    {
        "name": "contact_stats",
        "description": "Counts",
        "inputSchema": {"type": "object", "additionalProperties": False},
        "outputSchema": {
            "type": "object",
            "properties": {"count": {"type": "integer"}},
            "required": ["count"],
        },
    },
    {
        "name": "regional_lookup",
        "description": "Look up in one region",
        "inputSchema": {
            "type": "object",
            "properties": {
                "region": {"type": "string", "x-mcp-header": "Region"},
                "shard": {"type": "integer", "x-mcp-header": "Shard"},
                "query": {"type": "string"},
            },
            "required": ["region"],
        },
    },
)
HIDDEN_TOOL = "delete_all_contacts"  # in the bound config, not exposed


def make_view(
    integration: str,
    tools: tuple[dict[str, Any], ...] = TOOLS,
    *,
    enabled: bool = True,
    name: str | None = None,
) -> IntegrationView:
    return IntegrationView(
        tenant_id=TENANT,
        integration_id=integration,
        name=name or integration.upper(),
        enabled=enabled,
        description=f"Use {integration} for customer data.",
        config_id=f"cfg-{integration}",
        upstream_url=None,
        upstream_headers={},
        tools=tools,
        tools_by_name={t["name"]: t for t in tools},
    )


class FakeResolver:
    def __init__(self) -> None:
        big = tuple(
            {"name": f"tool_{i:03d}", "inputSchema": {"type": "object"}} for i in range(250)
        )
        self.views = {
            (TENANT, "crm"): make_view("crm", name="CRM"),
            (TENANT, "billing"): make_view("billing"),
            (TENANT, "off"): make_view("off", enabled=False),
            (TENANT, "big"): make_view("big", big),
        }
        self.keys = {
            raw: KeyEntry(
                key_id=f"id-{name}",
                tenant_id=TENANT,
                integration_id=name,
                scope="mcp:invoke",
            )
            for raw, name in (
                (KEY, "crm"),
                (OTHER_KEY, "billing"),
                (OFF_KEY, "off"),
                (GHOST_KEY, "ghost"),
                (BIG_KEY, "big"),
            )
        }
        self.tokens = {TOKEN: (self.keys[KEY], PUBLIC_URL + CALL)}

    async def authenticate(self, raw_key: str | None) -> KeyEntry:
        if not raw_key:
            raise AuthFailure("missing", "no API key was sent")
        if not raw_key.startswith("mcpk_"):
            raise AuthFailure("malformed", "that is not an MCP API key")
        entry = self.keys.get(raw_key)
        if entry is None:
            raise AuthFailure("unknown", "the API key is not valid")
        return entry

        self.tokens = {TOKEN: (self.keys[KEY], PUBLIC_URL + CALL)}

    async def authenticate_token(self, raw_token: str, resource: str) -> KeyEntry:
        key, issued_for = self.tokens.get(raw_token) or (None, None)
        if key is None:
            raise AuthFailure("unknown", "unknown access token")
        if issued_for != resource:
            raise AuthFailure("wrong-resource", "issued for another MCP endpoint")
        return key

    async def integration(self, tenant: str, integration: str) -> IntegrationView | None:
        return self.views.get((tenant, integration))


class FakeLimiter:
    """The limiter and the session store (as the real limiters are both)."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []
        self.sessions_asked: list[str] = []
        self.ended: dict[str, float] = {}
        self.log_levels: dict[str, tuple[str, float]] = {}  # session id -> (level, expiry)
        self.refuse = False
        self.unavailable = False

    async def check(self, key_id: str, *, tools_call: bool) -> Decision:
        self.calls.append({"key_id": key_id, "tools_call": tools_call})
        if self.unavailable:
            raise LimiterUnavailable("redis is down")
        if self.refuse:
            return Decision(allowed=False, limit=10, remaining=0, reset_s=1.2, retry_after_s=0.3)
        return Decision(allowed=True, limit=10, remaining=7, reset_s=0.4, retry_after_s=0)

    async def check_many(self, key_id: str, charges: Sequence[Charge]) -> list[Decision]:
        return [
            await self.check(key_id, tools_call=charge is not Charge.REQUEST) for charge in charges
        ]

    async def session_ended(self, key_id: str, session_id: str) -> bool:
        self.sessions_asked.append(session_id)
        return session_id in self.ended

    async def end_session(self, key_id: str, session_id: str, expires_at_s: float) -> None:
        self.ended[session_id] = expires_at_s

    async def session_log_level(self, key_id: str, session_id: str) -> str | None:
        if self.unavailable:
            raise LimiterUnavailable("redis is down")
        found = self.log_levels.get(session_id)
        return found[0] if found else None

    async def set_session_log_level(
        self, key_id: str, session_id: str, level: str, expires_at_s: float
    ) -> None:
        if self.unavailable:
            raise LimiterUnavailable("redis is down")
        self.log_levels[session_id] = (level, expires_at_s)

    async def close(self) -> None:
        pass


class FakeExecutor:
    """Echoes its endpoint; `arguments` script the odd behaviours (`logs`: a log message at
    every level, as an upstream would send)."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.calls: list[dict[str, Any]] = []
        self.cancelled = asyncio.Event()

    async def call_tool(
        self,
        ctx: RequestContext,
        tool: Mapping[str, Any],
        arguments: dict[str, Any],
        meta: Mapping[str, Any] | None,
    ) -> dict[str, Any]:
        self.calls.append(
            {
                "tool": tool["name"],
                "arguments": arguments,
                "meta": meta,
                "era": ctx.era,
                "version": ctx.protocol_version,
                "session_id": ctx.session_id,
                "seed": ctx.simulator_seed,
                "region_header": ctx.request.headers.get("Mcp-Param-Region"),
            }
        )
        if tool["name"] == "contact_stats":
            return {
                "content": [{"type": "text", "text": '{"count": 3}'}],
                "structuredContent": {"count": 3},
            }
        if arguments.get("explode"):
            raise RuntimeError("db password hunter2 leaked in /srv/secret.py")
        if arguments.get("fail"):
            raise McpError(
                -32603, "Upstream MCP server timed out after 3 s", {"upstream": "timeout"}
            )
        token = (meta or {}).get("progressToken")
        if arguments.get("progress") and ctx.notify is not None:
            for step in (1, 2):
                await ctx.notify(
                    {
                        "method": "notifications/progress",
                        "params": {"progressToken": token, "progress": step, "total": 2},
                    }
                )
        if arguments.get("logs") and ctx.notify is not None:
            for level in LOG_LEVELS:  # the gateway decides which reach the client
                await ctx.notify(
                    {"method": "notifications/message", "params": {"level": level, "data": level}}
                )
        if arguments.get("hang"):
            if ctx.notify is not None:
                await ctx.notify(
                    {
                        "method": "notifications/progress",
                        "params": {"progressToken": token, "progress": 0},
                    }
                )
            try:
                await asyncio.sleep(30)
            except asyncio.CancelledError:
                self.cancelled.set()
                raise
        text = f"{self.label}:{tool['name']}:{json.dumps(arguments, sort_keys=True)}"
        return {"content": [{"type": "text", "text": text}], "isError": False}


def executor_ctx(view: IntegrationView, **fields: Any) -> RequestContext:
    """A 2025-11-25 `tools/call` context on callUrl for driving an executor directly (no
    dispatch); `fields` replace any of its values."""
    defaults: dict[str, Any] = {
        "key": KeyEntry("key-1", view.tenant_id, view.integration_id, "mcp:invoke"),
        "integration": view,
        "endpoint": Endpoint.CALL,
        "executor": FakeExecutor("unused"),
        "era": Era.LEGACY,
        "protocol_version": "2025-11-25",
        "request": make_mocked_request("POST", "/"),
    }
    return RequestContext(**{**defaults, **fields})


def build_mcp_app(tmp_path: Path, **env: str) -> web.Application:
    """A data-plane app on fakes: the edge middleware, settings, GATEWAY, MCP routes."""
    app = web.Application(middlewares=[edge_middleware])
    app[SETTINGS] = make_settings(
        tmp_path, f"sqlite:///{tmp_path / 'store.db'}", MCPGW_MAX_BODY_BYTES=str(MAX_BODY), **env
    )
    limiter = FakeLimiter()
    app[GATEWAY] = GatewayState(
        resolver=FakeResolver(),
        limiter=limiter,
        sessions=limiter,
        executors={Endpoint.CALL: FakeExecutor("call"), Endpoint.TEST: FakeExecutor("test")},
    )
    setup_mcp_routes(app)
    return app


def state_of(mcp: TestClient) -> GatewayState:
    return mcp.app[GATEWAY]


def limiter_of(mcp: TestClient) -> FakeLimiter:
    return state_of(mcp).limiter  # type: ignore[return-value]


def executor_of(mcp: TestClient, endpoint: Endpoint) -> FakeExecutor:
    return state_of(mcp).executors[endpoint]  # type: ignore[return-value]


# --- request helpers ------------------------------------------------------------------------


def auth(key: str = KEY) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def modern_message(
    method: str, params: dict[str, Any] | None = None, *, id: Any = 1, version: Any = MODERN
) -> dict[str, Any]:
    params = dict(params or {})
    params["_meta"] = {
        "io.modelcontextprotocol/protocolVersion": version,
        "io.modelcontextprotocol/clientCapabilities": {},
        "io.modelcontextprotocol/clientInfo": {"name": "t", "version": "1"},
        **params.get("_meta", {}),
    }
    return {"jsonrpc": "2.0", "id": id, "method": method, "params": params}


def modern_headers(message: dict[str, Any], key: str = KEY) -> dict[str, str]:
    headers = {
        **auth(key),
        "MCP-Protocol-Version": MODERN,
        "Mcp-Method": message["method"],
        "Accept": "application/json, text/event-stream",
    }
    name = message["params"].get("name") if message["method"] == "tools/call" else None
    if isinstance(name, str):
        headers["Mcp-Name"] = name
    return headers


async def send(
    mcp: TestClient,
    body: Any,
    headers: Mapping[str, str],
    url: str = CALL,
    *,
    raw: bytes | None = None,
    content_type: str = "application/json",
) -> tuple[ClientResponse, Any]:
    data = raw if raw is not None else json.dumps(body).encode()
    async with mcp.post(url, data=data, headers={"Content-Type": content_type, **headers}) as resp:
        text = await resp.text()
        parsed = json.loads(text) if text and resp.content_type.endswith("json") else text
        return resp, parsed


async def modern(
    mcp: TestClient,
    method: str,
    params: dict[str, Any] | None = None,
    *,
    url: str = CALL,
    key: str = KEY,
    headers: Mapping[str, str] | None = None,
    drop: tuple[str, ...] = (),
) -> tuple[ClientResponse, Any]:
    message = modern_message(method, params)
    sent = {**modern_headers(message, key), **(headers or {})}
    for name in drop:
        sent.pop(name, None)
    return await send(mcp, message, sent, url)


async def legacy(
    mcp: TestClient,
    method: str,
    params: dict[str, Any] | None = None,
    *,
    session: str | None = None,
    version: str | None = "2025-11-25",
    url: str = CALL,
    key: str = KEY,
    id: Any = 1,
    headers: Mapping[str, str] | None = None,
) -> tuple[ClientResponse, Any]:
    message: dict[str, Any] = {"jsonrpc": "2.0", "method": method}
    if id is not None:
        message["id"] = id
    if params is not None:
        message["params"] = params
    sent = {**auth(key), "Accept": "application/json, text/event-stream", **(headers or {})}
    if version is not None:
        sent["MCP-Protocol-Version"] = version
    if session is not None:
        sent["Mcp-Session-Id"] = session
    return await send(mcp, message, sent, url)


async def open_session(
    mcp: TestClient, version: str = "2025-11-25", *, key: str = KEY, url: str = CALL
) -> str:
    resp, body = await legacy(
        mcp,
        "initialize",
        {
            "protocolVersion": version,
            "capabilities": {},
            "clientInfo": {"name": "t", "version": "1"},
        },
        version=None,
        key=key,
        url=url,
    )
    assert resp.status == 200, body
    return resp.headers["Mcp-Session-Id"]


def sse_messages(text: str) -> list[dict[str, Any]]:
    events = [block for block in text.split("\n\n") if block.strip()]
    messages = []
    for block in events:
        lines = block.split("\n")
        assert lines[0] == "event: message"
        messages.append(json.loads("\n".join(line.removeprefix("data: ") for line in lines[1:])))
    return messages


def error_of(body: Any, code: int) -> dict[str, Any]:
    assert isinstance(body, dict) and "error" in body, body
    assert body["jsonrpc"] == "2.0"
    assert body["error"]["code"] == code, body
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    return body["error"]


async def problem_of(
    resp: ClientResponse, body: Any, status: int, slug: str | None = None
) -> dict[str, Any]:
    assert resp.status == status, body
    assert resp.content_type == "application/problem+json"
    assert body["status"] == status and body["instance"] == resp.url.path
    assert body["detail"] and body["requestId"] == resp.headers["X-Request-Id"]
    if slug is not None:
        assert body["type"].endswith("/" + slug), body["type"]
    return body


def assert_rate_headers(resp: ClientResponse, remaining: int = 7, reset: int = 1) -> None:
    assert resp.headers["RateLimit-Limit"] == "10"
    assert resp.headers["RateLimit-Remaining"] == str(remaining)
    assert resp.headers["RateLimit-Reset"] == str(reset)


def b64_sentinel(value: str) -> str:
    return f"=?base64?{base64.b64encode(value.encode()).decode()}?="


def rate_limited_data(status: int, headers: Mapping[str, str], body: Any) -> dict[str, Any]:
    """The wait named by the answer to a rate-limited JSON-RPC request, after checking its form:
    HTTP 200 in both eras, a `tools/call` an `isError` result, anything else -32029;
    `Retry-After` on both."""
    retry_after = int(headers["Retry-After"])
    assert retry_after >= 1
    assert status == 200, (status, body)
    result = body.get("result")
    if result is not None:
        assert result["isError"] is True, body
        assert "Rate limit exceeded" in result["content"][0]["text"]
        data: dict[str, Any] = result["_meta"][RATE_LIMIT_META]
        assert data["code"] == RATE_LIMITED
    else:
        data = error_of(body, RATE_LIMITED)["data"]
    assert data["retryAfterSeconds"] == retry_after
    assert 1 <= data["retryAfterMs"] <= retry_after * 1000
    return data
