"""Credentials in an upstreamUrl (a password, query values) stay secret (issue #18): shown and
audited redacted, encrypted at rest with the header values, never logged, and still sent to
the upstream; and the SQLite database files are private. The database-backed tests run on
SQLite and on Postgres."""

from __future__ import annotations

import asyncio
import base64
import logging
import sqlite3
import stat
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from conftest import JWT_SECRET, Api, make_settings
from log_texts import log_texts
from mcp_helpers import modern_headers, modern_message
from mcp_stub import StubUpstream, make_tools

from gateway.server import build_app
from mcp_core.redaction import redact, secret_values
from settings_api.jwt_auth import issue_token
from settings_api.secrets_box import SecretBox, reseal_url, seal_url, worst
from settings_api.store import create_store

PASSWORD = "pass-8d2f71"
API_KEY = "SECRET-4c1e9a"
SECRETS = (PASSWORD, API_KEY)
BASIC = "Basic " + base64.b64encode(f"alice:{PASSWORD}".encode()).decode()
OLD_KEY = "old-secret-key-" + "o" * 40
NEW_KEY = "new-secret-key-" + "n" * 40
OTHER_KEY = "unrelated-secret-key-" + "u" * 40
TOOLS = [{"name": "tool_0", "inputSchema": {"type": "object"}}]


# --- the redacted form ------------------------------------------------------------------------
def test_the_shown_url_keeps_the_user_name_and_hides_the_password_and_every_query_value() -> None:
    cases = {
        "https://user:pass@host/mcp?api_key=SECRET&x=1": "https://user:***@host/mcp?api_key=***&x=***",
        "http://user@host:8080/mcp": "http://user@host:8080/mcp",
        "http://user:@host/": "http://user:***@host/",
        "http://a:b@c@host/p?q": "http://a:***@host/p?***",  # userinfo ends at the last @
        "http://host/p?k=v=w&&flag#frag": "http://host/p?k=***&&***#***",
        "http://host/a:b@c/": "http://host/a:b@c/",  # an @ in the path is not userinfo
        "https://[::1]:9/mcp?": "https://[::1]:9/mcp?",
        "https://up.example/mcp": "https://up.example/mcp",  # nothing to hide: unchanged
    }
    for url, shown in cases.items():
        assert redact(url) == shown, url
    assert secret_values("http://u:p%40ss@h/?k=a+b%21&t") == [
        "p%40ss",
        "p@ss",
        "a+b%21",
        "t",
        "a b!",
    ]


# --- the live app on both backends ------------------------------------------------------------
async def raw_config_row(database_url: str, config_id: str) -> str:
    """Every column of the config's row as the database holds it (raw SQL, no store code)."""
    if database_url.startswith("sqlite:///"):

        def read() -> str:
            with sqlite3.connect(database_url.removeprefix("sqlite:///")) as conn:
                row = conn.execute("SELECT * FROM configs WHERE config_id = ?", (config_id,))
                return repr(row.fetchone())

        return await asyncio.to_thread(read)
    conn = await asyncpg.connect(database_url)
    try:
        return repr(
            dict(await conn.fetchrow("SELECT * FROM configs WHERE config_id = $1", config_id))
        )
    finally:
        await conn.close()


async def write_legacy_url(database_url: str, config_id: str, url: str) -> None:
    """Make the row what the schema held before: the full URL in clear, nothing sealed."""
    if database_url.startswith("sqlite:///"):

        def write() -> None:
            with sqlite3.connect(database_url.removeprefix("sqlite:///")) as conn:
                conn.execute(
                    "UPDATE configs SET upstream_url = ?, upstream_url_sealed = NULL "
                    "WHERE config_id = ?",
                    (url, config_id),
                )

        await asyncio.to_thread(write)
        return
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute(
            "UPDATE configs SET upstream_url = $1, upstream_url_sealed = NULL WHERE config_id = $2",
            url,
            config_id,
        )
    finally:
        await conn.close()


class Upstream:
    """A stub MCP server that answers only with the URL's Basic credentials, and records the
    query string of every request."""

    def __init__(self) -> None:
        self.stub = StubUpstream(tools=make_tools(1), require_headers={"Authorization": BASIC})
        self.queries: list[str] = []
        self.url = ""

    def app(self) -> web.Application:
        @web.middleware
        async def record(request: web.Request, handler: Any) -> web.StreamResponse:
            self.queries.append(request.query_string)
            return await handler(request)

        app = self.stub.app()
        app.middlewares.append(record)
        return app


