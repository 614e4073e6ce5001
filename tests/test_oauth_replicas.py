"""OAuth access tokens on two gateway replicas (one Postgres, one Redis): whatever ends the
key that approved a token (rotation, disabling MCP, deleting the integration), and revoking the
token or its client, ends the token on the other replica within about a second, as it does
the key (tests/test_replicas.py).

Tokens are minted through the service on the replicas' database; everything else goes through
the replicas' HTTP APIs. Everything runs on 127.0.0.1, bounded."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from conftest import REDIS_URL
from faults import Client, http_session, start_gateway, stop_gateway
from polling import until

from settings_api.changes import LocalChangeFeed
from settings_api.oauth.grants import OAuthSettings
from settings_api.service import SettingsService
from settings_api.store import create_store

pytestmark = pytest.mark.slow

PUBLIC = "http://gateway.test"  # MCPGW_PUBLIC_URL of tests/faults.py's replicas
CALL = "/v1/tenants/acme/integrations/crm/mcp:call"
# The guarantee under test, with the polling granularity of a loaded test machine on top.
REFUSED_WITHIN_S = 1.5


@contextlib.asynccontextmanager
async def issuer(database_url: str) -> AsyncIterator[SettingsService]:
    """The service over the replicas' database, to mint tokens without the browser flow."""
    store = create_store(database_url)
    await store.open()
    try:
        yield SettingsService(
            store, LocalChangeFeed(), None, oauth=OAuthSettings(public_url=PUBLIC)
        )
    finally:
        await store.close()


async def test_what_ends_a_token_reaches_every_replica(tmp_path: Path, fresh_pg_url: str) -> None:
    a_proc, b_proc = await asyncio.gather(
        *(
            start_gateway(tmp_path, name, fresh_pg_url, MCPGW_REDIS_URL=REDIS_URL)
            for name in ("a", "b")
        )
    )
    try:
        async with http_session() as http, issuer(fresh_pg_url) as service:
            a, b = Client(http, a_proc), Client(http, b_proc)

            async def mint(key: str) -> str:
                pair = await service.issue_oauth_tokens(key, "client-1", PUBLIC + CALL)
                return pair.access_token

            async def warm(token: str) -> str:
                """A legacy session of `token` on b, served (b caches the token)."""
                session = await b.initialize(token)
                assert (await b.list_tools(token, session))[0] == 200
                return session

            # Rotation.
            token = await mint(await a.enable())
            session = await warm(token)
            rotated = (await a.settings("POST", "/mcp:rotateKey"))["apiKey"]

            async def revoked_on_b() -> bool:
                status, _, body = await b.list_tools(token, session)
                return status == 401 and body["reason"] == "revoked"

            assert await until(revoked_on_b, timeout_s=REFUSED_WITHIN_S) < REFUSED_WITHIN_S

            # Disabling MCP, then enabling it again.
            token = await mint(rotated)
            session = await warm(token)
            await a.settings("PATCH", "/mcp", json={"enabled": False})

            async def disabled_on_b() -> bool:
                status, _, body = await b.list_tools(token, session)
                return status == 403 and body["type"].endswith("/mcp-disabled")

            await until(disabled_on_b, timeout_s=REFUSED_WITHIN_S)
            await a.settings("PATCH", "/mcp", json={"enabled": True})

            async def served_on_b() -> bool:
                return (await b.list_tools(token, session))[0] == 200

            await until(served_on_b, timeout_s=REFUSED_WITHIN_S)

            # Revoking the token (RFC 7009) on a, then the client's tokens (settings API).
            async with http.post(
                a_proc.url + "/oauth/revoke", data={"token": token, "client_id": "client-1"}
            ) as resp:
                assert resp.status == 200, await resp.text()
            assert await until(revoked_on_b, timeout_s=REFUSED_WITHIN_S) < REFUSED_WITHIN_S
            token = await mint(rotated)
            session = await warm(token)
            await a.settings("DELETE", "/mcp/oauth/clients/client-1")
            assert await until(revoked_on_b, timeout_s=REFUSED_WITHIN_S) < REFUSED_WITHIN_S

            # Deleting the integration.
            await a.settings("DELETE")

            async def gone_on_b() -> bool:
                status, _, _ = await b.list_tools(token, session)
                return status in (401, 404)

            await until(gone_on_b, timeout_s=REFUSED_WITHIN_S)
    finally:
        for proc in (a_proc, b_proc):
            await stop_gateway(proc)
