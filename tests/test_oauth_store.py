"""The authorization server's state on both store backends: a code is single use even when
two exchanges race, refresh tokens rotate, rotation ends the grants, the client list reads
the same (the Postgres runs are `slow`)."""

from __future__ import annotations

import asyncio

import pytest
from aiohttp.test_utils import TestClient
from conftest import Api
from oauth_flow import (
    CALL,
    TOOLS,
    access_state,
    approve,
    authorize_path,
    exchange,
    pkce_pair,
    refresh,
    register,
)

from settings_api.oauth import clients, grants
from settings_api.oauth.grants import ApprovalRefused
from settings_api.routes import SERVICE
from settings_api.use_cases.store_access import now_ms


async def test_the_grant_lifecycle(client: TestClient, api: Api) -> None:
    key = await api.enabled_key(TOOLS)
    client_id = await register(client, client_name="Both Backends")
    verifier, challenge = pkce_pair()
    answer = await approve(client, authorize_path(client_id, challenge), key)
    # Two exchanges of one code at once: exactly one gets tokens, and the other's replay
    # revokes them.
    results = await asyncio.gather(
        exchange(client, client_id, answer["code"], verifier),
        exchange(client, client_id, answer["code"], verifier),
    )
    statuses = sorted(status for status, _ in results)
    assert statuses == [200, 400]
    [issued] = [body for status, body in results if status == 200]
    assert await access_state(client, issued["access_token"]) == "revoked"

    answer = await approve(client, authorize_path(client_id, challenge), key)
    status, pair = await exchange(client, client_id, answer["code"], verifier)
    assert status == 200
    status, rotated = await refresh(client, client_id, pair["refresh_token"])
    assert status == 200 and await access_state(client, rotated["access_token"]) == "live"
    _, listed = await api.call("GET", "/crm/mcp/oauth/clients", 200)
    assert [(i["clientId"], i["clientName"]) for i in listed["items"]] == [
        (client_id, "Both Backends")
    ]
    await api.call("POST", "/crm/mcp:rotateKey", 200)
    assert await access_state(client, rotated["access_token"]) == "revoked"
    status, _ = await refresh(client, client_id, rotated["refresh_token"])
    assert status == 400
    _, listed = await api.call("GET", "/crm/mcp/oauth/clients", 200)
    assert listed["items"] == []


async def test_service_issued_tokens(client: TestClient, api: Api) -> None:
    """The service method tests and scripts use shares the consent page's checks."""
    key = await api.enabled_key(TOOLS)
    other = await api.enabled_key(TOOLS, integration="billing")
    service = client.app[SERVICE]
    pair = await service.issue_oauth_tokens(key, "script", CALL)
    assert await access_state(client, pair.access_token) == "live"
    with pytest.raises(ApprovalRefused):
        await service.issue_oauth_tokens(other, "script", CALL)


async def test_what_nobody_uses_is_dropped(
    client: TestClient, api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Idle registrations and long-expired tokens do not pile up in the store."""
    key = await api.enabled_key(TOOLS)
    idle, used = await register(client), await register(client)
    verifier, challenge = pkce_pair()
    answer = await approve(client, authorize_path(used, challenge), key)
    status, pair = await exchange(client, used, answer["code"], verifier)
    assert status == 200
    # Two days later: the access token expired a day ago and more, the idle client never
    # came back.
    later = now_ms() + 2 * 86_400_000
    for module in (clients, grants):
        monkeypatch.setattr(module, "now_ms", lambda: later)
    status, _ = await refresh(client, used, pair["refresh_token"])
    assert status == 200
    assert await access_state(client, pair["access_token"]) == "unknown"
    await register(client)
    _, challenge = pkce_pair()
    async with client.get(authorize_path(idle, challenge)) as resp:
        assert resp.status == 400  # no longer registered
    async with client.get(authorize_path(used, challenge)) as resp:
        assert resp.status == 200  # it holds tokens: kept