@pytest.fixture
async def upstream(aiohttp_server: Any) -> Upstream:
    up = Upstream()
    # No access log: the upstream's own log of its request lines is not the gateway's.
    server = await aiohttp_server(up.app(), access_log=None)
    up.url = f"http://alice:{PASSWORD}@127.0.0.1:{server.port}/mcp?api_key={API_KEY}&x=1"
    return up


def shown(upstream: Upstream) -> str:
    port = upstream.url.split("@127.0.0.1:")[1].split("/")[0]
    return f"http://alice:***@127.0.0.1:{port}/mcp?api_key=***&x=***"


class Gateway:
    """One app (both planes) with a given MCPGW_SECRET_KEY, and a few calls on it."""

    def __init__(self, client: TestClient) -> None:
        self.client = client
        self.api = Api(client, {"Authorization": f"Bearer {issue_token(JWT_SECRET, 'acme')}"})

    async def setup(self, url: str, **config: Any) -> tuple[dict[str, Any], str]:
        """An enabled integration "crm" bound to a config with `url`: (the config, API key)."""
        await self.api.call("PUT", "/crm", 201, json={"name": "CRM"})
        _, created = await self.api.call(
            "POST", "/crm/configs", 201, json={"upstreamUrl": url, **config}
        )
        _, mcp = await self.api.call(
            "PATCH",
            "/crm/mcp",
            200,
            json={"enabled": True, "configId": created["configId"], "exposedToolIds": ["tool_0"]},
        )
        return created, mcp["apiKey"]

    async def call_tool(self, key: str) -> dict[str, Any]:
        message = modern_message("tools/call", {"name": "tool_0", "arguments": {"q": "x"}}, id=7)
        headers = modern_headers(message, key)
        url = "/v1/tenants/acme/integrations/crm/mcp:call"
        async with self.client.post(url, json=message, headers=headers) as resp:
            assert resp.status == 200
            body: dict[str, Any] = await resp.json()
            return body


GatewayFactory = Callable[[str], Awaitable[Gateway]]


@pytest.fixture
def gateway(aiohttp_client: Any, tmp_path: Path, database_url: str) -> GatewayFactory:
    """`await gateway(key)` → a live app on the parametrized database with that secret key."""

    async def make(secret_key: str) -> Gateway:
        settings = make_settings(
            tmp_path,
            database_url,
            MCPGW_SECRET_KEY=secret_key,
            MCPGW_UPSTREAM_ALLOWED_NETWORKS="127.0.0.0/8,::1/128",
        )
        return Gateway(await aiohttp_client(build_app(settings)))

    return make


async def test_url_credentials_are_shown_redacted_stored_encrypted_and_still_sent_upstream(
    gateway: GatewayFactory,
    database_url: str,
    upstream: Upstream,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="aiohttp.access")
    gw = await gateway(NEW_KEY)
    config, key = await gw.setup(upstream.url, tools=TOOLS)
    config_id = config["configId"]
    responses = [config]

    # Every place the API shows the URL shows it redacted.
    assert config["upstreamUrl"] == shown(upstream)
    _, got = await gw.api.call("GET", f"/crm/configs/{config_id}", 200)
    _, listed = await gw.api.call("GET", "/crm/configs", 200)
    async with gw.client.get("/v1/tenants/acme/audit", headers=gw.api.headers) as resp:
        audit = await resp.json()
    responses += [got, listed, audit]
    assert got["upstreamUrl"] == shown(upstream)
    assert [c["upstreamUrl"] for c in listed["items"]] == [shown(upstream)]
    created = [e for e in audit["items"] if e["action"] == "config.created"]
    assert [e["details"]["upstreamUrl"] for e in created] == [shown(upstream)]

    # The database holds neither the password nor the query value in clear.
    row = await raw_config_row(database_url, config_id)
    assert shown(upstream) in row
    for secret in SECRETS:
        assert secret not in row

    # callUrl reaches the upstream with the full URL: its Basic credentials and its query.
    body = await gw.call_tool(key)
    assert "result" in body, body
    assert upstream.stub.calls["tools/call"] == 1
    assert upstream.queries and set(upstream.queries) == {f"api_key={API_KEY}&x=1"}
    # A catalog read (a sync) too: the stub answers 401 to anything else.
    _, synced = await gw.api.call("POST", f"/crm/configs/{config_id}:syncTools", 200)
    responses.append(synced)
    assert synced["upstreamUrl"] == shown(upstream)

    everything = [repr(r) for r in responses] + log_texts(caplog.records) + [caplog.text]
    for secret in SECRETS:
        for text in everything:
            assert secret not in text, secret


