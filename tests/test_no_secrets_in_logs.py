"""Secrets (API keys, JWTs, upstream header values) never reach logs or later responses."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from typing import Any

import jwt
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from conftest import JWT_SECRET
from log_texts import log_texts
from mcp_stub import StubUpstream, make_tools

UPSTREAM_AUTH = "Bearer upstream-secret-XYZ"
UPSTREAM_KEY = "second-upstream-value-77"
HEADERS = {"Authorization": UPSTREAM_AUTH, "X-Upstream-Key": UPSTREAM_KEY}
BASE = "/v1/tenants/acme/integrations"


def bad_jwts() -> list[str]:
    now = int(time.time())
    claims = {"sub": "mallory", "tenants": ["acme"], "iat": now, "exp": now + 600}
    return [
        jwt.encode({**claims, "exp": now - 3600}, JWT_SECRET, "HS256"),
        jwt.encode(claims, "not-the-secret-" + "z" * 40, "HS256"),
        jwt.encode(claims, JWT_SECRET, "HS256")[:-6] + "AAAAAA",
        "eyJhbGciOiJub25lIn0.eyJ0ZW5hbnRzIjpbImFjbWUiXX0.",
    ]


def echo_upstream(kind: str) -> web.Application:
    """An upstream that puts the request's secret headers into what it answers."""

    async def handle(request: web.Request) -> web.Response:
        echoed = f"{request.headers.get('Authorization')} {request.headers.get('X-Upstream-Key')}"
        message = await request.json()
        if kind == "http-500":
            return web.Response(status=500, text=f"denied for {echoed}")
        if kind == "rpc-error" or message.get("method") == "initialize":
            if kind == "rpc-error":
                return web.json_response(
                    {
                        "jsonrpc": "2.0",
                        "id": message.get("id"),
                        "error": {"code": -32001, "message": echoed},
                    }
                )
            return web.json_response(
                {
                    "jsonrpc": "2.0",
                    "id": message["id"],
                    "result": {
                        "protocolVersion": "2025-06-18",
                        "capabilities": {"tools": {}},
                        "serverInfo": {"name": "echo", "version": "1"},
                    },
                }
            )
        if "id" not in message:
            return web.Response(status=202)
        # kind == "bad-schema": a tool whose schema embeds the header values
        tools = [
            {"name": "leaky", "inputSchema": {"type": "object", "properties": echoed}},
            {"name": echoed.replace(" ", "_")[:100] + "!"},
        ]
        if kind == "bad-type":
            tools = [{"name": "leaky", "inputSchema": {"type": echoed}}]
        return web.json_response(
            {"jsonrpc": "2.0", "id": message["id"], "result": {"tools": tools}}
        )

    app = web.Application()
    app.router.add_post("/mcp", handle)
    return app


class Recorder:
    """Calls the API and keeps every response body it saw."""

    def __init__(self, client: TestClient, token: str) -> None:
        self.client = client
        self.headers = {"Authorization": f"Bearer {token}"}
        self.bodies: list[tuple[str, str]] = []

    async def call(
        self,
        method: str,
        path: str,
        expect: int,
        *,
        headers: dict[str, str] | None = None,
        **kwargs: Any,
    ) -> Any:
        async with self.client.request(
            method, path, headers=headers or self.headers, **kwargs
        ) as resp:
            text = await resp.text()
            assert resp.status == expect, (method, path, resp.status, text)
        self.bodies.append((f"{method} {path}", text))
        return json.loads(text) if text else None


