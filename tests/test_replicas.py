"""Two gateway processes on one Postgres and one Redis: what crosses replicas.

Rotation, disabling and legacy sessions reach every replica; the rate limit is one bucket;
callUrl reaches the upstream and testUrl never does. Everything runs on 127.0.0.1, bounded.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import aiohttp
import pytest
from conftest import JWT_SECRET, REDIS_URL
from faults import Client
from mcp_helpers import rate_limited_data
from mcp_stub import StubUpstream
from oauth_flow import approve, pkce_pair
from polling import until
from processes import GatewayProcess

pytestmark = pytest.mark.slow

SESSION_SECRET = "replica-session-secret-" + "s" * 20
TOOLS = [
    {
        "name": "search_contacts",
        "inputSchema": {"type": "object", "properties": {"query": {"type": "string"}}},
    },
    {"name": "create_contact", "inputSchema": {"type": "object"}},
]


def start_replicas(tmp_path: Path, database_url: str, **env: str) -> list[GatewayProcess]:
    replicas = []
    for name in ("a", "b"):
        replicas.append(
            GatewayProcess(
                tmp_path,
                name,
                {
                    "MCPGW_DATABASE_URL": database_url,
                    "MCPGW_REDIS_URL": REDIS_URL,
                    "MCPGW_DATA_DIR": str(tmp_path / f"data-{name}"),
                    "MCPGW_JWT_SECRET": JWT_SECRET,
                    "MCPGW_SESSION_SECRET": SESSION_SECRET,
                    "MCPGW_SECRET_KEY": "replica-secret-key-" + "k" * 20,
                    "MCPGW_PUBLIC_URL": "http://gateway.test",
                    **env,
                },
            )
        )
    for replica in replicas:
        replica.wait_ready()
    return replicas


async def enable(replica: Client, upstream_url: str | None = None) -> str:
    """Create, bind, expose and enable the integration; return its first key."""
    await replica.settings("PUT", json={"name": "CRM"})
    body: dict[str, Any] = {"upstreamUrl": upstream_url} if upstream_url else {"tools": TOOLS}
    config = await replica.settings("POST", "/configs", json=body)
    settings = await replica.settings(
        "PATCH",
        "/mcp",
        json={
            "enabled": True,
            "configId": config["configId"],
            "exposedToolIds": ["search_contacts", "create_contact"],
        },
    )
    return settings["apiKey"]


async def test_rotation_revokes_old_key_on_every_replica(tmp_path, fresh_pg_url, http) -> None:
    procs = start_replicas(tmp_path, fresh_pg_url)
    try:
        a, b = (Client(http, p) for p in procs)
        old_key = await enable(a)
        session_b = await b.initialize(old_key)  # warms replica b's cache with the old key
        assert (await b.list_tools(old_key, session_b))[0] == 200

        rotated = await a.settings("POST", "/mcp:rotateKey")
        new_key = rotated["apiKey"]

        async def old_key_refused_on_b() -> bool:
            status, _, _ = await b.list_tools(old_key, session_b)
            return status == 401

        took = await until(old_key_refused_on_b, timeout_s=1.0)
        assert took < 1.0
        session = await b.initialize(new_key)
        status, _, body = await b.list_tools(new_key, session)
        assert status == 200 and len(body["result"]["tools"]) == 2
    finally:
        for proc in procs:
            proc.stop()


async def test_disabling_reaches_every_replica(tmp_path, fresh_pg_url, http) -> None:
    procs = start_replicas(tmp_path, fresh_pg_url)
    try:
        a, b = (Client(http, p) for p in procs)
        key = await enable(a)
        session = await b.initialize(key)
        assert (await b.list_tools(key, session))[0] == 200
        await a.settings("PATCH", "/mcp", json={"enabled": False})

        async def disabled_on_b() -> bool:
            status, _, body = await b.list_tools(key, session)
            return status == 403 and body["type"].endswith("/mcp-disabled")

        await until(disabled_on_b, timeout_s=1.0)
    finally:
        for proc in procs:
            proc.stop()


async def test_legacy_session_works_on_any_replica_and_ends_everywhere(
    tmp_path, fresh_pg_url, http
) -> None:
    procs = start_replicas(tmp_path, fresh_pg_url)
    try:
        a, b = (Client(http, p) for p in procs)
        key = await enable(a)
        session = await a.initialize(key)
        assert (await b.list_tools(key, session))[0] == 200, "b accepts a's session"
        status, _, _ = await a.mcp(key, None, session=session, method="DELETE")
        assert status == 204
        assert (await b.list_tools(key, session))[0] == 404
        assert (await a.list_tools(key, session))[0] == 404
    finally:
        for proc in procs:
            proc.stop()


async def test_rate_limit_is_one_bucket_across_replicas(tmp_path, fresh_pg_url, http) -> None:
    procs = start_replicas(
        tmp_path, fresh_pg_url, MCPGW_REQUEST_LIMIT_BURST="12", MCPGW_REQUEST_LIMIT_RPS="0.01"
    )
    try:
        a, b = (Client(http, p) for p in procs)
        key = await enable(a)
        session = await a.initialize(key)  # 2 requests (initialize + initialized) on a
        statuses = []
        for replica in (a, b, a, b, a, b, a, b, a, b):  # 10 more: 12 in all
            statuses.append((await replica.list_tools(key, session))[0])
        assert statuses == [200] * 10
        for replica in (a, b):
            status, headers, body = await replica.list_tools(key, session)
            rate_limited_data(status, headers, body)
    finally:
        for proc in procs:
            proc.stop()


async def test_call_url_proxies_and_test_url_never_reaches_upstream(
    tmp_path, fresh_pg_url, http, aiohttp_server
) -> None:
    stub = StubUpstream(tools=TOOLS)
    upstream = await aiohttp_server(stub.app())
    procs = start_replicas(tmp_path, fresh_pg_url)
    try:
        a, b = (Client(http, p) for p in procs)
        key = await enable(a, str(upstream.make_url("/mcp")))
        call = {
            "jsonrpc": "2.0",
            "id": 3,
            "method": "tools/call",
            "params": {"name": "search_contacts", "arguments": {"query": "ada"}},
        }
        before = stub.calls["tools/call"]
        session = await b.initialize(key, url="test")
        status, _, body = await b.mcp(key, call, url="test", session=session)
        assert status == 200 and "result" in body
        assert stub.calls["tools/call"] == before, "testUrl must never reach the upstream"
        session = await b.initialize(key, url="call")
        status, _, body = await b.mcp(key, call, url="call", session=session)
        assert status == 200 and body["result"]["isError"] is False, body
        assert stub.calls["tools/call"] == before + 1
    finally:
        for proc in procs:
            proc.stop()


async def test_fixture_change_reaches_every_replica(tmp_path, fresh_pg_url, http) -> None:
    procs = start_replicas(tmp_path, fresh_pg_url)
    try:
        a, b = (Client(http, p) for p in procs)
        key = await enable(a)
        call = {
            "jsonrpc": "2.0",
            "id": 5,
            "method": "tools/call",
            "params": {"name": "search_contacts", "arguments": {"query": "ada"}},
        }
        session = await b.initialize(key, url="test")
        _, _, generated = await b.mcp(key, call, url="test", session=session)
        await a.settings(
            "PUT",
            "/mcp/simulator/fixtures/search_contacts",
            json={
                "rules": [
                    {
                        "match": {"query": "ada"},
                        "result": {"content": [{"type": "text", "text": "scripted on a"}]},
                    }
                ]
            },
        )

        async def scripted_on_b() -> bool:
            _, _, body = await b.mcp(key, call, url="test", session=session)
            return body["result"]["content"][0]["text"] == "scripted on a"

        await until(scripted_on_b, timeout_s=1.0)
        assert generated["result"]["content"][0]["text"] != "scripted on a"
    finally:
        for proc in procs:
            proc.stop()


async def test_oauth_steps_complete_on_any_replica(tmp_path, fresh_pg_url, http) -> None:
    """Registered on b, page shown by a and approved on b, code exchanged on a, refreshed on
    b: the authorization server's state is the store's, its CSRF key the shared secret."""
    procs = start_replicas(tmp_path, fresh_pg_url)
    resource = "http://gateway.test/v1/tenants/acme/integrations/crm/mcp:call"
    try:
        a, b = procs
        key = await enable(Client(http, a))
        redirect = "http://127.0.0.1:33418/callback"
        async with http.post(
            b.url + "/oauth/register", json={"client_name": "r", "redirect_uris": [redirect]}
        ) as resp:
            client_id = (await resp.json())["client_id"]
        verifier, challenge = pkce_pair()
        query = urlencode(
            {
                "response_type": "code",
                "client_id": client_id,
                "redirect_uri": redirect,
                "code_challenge": challenge,
                "code_challenge_method": "S256",
                "state": "s",
                "resource": resource,
            }
        )
        # Cookies of 127.0.0.1 go to both replicas (any port): the browser is the same.
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as browser:
            answer = await approve(
                browser, f"{a.url}/oauth/authorize?{query}", key, post_to=b.url + "/oauth/authorize"
            )
        assert answer["iss"] == "http://gateway.test/"
        form = {
            "grant_type": "authorization_code",
            "client_id": client_id,
            "code": answer["code"],
            "code_verifier": verifier,
            "redirect_uri": redirect,
        }
        async with http.post(a.url + "/oauth/token", data=form) as resp:
            assert resp.status == 200, await resp.text()
            tokens = await resp.json()
        refresh = {
            "grant_type": "refresh_token",
            "client_id": client_id,
            "refresh_token": tokens["refresh_token"],
        }
        async with http.post(b.url + "/oauth/token", data=refresh) as resp:
            assert resp.status == 200, await resp.text()
        async with http.post(a.url + "/oauth/token", data=refresh) as resp:
            assert resp.status == 400  # spent on b
    finally:
        for proc in procs:
            proc.stop()
