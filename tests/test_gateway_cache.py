"""The data plane's per-replica cache: warm requests run no SQL, changes are never outrun."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest

from gateway.cache import GatewayCache
from gateway.state import AuthFailure
from settings_api import keys
from settings_api.changes import Change, LocalChangeFeed
from settings_api.problems import StoreUnavailable
from settings_api.service import SettingsPatch, SettingsService
from settings_api.store import create_store

TOOLS = [
    {"name": "alpha", "inputSchema": {"type": "object"}},
    {"name": "beta", "inputSchema": {"type": "object"}},
    {"name": "gamma", "inputSchema": {"type": "object"}},
]


class CountingService(SettingsService):
    """The real service, counting the lookups the cache makes."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.key_loads = 0
        self.view_loads = 0
        self.token_loads = 0
        self.fail = False

    async def find_key(self, key_hash: str) -> Any:
        self.key_loads += 1
        if self.fail:
            raise StoreUnavailable("down")
        await asyncio.sleep(0.01)  # lets concurrent misses pile up
        return await super().find_key(key_hash)

    async def find_access_token(self, token_hash: str) -> Any:
        self.token_loads += 1
        return await super().find_access_token(token_hash)

    async def mcp_snapshot(self, tenant: str, integration: str) -> Any:
        self.view_loads += 1
        if self.fail:
            raise StoreUnavailable("down")
        return await super().mcp_snapshot(tenant, integration)


@pytest.fixture
async def service(tmp_path: Path) -> Any:
    store = create_store(f"sqlite:///{tmp_path / 'cache.db'}")
    await store.open()
    await store.migrate()
    feed = LocalChangeFeed()
    svc = CountingService(store, feed, None)
    yield svc
    await store.close()


async def enabled_integration(service: SettingsService, integration: str = "crm") -> str:
    """Create an enabled integration exposing beta then alpha; return its raw key."""
    await service.put_integration("t", "acme", integration, "CRM")
    config = await service.create_config("t", "acme", integration, None, {}, TOOLS)
    _, raw = await service.patch_settings(
        "t",
        "acme",
        integration,
        SettingsPatch(enabled=True, config_id=config.config_id, exposed_tool_ids=["beta", "alpha"]),
    )
    assert raw is not None
    return raw


async def test_warm_key_runs_no_store_lookup(service: CountingService) -> None:
    raw = await enabled_integration(service)
    cache = GatewayCache(service)
    first = await cache.authenticate(raw)
    for _ in range(50):
        assert await cache.authenticate(raw) == first
    assert service.key_loads == 1
    assert (first.tenant_id, first.integration_id, first.revoked_at) == ("acme", "crm", None)


async def test_concurrent_misses_load_once(service: CountingService) -> None:
    raw = await enabled_integration(service)
    cache = GatewayCache(service)
    entries = await asyncio.gather(*(cache.authenticate(raw) for _ in range(20)))
    assert len({e.key_id for e in entries}) == 1
    assert service.key_loads == 1


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (None, "missing"),
        ("", "missing"),
        ("Bearer xyz", "malformed"),
        ("mcpk_" + "A" * 38, "malformed"),
    ],
)
async def test_bad_keys_are_refused_before_any_lookup(
    service: CountingService, raw: Any, reason: str
) -> None:
    cache = GatewayCache(service)
    with pytest.raises(AuthFailure) as failure:
        await cache.authenticate(raw)
    assert failure.value.reason == reason
    assert service.key_loads == 0


async def test_unknown_key_is_refused(service: CountingService) -> None:
    cache = GatewayCache(service)
    with pytest.raises(AuthFailure) as failure:
        await cache.authenticate(keys.mint().raw)
    assert failure.value.reason == "unknown"


async def test_rotation_change_refuses_the_old_key_at_once(service: CountingService) -> None:
    raw = await enabled_integration(service)
    cache = GatewayCache(service, ttl_s=3600)
    service.changes.subscribe(cache.apply)
    await cache.authenticate(raw)
    _, new_raw = await service.rotate_key("t", "acme", "crm")
    with pytest.raises(AuthFailure) as failure:
        await cache.authenticate(raw)
    assert failure.value.reason == "revoked"
    assert (await cache.authenticate(new_raw)).integration_id == "crm"


async def test_a_load_that_an_invalidation_overtook_is_not_cached(service: CountingService) -> None:
    raw = await enabled_integration(service)
    cache = GatewayCache(service, ttl_s=3600)
    loading = asyncio.create_task(cache.authenticate(raw))
    await asyncio.sleep(0)  # the load is in flight (find_key sleeps)
    await cache.apply(Change("acme", "crm"))
    await loading
    await cache.authenticate(raw)
    assert service.key_loads == 2, "the entry read before the change must not be kept"


async def test_integration_view_exposes_tools_in_settings_order(service: CountingService) -> None:
    await enabled_integration(service)
    cache = GatewayCache(service)
    view = await cache.integration("acme", "crm")
    assert view is not None and view.enabled and view.name == "CRM"
    assert [t["name"] for t in view.tools] == ["beta", "alpha"]
    assert set(view.tools_by_name) == {"alpha", "beta"}
    assert await cache.integration("acme", "nope") is None
    await cache.integration("acme", "crm")
    assert service.view_loads == 2  # one per integration, the repeat was a hit


async def test_disabling_reaches_the_cache(service: CountingService) -> None:
    await enabled_integration(service)
    cache = GatewayCache(service, ttl_s=3600)
    service.changes.subscribe(cache.apply)
    assert (await cache.integration("acme", "crm")).enabled
    await service.patch_settings("t", "acme", "crm", SettingsPatch(enabled=False))
    assert not (await cache.integration("acme", "crm")).enabled