async def test_secrets_never_reach_logs_or_later_responses(
    client: TestClient,
    token: Callable[..., str],
    aiohttp_server: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="aiohttp.access")
    good_jwt = token("acme", subject="alice")
    api = Recorder(client, good_jwt)
    stub = StubUpstream(tools=make_tools(3), page_size=2, require_headers=HEADERS)
    stub_url = str((await aiohttp_server(stub.app())).make_url("/mcp"))

    await api.call("PUT", BASE + "/crm", 201, json={"name": "CRM"})
    config = await api.call(
        "POST",
        BASE + "/crm/configs",
        201,
        json={"upstreamUrl": stub_url, "upstreamHeaders": HEADERS},
    )
    assert stub.calls["tools/list"] == 2
    await api.call("POST", BASE + f"/crm/configs/{config['configId']}:syncTools", 200)

    # Upstreams that echo the secret headers back, in every way a catalog read can fail.
    for kind in ("http-500", "rpc-error", "bad-schema", "bad-type"):
        url = str((await aiohttp_server(echo_upstream(kind))).make_url("/mcp"))
        await api.call(
            "POST",
            BASE + "/crm/configs",
            502,
            json={"upstreamUrl": url, "upstreamHeaders": HEADERS},
        )
    # A header value that fails validation is not echoed either.
    await api.call(
        "POST",
        BASE + "/crm/configs",
        422,
        json={"upstreamUrl": stub_url, "upstreamHeaders": {"X-Bad": UPSTREAM_KEY + "\r\nX: y"}},
    )
    # Wrong headers: the stub answers 401, we answer 502.
    await api.call(
        "POST",
        BASE + "/crm/configs",
        502,
        json={
            "upstreamUrl": stub_url,
            "upstreamHeaders": {"Authorization": UPSTREAM_AUTH + "-wrong"},
        },
    )

    enabled = await api.call(
        "PATCH",
        BASE + "/crm/mcp",
        200,
        json={"enabled": True, "configId": config["configId"], "exposedToolIds": ["tool_0"]},
    )
    first_key = enabled["apiKey"]
    minted_at = len(api.bodies)
    rotated = await api.call("POST", BASE + "/crm/mcp:rotateKey", 200)
    second_key = rotated["apiKey"]
    assert first_key and second_key and first_key != second_key
    rotated_at = len(api.bodies)

    bad = bad_jwts()
    for bad_token in bad:
        await api.call("GET", BASE, 401, headers={"Authorization": f"Bearer {bad_token}"})
        await api.call(
            "PATCH",
            BASE + "/crm/mcp",
            401,
            json={"enabled": False},
            headers={"Authorization": f"Bearer {bad_token}"},
        )
    await api.call("GET", BASE, 403, headers={"Authorization": f"Bearer {token('other')}"})
    # A key is not a settings-API credential.
    await api.call("GET", BASE, 401, headers={"Authorization": f"Bearer {second_key}"})
    await api.call("GET", BASE + "/crm", 200, headers={"X-API-Key": second_key, **api.headers})

    reads = [
        ("GET", BASE + "/crm/mcp"),
        ("GET", BASE + "/crm/configs"),
        ("GET", BASE + f"/crm/configs/{config['configId']}"),
        ("GET", BASE),
        ("GET", "/v1/tenants/acme/audit"),
        ("GET", "/openapi.json"),
    ]
    for method, path in reads:
        await api.call(method, path, 200)

    upstream_secrets = [UPSTREAM_AUTH, "upstream-secret-XYZ", UPSTREAM_KEY]
    jwts = [good_jwt, good_jwt.split(".")[2], *bad, token("other")]

    # Responses: header values never; keys only in the one response that minted each.
    for label, text in api.bodies:
        for secret in upstream_secrets + jwts:
            assert secret not in text, (label, secret)
    for index, (label, text) in enumerate(api.bodies):
        if index != minted_at - 1:
            assert first_key not in text, label
        if index != rotated_at - 1:
            assert second_key not in text, label
    assert first_key in api.bodies[minted_at - 1][1]
    assert second_key in api.bodies[rotated_at - 1][1]

    # Logs: nothing at all, even at DEBUG and including the access log.
    records = caplog.records
    assert any(r.name == "aiohttp.access" for r in records), "access log was not captured"
    everything = [*log_texts(records), caplog.text]
    for secret in [*upstream_secrets, first_key, second_key, *jwts]:
        for text in everything:
            assert secret not in text, secret
