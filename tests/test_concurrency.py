"""Concurrent enables and rotations leave exactly one live key (docs/settings-api.md).

Through the live HTTP app on both backends, and across two "replicas" (two stores and two
services on one database) racing each other.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from conftest import Api

from settings_api.app import STORE
from settings_api.changes import LocalChangeFeed
from settings_api.keys import check_format, hash_key
from settings_api.routes import SERVICE
from settings_api.service import SettingsPatch, SettingsService
from settings_api.store import Store, create_store

TENANT, INTEGRATION = "acme", "crm"


async def _no_catalog(url: str, headers: Any) -> list[dict[str, Any]]:
    raise AssertionError("no upstream traffic expected")


async def _live_key_ids(store: Store) -> list[str]:
    async with store.reader() as session:
        return [k.key_id for k in await session.live_keys(TENANT, INTEGRATION)]


async def test_concurrent_first_enables_mint_exactly_one_key(client: TestClient, api: Api) -> None:
    config_id = await api.integration_with_config(INTEGRATION)

    results = await asyncio.gather(
        *(
            api.call("PATCH", f"/{INTEGRATION}/mcp", json={"enabled": True, "configId": config_id})
            for _ in range(10)
        )
    )

    assert [status for status, _ in results] == [200] * 10, results
    minted = [body["apiKey"] for _, body in results if body["apiKey"] is not None]
    assert len(minted) == 1
    check_format(minted[0])
    key_ids = {body["apiKeyId"] for _, body in results}
    assert len(key_ids) == 1 and None not in key_ids
    assert {body["keyPrefix"] for _, body in results} == {minted[0][:12]}
    assert all(body["enabled"] for _, body in results)

    assert await _live_key_ids(client.app[STORE]) == list(key_ids)
    binding = await client.app[SERVICE].find_key(hash_key(minted[0]))
    assert binding is not None and binding.key_id in key_ids and binding.revoked_at is None
    _, final = await api.call("GET", f"/{INTEGRATION}/mcp", 200)
    assert final["apiKeyId"] in key_ids and final["apiKey"] is None


async def test_concurrent_rotations_leave_exactly_one_live_key(
    client: TestClient, api: Api
) -> None:
    config_id = await api.integration_with_config(INTEGRATION)
    _, enabled = await api.call(
        "PATCH", f"/{INTEGRATION}/mcp", 200, json={"enabled": True, "configId": config_id}
    )
    first_key = enabled["apiKey"]
    assert first_key is not None

    results = await asyncio.gather(
        *(api.call("POST", f"/{INTEGRATION}/mcp:rotateKey") for _ in range(16))
    )

    assert [status for status, _ in results] == [200] * 16, results
    raw_keys = [body["apiKey"] for _, body in results]
    assert all(raw is not None for raw in raw_keys)
    assert len(set(raw_keys)) == 16
    assert len({body["apiKeyId"] for _, body in results}) == 16
    for raw in raw_keys:
        check_format(raw)

    store, service = client.app[STORE], client.app[SERVICE]
    live = await _live_key_ids(store)
    assert len(live) == 1
    _, final = await api.call("GET", f"/{INTEGRATION}/mcp", 200)
    assert final["apiKeyId"] == live[0]

    winners = []
    for raw in [first_key, *raw_keys]:
        binding = await service.find_key(hash_key(raw))
        assert binding is not None, "every minted key is stored (by its hash)"
        assert (binding.tenant_id, binding.integration_id) == (TENANT, INTEGRATION)
        if binding.revoked_at is None:
            winners.append(binding.key_id)
    assert winners == live
    # The surviving key is the one the last rotation returned.
    assert final["keyPrefix"] == next(
        body["keyPrefix"] for _, body in results if body["apiKeyId"] == live[0]
    )


async def test_rotations_racing_enables_still_leave_one_live_key(
    client: TestClient, api: Api
) -> None:
    config_id = await api.integration_with_config(INTEGRATION)
    calls = []
    for n in range(12):
        if n % 2:
            calls.append(api.call("POST", f"/{INTEGRATION}/mcp:rotateKey"))
        else:
            calls.append(
                api.call(
                    "PATCH", f"/{INTEGRATION}/mcp", json={"enabled": True, "configId": config_id}
                )
            )
    results = await asyncio.gather(*calls)
    assert {status for status, _ in results} == {200}, results
    live = await _live_key_ids(client.app[STORE])
    assert len(live) == 1
    _, final = await api.call("GET", f"/{INTEGRATION}/mcp", 200)
    assert final["apiKeyId"] == live[0]


# two replicas on one database ----------------------------------------------------------------
@pytest.fixture
async def replicas(database_url: str) -> AsyncIterator[tuple[SettingsService, SettingsService]]:
    """Two services, each with its own store (own connections) on the same database."""
    stores = [create_store(database_url), create_store(database_url)]
    for store in stores:
        await store.open()
    try:
        await stores[0].migrate()
        assert await stores[1].migrate() == []
        yield (
            SettingsService(stores[0], LocalChangeFeed(), _no_catalog),
            SettingsService(stores[1], LocalChangeFeed(), _no_catalog),
        )
    finally:
        for store in stores:
            await store.close()


async def test_two_replicas_racing_rotations_leave_exactly_one_live_key(
    replicas: tuple[SettingsService, SettingsService],
) -> None:
    one, two = replicas
    await one.put_integration("alice", TENANT, INTEGRATION, "CRM")
    config = await one.create_config(
        "alice",
        TENANT,
        INTEGRATION,
        None,
        {},
        [{"name": "search", "inputSchema": {"type": "object"}}],
    )
    await two.patch_settings(
        "bob", TENANT, INTEGRATION, SettingsPatch(enabled=True, config_id=config.config_id)
    )

    results = await asyncio.gather(
        *((one if n % 2 else two).rotate_key(f"actor-{n}", TENANT, INTEGRATION) for n in range(16))
    )

    raw_keys = [raw for _, raw in results]
    assert len(set(raw_keys)) == 16
    live_one, live_two = await _live_key_ids(one.store), await _live_key_ids(two.store)
    assert len(live_one) == 1 and live_one == live_two
    settings_one = await one.get_settings(TENANT, INTEGRATION)
    settings_two = await two.get_settings(TENANT, INTEGRATION)
    assert settings_one.api_key_id == settings_two.api_key_id == live_one[0]
    live_raw = [
        raw for raw in raw_keys if (b := await two.find_key(hash_key(raw))) and b.revoked_at is None
    ]
    assert len(live_raw) == 1
    assert settings_one.key_prefix == live_raw[0][:12]
    # Every rotation is in the audit trail, each naming the key it minted.
    events = await one.list_audit(TENANT, 2**62, 100)
    rotated = [e for e in events if e.action == "mcp.key_rotated"]
    assert len(rotated) == 16
    assert {e.details["apiKeyId"] for e in rotated} == {s.api_key_id for s, _ in results}


async def test_two_replicas_racing_first_enables_mint_one_key(
    replicas: tuple[SettingsService, SettingsService],
) -> None:
    one, two = replicas
    await one.put_integration("alice", TENANT, INTEGRATION, "CRM")
    config = await two.create_config(
        "alice",
        TENANT,
        INTEGRATION,
        None,
        {},
        [{"name": "search", "inputSchema": {"type": "object"}}],
    )
    patch = SettingsPatch(enabled=True, config_id=config.config_id)

    results = await asyncio.gather(
        *(
            (one if n % 2 else two).patch_settings(f"actor-{n}", TENANT, INTEGRATION, patch)
            for n in range(10)
        )
    )

    minted = [raw for _, raw in results if raw is not None]
    assert len(minted) == 1
    assert len({s.api_key_id for s, _ in results}) == 1
    assert await _live_key_ids(one.store) == [results[0][0].api_key_id]