async def test_entries_expire_on_their_ttl(service: CountingService) -> None:
    raw = await enabled_integration(service)
    cache = GatewayCache(service, ttl_s=0.05)
    await cache.authenticate(raw)
    await asyncio.sleep(0.08)
    await cache.authenticate(raw)
    assert service.key_loads == 2


async def test_without_a_subscription_entries_live_only_the_degraded_ttl(
    service: CountingService,
) -> None:
    raw = await enabled_integration(service)
    cache = GatewayCache(service, ttl_s=3600, degraded_ttl_s=0.05)
    cache.subscribed = False
    await cache.authenticate(raw)
    await asyncio.sleep(0.08)
    await cache.authenticate(raw)
    assert service.key_loads == 2


async def test_store_outage_keeps_warm_keys_working(service: CountingService) -> None:
    raw = await enabled_integration(service)
    cache = GatewayCache(service, ttl_s=0.01)
    await cache.authenticate(raw)
    await cache.integration("acme", "crm")
    await asyncio.sleep(0.02)
    service.fail = True
    assert (await cache.authenticate(raw)).integration_id == "crm"
    assert (await cache.integration("acme", "crm")) is not None
    with pytest.raises(StoreUnavailable):  # a cold key cannot be checked
        await cache.authenticate(keys.mint().raw)


async def test_flush_forgets_everything(service: CountingService) -> None:
    raw = await enabled_integration(service)
    cache = GatewayCache(service, ttl_s=3600)
    await cache.authenticate(raw)
    cache.flush()
    await cache.authenticate(raw)
    assert service.key_loads == 2


async def test_key_use_is_batched_and_recorded(service: CountingService) -> None:
    raw = await enabled_integration(service)
    cache = GatewayCache(service)
    before = int(time.time() * 1000)
    for _ in range(5):
        entry = await cache.authenticate(raw)
    used = cache.key_use.take()
    assert list(used) == [entry.key_id] and used[entry.key_id] >= before
    assert cache.key_use.take() == {}
    await service.record_key_use(used)
    async with service.store.reader() as session:
        row = await session._conn.fetchrow(
            "SELECT last_used_at FROM api_keys WHERE key_id = $1", entry.key_id
        )
    assert row["last_used_at"] == used[entry.key_id]


# --- OAuth access tokens ------------------------------------------------------------------------

CALL_URL = "http://127.0.0.1:8080/v1/tenants/acme/integrations/crm/mcp:call"


async def with_token(service: SettingsService, integration: str = "crm") -> tuple[str, str]:
    """An enabled integration's key, and an access token it approved for the callUrl."""
    raw = await enabled_integration(service, integration)
    resource = CALL_URL.replace("/crm/", f"/{integration}/")
    return raw, (await service.issue_oauth_tokens(raw, "client-1", resource)).access_token


async def test_warm_access_token_runs_no_store_lookup_and_resolves_to_its_key(
    service: CountingService,
) -> None:
    raw, token = await with_token(service)
    cache = GatewayCache(service)
    key = await cache.authenticate(raw)
    for _ in range(50):
        assert await cache.authenticate_token(token, CALL_URL) == key
    assert service.token_loads == 1


async def test_access_token_is_refused_on_another_url_and_when_unknown(
    service: CountingService,
) -> None:
    _, token = await with_token(service)
    cache = GatewayCache(service)
    for resource in (
        CALL_URL.replace("mcp:call", "mcp:test"),
        CALL_URL.replace("/crm/", "/billing/"),
        CALL_URL.replace("127.0.0.1:8080", "evil.test"),
    ):
        with pytest.raises(AuthFailure) as failure:
            await cache.authenticate_token(token, resource)
        assert failure.value.reason == "wrong-resource"
    with pytest.raises(AuthFailure) as failure:
        await cache.authenticate_token("mcpat_" + "x" * 43, CALL_URL)
    assert failure.value.reason == "unknown"


async def test_rotation_change_refuses_the_keys_tokens_at_once(service: CountingService) -> None:
    _, token = await with_token(service)
    _, other = await with_token(service, "billing")
    cache = GatewayCache(service, ttl_s=3600)
    service.changes.subscribe(cache.apply)
    await cache.authenticate_token(token, CALL_URL)
    await cache.authenticate_token(other, CALL_URL.replace("/crm/", "/billing/"))
    await service.rotate_key("t", "acme", "crm")
    with pytest.raises(AuthFailure) as failure:
        await cache.authenticate_token(token, CALL_URL)
    assert failure.value.reason == "revoked"
    # Another integration's tokens stay warm.
    loads = service.token_loads
    await cache.authenticate_token(other, CALL_URL.replace("/crm/", "/billing/"))
    assert service.token_loads == loads


async def test_revoked_access_token_is_refused_after_the_change(service: CountingService) -> None:
    _, token = await with_token(service)
    cache = GatewayCache(service, ttl_s=3600)
    service.changes.subscribe(cache.apply)
    await cache.authenticate_token(token, CALL_URL)
    await service.oauth.revoke(token, None)
    with pytest.raises(AuthFailure) as failure:
        await cache.authenticate_token(token, CALL_URL)
    assert failure.value.reason == "revoked"


async def test_access_token_use_is_batched_for_the_token_and_its_key(
    service: CountingService,
) -> None:
    _, token = await with_token(service)
    cache = GatewayCache(service)
    key = await cache.authenticate_token(token, CALL_URL)
    await cache.authenticate_token(token, CALL_URL)
    assert list(cache.key_use.take()) == [key.key_id]
    used = cache.token_use.take()
    assert len(used) == 1 and token not in used  # by hash, never the token itself
    await service.record_token_use(used)
    [client] = await service.list_oauth_clients("acme", "crm", "", 10)
    assert client.client_id == "client-1"