async def test_an_upstream_echoing_its_url_credentials_has_them_scrubbed(
    gateway: GatewayFactory, upstream: Upstream, aiohttp_server: Any
) -> None:
    gw = await gateway(NEW_KEY)
    _, key = await gw.setup(upstream.url, tools=TOOLS)
    upstream.stub.mode = "jsonrpc-error"
    upstream.stub.fail_on = {"tools/call"}
    upstream.stub.error_message = f"bad key api_key={API_KEY} for alice:{PASSWORD}"
    body = await gw.call_tool(key)
    assert body["error"]["message"] == "bad key api_key=[redacted] for alice:[redacted]"

    # A catalog read that fails with the echo: the problem detail does not carry it either.
    async def echo(request: web.Request) -> web.Response:
        message = await request.json()
        error = {"code": -32001, "message": f"denied for {request.query_string}"}
        return web.json_response({"jsonrpc": "2.0", "id": message.get("id"), "error": error})

    app = web.Application()
    app.router.add_post("/mcp", echo)
    server = await aiohttp_server(app, access_log=None)
    url = f"http://alice:{PASSWORD}@127.0.0.1:{server.port}/mcp?api_key={API_KEY}"
    async with gw.client.post(
        f"{gw.api.base}/crm/configs", json={"upstreamUrl": url}, headers=gw.api.headers
    ) as resp:
        text = await resp.text()
        assert resp.status == 502, text
    for secret in SECRETS:
        assert secret not in text


@pytest.mark.parametrize(
    "url",
    [
        f"http://alice:{PASSWORD}@[::1/mcp?api_key={API_KEY}",
        f"http://alice:{PASSWORD}@127.0.0.1:99999/mcp?api_key={API_KEY}",
        f"http://alice:{PASSWORD}@/mcp?api_key={API_KEY}",
    ],
    ids=["unclosed-ipv6", "port-out-of-range", "no-host"],
)
async def test_a_url_the_gateway_cannot_connect_to_is_refused_without_echoing_it(
    gateway: GatewayFactory, url: str
) -> None:
    gw = await gateway(NEW_KEY)
    await gw.api.call("PUT", "/crm", 201, json={"name": "CRM"})
    for body in ({"upstreamUrl": url, "tools": TOOLS}, {"upstreamUrl": url}):
        _, problem = await gw.api.call("POST", "/crm/configs", 422, json=body)
        assert [e["field"] for e in problem["errors"]] == ["upstreamUrl"]
        for secret in SECRETS:
            assert secret not in repr(problem)


async def test_urls_stored_in_clear_before_keep_working_and_rotate_secrets_encrypts_them(
    gateway: GatewayFactory, database_url: str, upstream: Upstream
) -> None:
    gw = await gateway(NEW_KEY)
    config, key = await gw.setup(upstream.url, tools=TOOLS)
    config_id = config["configId"]
    await write_legacy_url(database_url, config_id, upstream.url)

    fresh = await gateway(NEW_KEY)  # a replica that has not cached the config yet
    assert "result" in await fresh.call_tool(key)
    assert upstream.queries[-1] == f"api_key={API_KEY}&x=1"
    _, got = await fresh.api.call("GET", f"/crm/configs/{config_id}", 200)
    assert got["upstreamUrl"] == shown(upstream)

    store = create_store(database_url, secrets=SecretBox([NEW_KEY]))
    await store.open()
    try:
        report = await store.rotate_secrets()
        again = await store.rotate_secrets()
    finally:
        await store.close()
    assert (report.encrypted, report.rotated, report.current) == (1, 0, 0)
    assert (again.encrypted, again.current) == (0, 1)
    row = await raw_config_row(database_url, config_id)
    for secret in SECRETS:
        assert secret not in row
    assert "result" in await (await gateway(NEW_KEY)).call_tool(key)


async def raw_audit_details(database_url: str) -> str:
    """Every audit event's details as the database holds them."""
    if database_url.startswith("sqlite:///"):

        def read() -> str:
            with sqlite3.connect(database_url.removeprefix("sqlite:///")) as conn:
                return repr(conn.execute("SELECT details FROM audit_events").fetchall())

        return await asyncio.to_thread(read)
    conn = await asyncpg.connect(database_url)
    try:
        return repr(await conn.fetch("SELECT details FROM audit_events"))
    finally:
        await conn.close()


