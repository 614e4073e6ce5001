"""Failed-auth throttling per client address: a flood of bad keys costs no store lookups.

Client addresses are simulated with `X-Forwarded-For` (`MCPGW_TRUST_FORWARDED=true`); each
test uses addresses of its own, so counters left in Redis by other runs cannot interfere.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as redis
from aiohttp.test_utils import TestClient
from conftest import JWT_SECRET, REDIS_URL, Api, make_settings
from net import new_address
from prometheus_client import REGISTRY

from gateway.ratelimit.auth_failures import AuthFailureThrottle, throttle_key
from gateway.server import build_app
from gateway.state import deployment_tag
from settings_api import keys
from settings_api.config import ConfigError, Settings, load_settings
from settings_api.http import client_address
from settings_api.routes import SERVICE

LIMIT = 5
WINDOW_S = 0.6
CALL = "/v1/tenants/acme/integrations/crm/mcp:call"
TOOLS = [{"name": "search_contacts", "inputSchema": {"type": "object"}}]


def throttling_env(**extra: str) -> dict[str, str]:
    return {
        "MCPGW_AUTH_FAILURE_LIMIT": str(LIMIT),
        "MCPGW_AUTH_FAILURE_WINDOW_S": str(WINDOW_S),
        "MCPGW_TRUST_FORWARDED": "true",
        **extra,
    }


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    return make_settings(tmp_path, database_url, **throttling_env())


class LookupSpy:
    """Counts SettingsService.find_key calls (the store lookup a cold key costs)."""

    def __init__(self, client: TestClient) -> None:
        service = client.app[SERVICE]
        original = service.find_key
        self.calls = 0

        async def find_key(key_hash: str) -> Any:
            self.calls += 1
            return await original(key_hash)

        service.find_key = find_key  # type: ignore[method-assign]


async def post(
    client: TestClient, address: str, key: str | None, url: str = CALL
) -> tuple[int, dict[str, str], Any]:
    headers = {
        "X-Forwarded-For": f"198.51.100.1, {address}",
        "Accept": "application/json, text/event-stream",
        "MCP-Protocol-Version": "2025-11-25",
    }
    if key is not None:
        headers["Authorization"] = f"Bearer {key}"
    async with client.post(
        url, headers=headers, json={"jsonrpc": "2.0", "id": 1, "method": "ping"}
    ) as resp:
        return resp.status, dict(resp.headers), await resp.json(content_type=None)


async def enable(api: Api) -> str:
    return await api.enabled_key(TOOLS)


def throttled(status: int, headers: dict[str, str], body: Any) -> bool:
    if status != 429:
        return False
    assert body["type"].endswith("/auth-throttled"), body
    assert 1 <= int(headers["Retry-After"]) <= 1 + WINDOW_S
    return True


async def test_a_flood_of_bad_keys_is_throttled_without_lookups(
    client: TestClient, api: Api
) -> None:
    good_key = await enable(api)
    spy = LookupSpy(client)
    flooder, bystander = new_address(), new_address()
    throttled_before = (
        REGISTRY.get_sample_value("mcpgw_auth_failures_total", {"reason": "throttled"}) or 0
    )

    for _ in range(LIMIT):  # distinct, well-formed, unknown keys: each costs one lookup
        status, _, body = await post(client, flooder, keys.mint().raw)
        assert status == 401 and body["reason"] == "unknown"
    assert spy.calls == LIMIT
    for _ in range(20):
        assert throttled(*await post(client, flooder, keys.mint().raw))
    assert spy.calls == LIMIT  # no lookup at all once throttled
    assert (
        REGISTRY.get_sample_value("mcpgw_auth_failures_total", {"reason": "throttled"})
        == throttled_before + 20
    )

    # Other addresses are not affected, with good keys or bad ones.
    status, _, _ = await post(client, bystander, good_key)
    assert status == 200
    status, _, body = await post(client, bystander, keys.mint().raw)
    assert status == 401 and body["reason"] == "unknown"

    # A valid key from the throttled address is refused too, until the window passes.
    assert throttled(*await post(client, flooder, good_key))
    await asyncio.sleep(WINDOW_S + 0.1)
    status, _, _ = await post(client, flooder, good_key)
    assert status == 200


async def test_malformed_and_revoked_keys_count_missing_ones_do_not(
    client: TestClient, api: Api
) -> None:
    good_key = await enable(api)
    address = new_address()
    for _ in range(LIMIT * 2):  # no key at all: clients probe like this; never counted
        status, _, body = await post(client, address, None)
        assert status == 401 and body["reason"] == "missing"
    await api.call("POST", "/crm/mcp:rotateKey", 200)  # good_key is now revoked
    status, _, body = await post(client, address, good_key)
    assert status == 401 and body["reason"] == "revoked"
    for _ in range(LIMIT - 1):
        status, _, body = await post(client, address, "mcpk_not-a-key")
        assert status == 401 and body["reason"] == "malformed"
    assert throttled(*await post(client, address, None))


async def test_successful_requests_never_reset_the_count(client: TestClient, api: Api) -> None:
    good_key = await enable(api)
    address = new_address()
    for _ in range(LIMIT - 1):
        assert (await post(client, address, keys.mint().raw))[0] == 401
        assert (await post(client, address, good_key))[0] == 200
    assert (await post(client, address, keys.mint().raw))[0] == 401
    assert throttled(*await post(client, address, good_key))


@pytest.fixture
async def two_replicas(
    aiohttp_client: Any, tmp_path: Path, pg_database_url: str
) -> AsyncIterator[tuple[TestClient, TestClient]]:
    """Two gateway replicas of one deployment: one Postgres database, one Redis."""
    apps = []
    for name in ("a", "b"):
        settings = make_settings(
            tmp_path / name, pg_database_url, **throttling_env(MCPGW_REDIS_URL=REDIS_URL)
        )
        apps.append(await aiohttp_client(build_app(settings, "gateway")))
    yield apps[0], apps[1]


async def test_failures_add_up_across_replicas_on_one_redis(
    two_replicas: tuple[TestClient, TestClient],
) -> None:
    a, b = two_replicas
    spy_a, spy_b = LookupSpy(a), LookupSpy(b)
    address = new_address()
    for _ in range(LIMIT - 2):
        assert (await post(a, address, keys.mint().raw))[0] == 401
    for _ in range(2):  # the shared count reaches the limit on b
        assert (await post(b, address, keys.mint().raw))[0] == 401
    assert throttled(*await post(b, address, keys.mint().raw))
    assert spy_b.calls == 2
    # a learns on its next failure from that address (one more lookup), then refuses too.
    assert (await post(a, address, keys.mint().raw))[0] == 401
    for _ in range(5):
        assert throttled(*await post(a, address, keys.mint().raw))
    assert spy_a.calls == LIMIT - 1
    # Another address is unaffected on both replicas.
    other = new_address()
    assert (await post(a, other, keys.mint().raw))[0] == 401
    assert (await post(b, other, keys.mint().raw))[0] == 401


# --- the throttle on its own ------------------------------------------------------------------


class FakeRequest:
    def __init__(self, remote: str | None, forwarded: list[str] | None = None) -> None:
        self.remote = remote
        self.headers = _Headers(forwarded or [])


class _Headers:
    def __init__(self, values: list[str]) -> None:
        self.values = values

    def getall(self, name: str, default: Any = None) -> Any:
        return self.values or default


def test_client_address_and_throttle_key() -> None:
    peer = FakeRequest("192.0.2.7", ["203.0.113.1, 198.51.100.9"])
    # X-Forwarded-For ignored unless trusted
    assert client_address(peer) == "192.0.2.7"  # type: ignore[arg-type]
    assert client_address(peer, trust_forwarded=True) == "198.51.100.9"  # type: ignore[arg-type]
    alone = FakeRequest("192.0.2.7")
    assert client_address(alone, trust_forwarded=True) == "192.0.2.7"  # type: ignore[arg-type]
    assert throttle_key("192.0.2.7") == "192.0.2.7"
    # One IPv6 host usually owns a /64: all of it shares one budget.
    assert (
        throttle_key("2001:db8:1:2:aaaa::1")
        == throttle_key("2001:db8:1:2:ffff::9")
        == "2001:db8:1:2::/64"
    )
    assert throttle_key("2001:db8:1:3::1") != throttle_key("2001:db8:1:2::1")
    assert throttle_key("::ffff:192.0.2.7") == "192.0.2.7"
    assert throttle_key(None) == "unknown"
    assert throttle_key("not an address") == "not an address"


def test_deployments_are_told_apart_by_their_store_not_its_credentials() -> None:
    tag = deployment_tag("postgresql://gw:secret@db.internal:5432/gateway")
    assert tag == deployment_tag("postgresql://gw:rotated@db.internal:5432/gateway")
    assert tag != deployment_tag("postgresql://gw:secret@db.internal:5432/staging")
    assert "secret" not in tag and len(tag) == 12


def clocked(now: list[float], **kwargs: Any) -> AuthFailureThrottle:
    return AuthFailureThrottle(3, 10.0, clock=lambda: now[0], **kwargs)


async def test_lockout_lasts_a_window_from_the_limit_and_memory_is_bounded() -> None:
    now = [0.0]
    throttle = clocked(now, max_entries=100)
    address = "192.0.2.1"
    for _ in range(2):
        await throttle.failed(address)
        now[0] += 4
    assert throttle.retry_after(address) is None
    await throttle.failed(address)  # the 3rd, at t=8: locked out until t=18
    now[0] += 9
    assert throttle.retry_after(address) == pytest.approx(1.0)
    now[0] += 1.5
    assert throttle.retry_after(address) is None
    for i in range(1000):
        await throttle.failed(f"198.51.{i // 256}.{i % 256}")
    assert len(throttle._counts) <= 100


async def test_redis_unreachable_falls_back_to_local_counts(
    caplog: pytest.LogCaptureFixture,
) -> None:
    client = redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.2)
    try:
        throttle = AuthFailureThrottle(3, 10.0, client, timeout_s=0.5)
        address = "192.0.2.9"
        calls = 0
        script = throttle._script

        async def counted(**kwargs: Any) -> Any:
            nonlocal calls
            calls += 1
            return await script(**kwargs)  # type: ignore[misc]

        throttle._script = counted  # type: ignore[assignment]
        for _ in range(3):
            await throttle.failed(address)
        assert throttle.retry_after(address) is not None
        assert calls == 1  # Redis is left alone for a while after a failure
        assert "counting per replica" in caplog.text
    finally:
        await client.aclose()


async def test_zero_disables_the_throttle() -> None:
    throttle = AuthFailureThrottle(0, 10.0)
    assert not throttle.enabled
    for _ in range(10):
        await throttle.failed("192.0.2.1")
    assert throttle.retry_after("192.0.2.1") is None


def test_the_variables_are_validated(tmp_path: Path) -> None:
    base = {"MCPGW_DATA_DIR": str(tmp_path), "MCPGW_JWT_SECRET": JWT_SECRET}
    defaults = load_settings(base)
    assert (defaults.auth_failure_limit, defaults.auth_failure_window_s) == (20, 10.0)
    assert defaults.trust_forwarded is False and defaults.log_format is None
    given = load_settings(
        {
            **base,
            "MCPGW_AUTH_FAILURE_LIMIT": "0",
            "MCPGW_TRUST_FORWARDED": "TRUE",
            "MCPGW_AUTH_FAILURE_WINDOW_S": "2.5",
            "MCPGW_LOG_FORMAT": "Text",
        }
    )
    assert (given.auth_failure_limit, given.auth_failure_window_s) == (0, 2.5)
    assert given.trust_forwarded is True and given.log_format == "text"
    bad = {
        "MCPGW_AUTH_FAILURE_LIMIT": "-1",
        "MCPGW_AUTH_FAILURE_WINDOW_S": "0",
        "MCPGW_TRUST_FORWARDED": "maybe",
        "MCPGW_LOG_FORMAT": "xml",
    }
    with pytest.raises(ConfigError) as error:
        load_settings({**base, **bad})
    for name in bad:
        assert any(problem.startswith(name + "=") for problem in error.value.problems), name
