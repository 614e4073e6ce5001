"""Upstream header values are encrypted at rest (settings_api/secrets_box.py): what the store
holds, reading it back, keys that do not fit, old plaintext rows, and key rotation with
`mcp-gateway rotate-secrets`. The database-backed tests run on SQLite and on Postgres."""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestClient
from conftest import JWT_SECRET, Api, make_settings
from mcp_helpers import modern_headers, modern_message
from mcp_stub import StubUpstream, make_tools

from gateway.server import build_app
from settings_api.config import ConfigError, load_settings
from settings_api.jwt_auth import issue_token
from settings_api.secrets_box import (
    MIN_KEY_CHARS,
    SecretBox,
    SecretKeyError,
    open_headers,
    parse_keys,
    reseal_headers,
    seal_headers,
)
from settings_api.store import Config, create_store

CLI = str(Path(sys.executable).with_name("mcp-gateway"))
OLD_KEY = "old-secret-key-" + "o" * 40
NEW_KEY = "new-secret-key-" + "n" * 40
OTHER_KEY = "unrelated-secret-key-" + "u" * 40
UPSTREAM_SECRET = "Bearer upstream-token-7f3a9c51e2"
TEAM_SECRET = "team-value-c0ffee-4242"
HEADERS = {"Authorization": UPSTREAM_SECRET, "X-Team": TEAM_SECRET}


# --- the box ----------------------------------------------------------------------------------
def test_keys_are_a_comma_separated_list_of_long_secrets() -> None:
    assert parse_keys(f" {NEW_KEY} , {OLD_KEY}") == [NEW_KEY, OLD_KEY]
    for bad, phrase in (
        ("", "no key"),
        (" , ", "no key"),
        (f"{NEW_KEY},,{OLD_KEY}", "empty"),
        (f"{NEW_KEY},short", "key 2 is shorter"),
    ):
        with pytest.raises(SecretKeyError, match=phrase):
            parse_keys(bad)
    assert MIN_KEY_CHARS == 32