async def test_audit_events_recorded_before_show_the_url_redacted_and_rotation_redacts_them(
    gateway: GatewayFactory, database_url: str, upstream: Upstream
) -> None:
    gw = await gateway(NEW_KEY)
    store = create_store(database_url, secrets=SecretBox([NEW_KEY]))
    await store.open()
    try:
        async with store.transaction() as tx:
            for seq in range(3):  # more than a batch
                details = {"upstreamUrl": upstream.url, "toolCount": 1}
                await tx.insert_audit(
                    f"e-{seq}", "acme", "alice", "config.created", "crm/c1", seq, details
                )
        async with gw.client.get("/v1/tenants/acme/audit", headers=gw.api.headers) as resp:
            audit = await resp.json()
        assert [e["details"]["upstreamUrl"] for e in audit["items"]] == [shown(upstream)] * 3
        assert API_KEY in await raw_audit_details(database_url)

        report = await store.rotate_secrets(batch_size=2)
        again = await store.rotate_secrets(batch_size=2)
    finally:
        await store.close()
    assert (report.audit_redacted, again.audit_redacted) == (3, 0)
    stored = await raw_audit_details(database_url)
    assert shown(upstream) in stored and '"toolCount":1' in stored
    for secret in SECRETS:
        assert secret not in stored


async def test_url_credentials_follow_the_secret_key_rotation(
    gateway: GatewayFactory, database_url: str, upstream: Upstream
) -> None:
    config, key = await (await gateway(OLD_KEY)).setup(upstream.url, tools=TOOLS)
    config_id = config["configId"]

    # A key that does not fit: the API still shows the redacted URL, callUrl says why it
    # cannot call, and the upstream is never called with a redacted URL.
    wrong = await gateway(OTHER_KEY)
    _, got = await wrong.api.call("GET", f"/crm/configs/{config_id}", 200)
    assert got["upstreamUrl"] == shown(upstream)
    body = await wrong.call_tool(key)
    assert body["error"]["data"] == {"upstream": "secrets-unreadable"}
    assert "cannot be decrypted with MCPGW_SECRET_KEY" in body["error"]["message"]
    assert upstream.stub.calls["tools/call"] == 0
    await wrong.api.call("POST", f"/crm/configs/{config_id}:syncTools", 500)
    assert upstream.stub.calls["initialize"] == 0

    store = create_store(database_url, secrets=SecretBox([NEW_KEY, OLD_KEY]))
    await store.open()
    try:
        report = await store.rotate_secrets()
    finally:
        await store.close()
    assert (report.rotated, report.encrypted, report.unreadable) == (1, 0, [])
    assert "result" in await (await gateway(NEW_KEY)).call_tool(key)  # the old key can go


# --- SQLite files -----------------------------------------------------------------------------
async def test_sqlite_database_files_are_private(tmp_path: Path) -> None:
    path = tmp_path / "data" / "store.db"
    store = create_store(f"sqlite:///{path}", secrets=SecretBox([NEW_KEY]))
    await store.open()
    try:
        await store.migrate()
        async with store.transaction() as tx:
            await tx.insert_integration("acme", "crm", "CRM", 1)
        files = [path, Path(f"{path}-wal"), Path(f"{path}-shm")]
        for file in files:
            assert stat.S_IMODE(file.stat().st_mode) == 0o600, file
    finally:
        await store.close()

    # A database an older version left readable by others is tightened when opened.
    for file in files:
        if file.exists():
            file.chmod(0o644)
    again = create_store(f"sqlite:///{path}")
    await again.open()
    try:
        for file in files:
            if file.exists():
                assert stat.S_IMODE(file.stat().st_mode) == 0o600, file
    finally:
        await again.close()


def test_a_url_no_key_opens_is_reported_unreadable_by_rotation() -> None:
    shown_url, sealed = seal_url("http://u:p4ss@h/mcp?k=v", SecretBox([OLD_KEY]))
    assert shown_url == "http://u:***@h/mcp?k=***" and sealed is not None
    assert reseal_url(shown_url, sealed, SecretBox([OTHER_KEY])) == (None, "unreadable")
    assert reseal_url("http://h/mcp", None, SecretBox([NEW_KEY])) == (None, "current")
    # A config counts as its worst part: an unreadable URL is not hidden by current headers.
    assert worst("current", "unreadable") == "unreadable"
    assert worst("rotated", "encrypted") == "encrypted"