def test_a_bad_secret_key_is_a_startup_error_naming_the_variable(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings({"MCPGW_DATA_DIR": str(tmp_path), "MCPGW_SECRET_KEY": "too-short"})
    assert any(p.startswith("MCPGW_SECRET_KEY: key 1 is shorter") for p in caught.value.problems)
    assert "too-short" not in str(caught.value)  # a secret is never echoed
    settings = load_settings(
        {"MCPGW_DATA_DIR": str(tmp_path), "MCPGW_SECRET_KEY": f"{NEW_KEY},{OLD_KEY}"}
    )
    assert SecretBox.from_setting(settings.secret_key).key_count == 2


def test_sealed_headers_keep_names_and_hide_values() -> None:
    box = SecretBox([NEW_KEY])
    stored = seal_headers(HEADERS, box)
    document = json.loads(stored)
    assert document["v"] == 1 and list(document["fernet"]) == ["Authorization", "X-Team"]
    assert UPSTREAM_SECRET not in stored and "upstream-token" not in stored
    assert TEAM_SECRET not in stored
    # Random IVs: the same value never encrypts to the same text twice.
    assert seal_headers(HEADERS, box) != stored
    opened = open_headers(stored, box)
    assert opened.values == HEADERS and opened.error is None and not opened.plaintext
    assert repr(box) == "SecretBox(keys=1)" and NEW_KEY not in repr(opened)


def test_values_are_never_stored_without_a_box() -> None:
    with pytest.raises(RuntimeError, match="unencrypted"):
        seal_headers(HEADERS, None)
    assert seal_headers({}, None) == "{}"


def test_a_wrong_key_reads_names_only_with_a_clear_reason() -> None:
    stored = seal_headers(HEADERS, SecretBox([OLD_KEY]))
    opened = open_headers(stored, SecretBox([OTHER_KEY]))
    assert opened.values == {"Authorization": "", "X-Team": ""}
    assert opened.error is not None and "cannot be decrypted with MCPGW_SECRET_KEY" in opened.error
    assert "none of its 1 key(s)" in opened.error
    no_box = open_headers(stored, None)
    assert no_box.error is not None and "no MCPGW_SECRET_KEY" in no_box.error
    tampered = stored.replace(json.loads(stored)["fernet"]["X-Team"][:20], "gAAAAABlZZZZZZZZZZZZ")
    assert open_headers(tampered, SecretBox([OLD_KEY])).error is not None
    corrupt = open_headers('{"v": 7, "fernet": {}}', SecretBox([OLD_KEY]))
    assert corrupt.error is not None and "unknown envelope version 7" in corrupt.error


def test_plaintext_rows_from_before_are_read_and_resealed() -> None:
    legacy = json.dumps(HEADERS)
    # A header literally named "v" is still a plain object: its value is a string.
    odd = json.dumps({"v": "1", "fernet": "x"})
    box = SecretBox([NEW_KEY])
    opened = open_headers(legacy, box)
    assert opened.values == HEADERS and opened.plaintext and opened.error is None
    assert open_headers(odd, box).values == {"v": "1", "fernet": "x"}
    stored, outcome = reseal_headers(legacy, box)
    assert outcome == "encrypted" and stored is not None and UPSTREAM_SECRET not in stored
    assert open_headers(stored, box).values == HEADERS


def test_reseal_rotates_to_the_first_key_and_leaves_current_rows_alone() -> None:
    old_stored = seal_headers(HEADERS, SecretBox([OLD_KEY]))
    both = SecretBox([NEW_KEY, OLD_KEY])
    assert open_headers(old_stored, both).values == HEADERS  # every key decrypts
    stored, outcome = reseal_headers(old_stored, both)
    assert outcome == "rotated" and stored is not None
    assert open_headers(stored, SecretBox([NEW_KEY])).values == HEADERS  # the old key can go
    assert reseal_headers(stored, both) == (None, "current")
    assert reseal_headers(old_stored, SecretBox([OTHER_KEY])) == (None, "unreadable")
    assert reseal_headers("not json", both) == (None, "unreadable")
    assert reseal_headers(seal_headers({}, both), both) == (None, "current")


# --- the live app on both backends ------------------------------------------------------------
async def raw_headers(database_url: str, config_id: str) -> str:
    """configs.upstream_headers exactly as the database holds it (raw SQL, no store code)."""
    if database_url.startswith("sqlite:///"):

        def read() -> str:
            with sqlite3.connect(database_url.removeprefix("sqlite:///")) as conn:
                row = conn.execute(
                    "SELECT upstream_headers FROM configs WHERE config_id = ?", (config_id,)
                ).fetchone()
            return str(row[0])

        return await asyncio.to_thread(read)
    conn = await asyncpg.connect(database_url)
    try:
        return str(
            await conn.fetchval(
                "SELECT upstream_headers FROM configs WHERE config_id = $1", config_id
            )
        )
    finally:
        await conn.close()


async def write_raw_headers(database_url: str, config_id: str, stored: str) -> None:
    if database_url.startswith("sqlite:///"):

        def write() -> None:
            with sqlite3.connect(database_url.removeprefix("sqlite:///")) as conn:
                conn.execute(
                    "UPDATE configs SET upstream_headers = ? WHERE config_id = ?",
                    (stored, config_id),
                )

        await asyncio.to_thread(write)
        return
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute(
            "UPDATE configs SET upstream_headers = $1 WHERE config_id = $2", stored, config_id
        )
    finally:
        await conn.close()


@pytest.fixture
async def upstream(aiohttp_server: Any) -> AsyncIterator[tuple[StubUpstream, str]]:
    """An upstream MCP server that answers only when both secret headers are sent."""
    stub = StubUpstream(tools=make_tools(2), require_headers=HEADERS)
    server = await aiohttp_server(stub.app())
    yield stub, str(server.make_url("/mcp"))


class Gateway:
    """One app (both planes) with a given MCPGW_SECRET_KEY, and a few calls on it."""

    def __init__(self, client: TestClient) -> None:
        self.client = client
        self.api = Api(client, {"Authorization": f"Bearer {issue_token(JWT_SECRET, 'acme')}"})

    async def setup(self, url: str, integration: str = "crm") -> tuple[str, str]:
        """An enabled integration whose config reads its catalog from `url` with HEADERS;
        returns (config id, API key)."""
        await self.api.call("PUT", f"/{integration}", 201, json={"name": integration})
        _, config = await self.api.call(
            "POST",
            f"/{integration}/configs",
            201,
            json={"upstreamUrl": url, "upstreamHeaders": HEADERS},
        )
        assert config["upstreamHeaderNames"] == ["Authorization", "X-Team"]
        _, mcp = await self.api.call(
            "PATCH",
            f"/{integration}/mcp",
            200,
            json={"enabled": True, "configId": config["configId"], "exposedToolIds": ["tool_0"]},
        )
        return config["configId"], mcp["apiKey"]

    async def call_tool(
        self, key: str, integration: str = "crm", endpoint: str = "call"
    ) -> tuple[int, dict[str, Any]]:
        message = modern_message("tools/call", {"name": "tool_0", "arguments": {"q": "x"}}, id=7)
        headers = modern_headers(message, key)
        url = f"/v1/tenants/acme/integrations/{integration}/mcp:{endpoint}"
        async with self.client.post(url, json=message, headers=headers) as resp:
            return resp.status, await resp.json()


@pytest.fixture
def gateway(aiohttp_client: Any, tmp_path: Path, database_url: str) -> Any:
    """`await gateway(key)` → a live app on the parametrized database with that secret key."""

    async def make(secret_key: str) -> Gateway:
        settings = make_settings(tmp_path, database_url, MCPGW_SECRET_KEY=secret_key)
        return Gateway(await aiohttp_client(build_app(settings)))

    return make


async def test_the_database_never_holds_a_header_value_in_clear(
    gateway: Any, database_url: str, upstream: tuple[StubUpstream, str]
) -> None:
    stub, url = upstream
    gw = await gateway(NEW_KEY)
    config_id, key = await gw.setup(url)  # the catalog read used the decrypted-at-write values
    stored = await raw_headers(database_url, config_id)
    for secret in (UPSTREAM_SECRET, "upstream-token-7f3a9c51e2", TEAM_SECRET, NEW_KEY):
        assert secret not in stored
    document = json.loads(stored)
    assert document["v"] == 1 and sorted(document["fernet"]) == ["Authorization", "X-Team"]
    assert SecretBox([NEW_KEY]).decrypt(document["fernet"]["X-Team"]) == TEAM_SECRET

    # Round trip: the proxy and a sync read the values back and send them upstream.
    status, body = await gw.call_tool(key)
    assert status == 200 and "result" in body, body
    assert stub.received_headers[-1]["Authorization"] == UPSTREAM_SECRET
    await gw.api.call("POST", f"/crm/configs/{config_id}:syncTools", 200)
    _, shown = await gw.api.call("GET", f"/crm/configs/{config_id}", 200)
    assert shown["upstreamHeaderNames"] == ["Authorization", "X-Team"]
    assert UPSTREAM_SECRET not in json.dumps(shown)


async def test_a_key_that_does_not_fit_fails_calls_clearly_and_keeps_the_api_readable(
    gateway: Any, upstream: tuple[StubUpstream, str]
) -> None:
    stub, url = upstream
    config_id, key = await (await gateway(OLD_KEY)).setup(url)
    calls_before = len(stub.calls)
    wrong = await gateway(OTHER_KEY)

    # The settings API shows names only, so reading still works.
    _, shown = await wrong.api.call("GET", f"/crm/configs/{config_id}", 200)
    assert shown["upstreamHeaderNames"] == ["Authorization", "X-Team"]
    await wrong.api.call("GET", "/crm/configs", 200)
    await wrong.api.call("GET", "/crm/mcp", 200)

    # callUrl: a JSON-RPC error naming the cause; the upstream is never called without them.
    status, body = await wrong.call_tool(key)
    assert status == 200
    assert body["error"]["code"] == -32603
    assert body["error"]["data"] == {"upstream": "secrets-unreadable"}
    assert "cannot be decrypted with MCPGW_SECRET_KEY" in body["error"]["message"]
    assert len(stub.calls) == calls_before

    # testUrl never needs the values.
    status, body = await wrong.call_tool(key, endpoint="test")
    assert status == 200 and "result" in body, body

    # A sync needs them: a 500 problem that says why (not a bare internal error).
    async with wrong.client.post(
        f"{wrong.api.base}/crm/configs/{config_id}:syncTools", headers=wrong.api.headers
    ) as resp:
        problem = await resp.json()
        assert resp.status == 500
        assert resp.content_type == "application/problem+json"
    assert problem["type"].endswith("/secrets-unreadable")
    assert "MCPGW_SECRET_KEY" in problem["detail"]
    assert UPSTREAM_SECRET not in json.dumps(problem)


async def test_rotation_with_two_keys(
    gateway: Any, database_url: str, upstream: tuple[StubUpstream, str]
) -> None:
    _, url = upstream
    old_config, old_key = await (await gateway(OLD_KEY)).setup(url, "crm")

    # Step 1 of the rotation: the new key first, the old one still listed.
    both = await gateway(f"{NEW_KEY},{OLD_KEY}")
    status, body = await both.call_tool(old_key, "crm")  # old rows still decrypt
    assert status == 200 and "result" in body, body
    new_config, new_key = await both.setup(url, "billing")  # new rows use the first key
    new_stored = await raw_headers(database_url, new_config)
    assert json.loads(new_stored)["v"] == 1
    assert open_headers(new_stored, SecretBox([NEW_KEY])).error is None
    assert (
        open_headers(await raw_headers(database_url, old_config), SecretBox([NEW_KEY])).error
        is not None
    )

    # Step 2: re-encrypt everything with the first key.
    store = create_store(database_url, secrets=SecretBox([NEW_KEY, OLD_KEY]))
    await store.open()
    try:
        report = await store.rotate_secrets(batch_size=1)  # one transaction per config
        again = await store.rotate_secrets()
    finally:
        await store.close()
    assert (report.rotated, report.encrypted, report.current, report.unreadable) == (1, 0, 1, [])
    assert (again.rotated, again.current) == (0, 2)
    assert await raw_headers(database_url, new_config) == new_stored  # current rows untouched

    # Step 3: the old key can go.
    only_new = await gateway(NEW_KEY)
    for integration, key in (("crm", old_key), ("billing", new_key)):
        status, body = await only_new.call_tool(key, integration)
        assert status == 200 and "result" in body, body


async def test_plaintext_rows_from_before_keep_working_and_get_encrypted(
    gateway: Any, database_url: str, upstream: tuple[StubUpstream, str]
) -> None:
    _, url = upstream
    gw = await gateway(NEW_KEY)
    config_id, key = await gw.setup(url)
    # What the schema held before encryption at rest: a plain JSON object of values.
    await write_raw_headers(database_url, config_id, json.dumps(HEADERS))

    fresh = await gateway(NEW_KEY)  # a replica that has not cached the config yet
    status, body = await fresh.call_tool(key)
    assert status == 200 and "result" in body, body
    await fresh.api.call("POST", f"/crm/configs/{config_id}:syncTools", 200)

    store = create_store(database_url, secrets=SecretBox([NEW_KEY]))
    await store.open()
    try:
        report = await store.rotate_secrets()
        async with store.reader() as session:
            config = await session.get_config("acme", "crm", config_id)
    finally:
        await store.close()
    assert (report.encrypted, report.rotated, report.current) == (1, 0, 0)
    assert isinstance(config, Config) and config.upstream_headers == HEADERS
    stored = await raw_headers(database_url, config_id)
    assert UPSTREAM_SECRET not in stored and TEAM_SECRET not in stored


# --- the command ------------------------------------------------------------------------------
def _cli(tmp_path: Path, database_url: str, secret_key: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MCPGW_")}
    env.update(
        {
            "MCPGW_DATA_DIR": str(tmp_path / "cli-data"),
            "MCPGW_DATABASE_URL": database_url,
            "MCPGW_JWT_SECRET": JWT_SECRET,
            "MCPGW_SECRET_KEY": secret_key,
        }
    )
    return subprocess.run(
        [CLI, "rotate-secrets"], env=env, capture_output=True, text=True, timeout=60, check=False
    )


@pytest.mark.slow  # starts the CLI
async def test_rotate_secrets_command(
    gateway: Any, database_url: str, tmp_path: Path, upstream: tuple[StubUpstream, str]
) -> None:
    _, url = upstream
    old_config, _ = await (await gateway(OLD_KEY)).setup(url, "crm")
    plain_config, _ = await (await gateway(OLD_KEY)).setup(url, "billing")
    await write_raw_headers(database_url, plain_config, json.dumps(HEADERS))
    lost_config, _ = await (await gateway(OTHER_KEY)).setup(url, "lost")

    done = await asyncio.to_thread(_cli, tmp_path, database_url, f"{NEW_KEY},{OLD_KEY}")
    assert done.returncode == 1, done.stderr  # one config no listed key opens
    assert "re-encrypted 2 config(s)" in done.stdout
    assert "(1 from an older key, 1 stored in plaintext before); 0 already current" in done.stdout
    assert lost_config in done.stderr and "cannot be decrypted" in done.stderr
    for text in (done.stdout, done.stderr):
        for secret in (UPSTREAM_SECRET, TEAM_SECRET, NEW_KEY, OLD_KEY, OTHER_KEY):
            assert secret not in text
    only_new = SecretBox([NEW_KEY])
    for config_id in (old_config, plain_config):
        assert open_headers(await raw_headers(database_url, config_id), only_new).values == HEADERS

    done = await asyncio.to_thread(_cli, tmp_path, database_url, f"{NEW_KEY},{OTHER_KEY}")
    assert done.returncode == 0, done.stderr
    assert "re-encrypted 1 config(s)" in done.stdout and "2 already current" in done.stdout

    bad = await asyncio.to_thread(_cli, tmp_path, database_url, "short")
    assert bad.returncode == 2 and "MCPGW_SECRET_KEY" in bad.stderr
