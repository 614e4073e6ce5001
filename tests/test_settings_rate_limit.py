"""The settings API's rate limit: one token bucket per JWT identity (issuer, subject, tenant
grant), 429 problem+json with `Retry-After` past it, shared across replicas through Redis;
failed authentications are bounded per client address instead.

Each app runs on its own SQLite file, so its Redis keys (named after the deployment's store)
are its own; the Redis tests delete them afterwards.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as redis
from aiohttp.test_utils import TestClient
from conftest import JWT_SECRET, REDIS_URL, make_settings
from net import free_port

from gateway.server import build_app
from gateway.state import deployment_tag
from settings_api.config import ConfigError, Settings, load_settings
from settings_api.jwt_auth import issue_token

BURST = 5
SLOW_RPS = "0.1"  # one token per 10 s: nothing refills during a test
INTEGRATIONS = "/v1/tenants/{tenant}/integrations"

Client = Callable[..., Any]


def limited(tmp_path: Path, **env: str) -> Settings:
    return make_settings(
        tmp_path,
        f"sqlite:///{tmp_path / 'store.db'}",
        MCPGW_SETTINGS_RATE_LIMIT_BURST=str(BURST),
        MCPGW_SETTINGS_RATE_LIMIT_RPS=SLOW_RPS,
        **env,
    )


def bearer(tenant: str = "acme", **claims: Any) -> dict[str, str]:
    return {"Authorization": f"Bearer {issue_token(JWT_SECRET, tenant, **claims)}"}


async def list_integrations(
    client: TestClient, headers: dict[str, str], tenant: str = "acme"
) -> tuple[int, dict[str, str], Any]:
    async with client.get(INTEGRATIONS.format(tenant=tenant), headers=headers) as resp:
        return resp.status, dict(resp.headers), await resp.json(content_type=None)


async def drain(client: TestClient, headers: dict[str, str], tenant: str = "acme") -> None:
    for n in range(BURST):
        status, answer_headers, body = await list_integrations(client, headers, tenant)
        assert status == 200, body
        assert answer_headers["RateLimit-Limit"] == str(BURST)
        assert answer_headers["RateLimit-Remaining"] == str(BURST - 1 - n)


def assert_rate_limited(status: int, headers: dict[str, str], body: Any) -> None:
    assert status == 429, body
    assert headers["Content-Type"].startswith("application/problem+json")
    assert body["type"].endswith("/too-many-requests") and body["status"] == 429
    assert 1 <= int(headers["Retry-After"]) <= 10
    assert headers["RateLimit-Limit"] == str(BURST)
    assert headers["RateLimit-Remaining"] == "0"


async def test_a_token_past_its_burst_gets_429_with_retry_after(
    aiohttp_client: Client, tmp_path: Path
) -> None:
    client = await aiohttp_client(build_app(limited(tmp_path)))
    acme = bearer("acme")
    await drain(client, acme)
    assert_rate_limited(*await list_integrations(client, acme))
    # Every route behind the JWT shares the token's bucket, writes included.
    async with client.put(
        INTEGRATIONS.format(tenant="acme") + "/crm", headers=acme, json={"name": "CRM"}
    ) as resp:
        assert resp.status == 429
        assert "Retry-After" in resp.headers
    # The probes and the document are not behind it.
    for path in ("/healthz", "/readyz", "/metrics", "/openapi.json"):
        async with client.get(path, headers=acme) as resp:
            assert resp.status == 200, path


async def test_one_tenants_token_does_not_use_up_anothers(
    aiohttp_client: Client, tmp_path: Path
) -> None:
    client = await aiohttp_client(build_app(limited(tmp_path)))
    await drain(client, bearer("acme"))
    assert_rate_limited(*await list_integrations(client, bearer("acme")))
    status, headers, _ = await list_integrations(client, bearer("globex"), "globex")
    assert status == 200
    assert headers["RateLimit-Remaining"] == str(BURST - 1)
    # Another subject (or issuer) for the same tenant has its own bucket too...
    status, _, _ = await list_integrations(client, bearer("acme", subject="ops@acme"))
    assert status == 200
    status, _, _ = await list_integrations(client, bearer("acme", issuer="https://idp.test"))
    assert status == 200
    # ...while a token re-minted for the same subject and grant is the same caller: minting
    # does not buy a fresh burst.
    assert_rate_limited(*await list_integrations(client, bearer("acme", ttl_s=7200)))


async def test_refused_tokens_use_up_no_bucket(aiohttp_client: Client, tmp_path: Path) -> None:
    client = await aiohttp_client(build_app(limited(tmp_path)))
    forged = {"Authorization": "Bearer " + issue_token("another-secret-" + "y" * 40, "acme")}
    for headers in [forged] * 4 + [{}] * 4:
        status, answer_headers, _ = await list_integrations(client, headers)
        assert status == 401
        assert "RateLimit-Remaining" not in answer_headers
    await drain(client, bearer("acme"))  # the whole burst is still there


async def test_failed_authentications_throttle_the_address(
    aiohttp_client: Client, tmp_path: Path
) -> None:
    client = await aiohttp_client(build_app(limited(tmp_path, MCPGW_AUTH_FAILURE_LIMIT="3")))
    forged = {"Authorization": "Bearer not-a-jwt"}
    for _ in range(3):
        status, _, _ = await list_integrations(client, forged)
        assert status == 401
    # From then on the address is refused before any verification, even with a good token.
    status, headers, body = await list_integrations(client, bearer("acme"))
    assert status == 429, body
    assert body["type"].endswith("/auth-throttled")
    assert int(headers["Retry-After"]) >= 1


async def test_answers_after_the_limit_carry_its_figures(
    aiohttp_client: Client, tmp_path: Path
) -> None:
    client = await aiohttp_client(build_app(limited(tmp_path)))
    # A 403 (the token does not grant the tenant) still costs the token one request.
    status, headers, _ = await list_integrations(client, bearer("acme"), "globex")
    assert status == 403
    assert headers["RateLimit-Remaining"] == str(BURST - 1)
    assert int(headers["RateLimit-Reset"]) >= 1


async def own_keys(client: redis.Redis, settings: Settings) -> list[bytes]:
    pattern = f"mcpgw:settings:*{deployment_tag(settings.database_url)}*"
    return [key async for key in client.scan_iter(pattern, count=1000)]


async def test_replicas_on_one_redis_share_a_tokens_bucket(
    aiohttp_client: Client, tmp_path: Path, redis_client: redis.Redis
) -> None:
    settings = limited(tmp_path, MCPGW_REDIS_URL=REDIS_URL)
    try:
        # Two apps (replicas) of one deployment: same store, same Redis.
        a = await aiohttp_client(build_app(settings, "settings"))
        b = await aiohttp_client(build_app(settings, "settings"))
        token = bearer("acme")
        raw = token["Authorization"].removeprefix("Bearer ")
        for n, replica in enumerate([a, b, a, b, a]):
            status, headers, _ = await list_integrations(replica, token)
            assert status == 200
            assert headers["RateLimit-Remaining"] == str(BURST - 1 - n)
        assert_rate_limited(*await list_integrations(b, token))
        assert_rate_limited(*await list_integrations(a, token))
        keys = await own_keys(redis_client, settings)
        assert keys and all(key.startswith(b"mcpgw:settings:") for key in keys)
        # Only a digest of the token's identity names its bucket, never the token.
        assert not any(raw.encode() in key or b"acme" in key for key in keys)
    finally:
        keys = await own_keys(redis_client, settings)
        if keys:
            await redis_client.delete(*keys)


@pytest.mark.parametrize("mode", ["open", "closed"])
async def test_unreachable_redis_follows_the_failure_mode(
    aiohttp_client: Client, tmp_path: Path, mode: str
) -> None:
    settings = limited(
        tmp_path,
        MCPGW_REDIS_URL=f"redis://127.0.0.1:{free_port()}/0",  # nothing listens there
        MCPGW_RATE_LIMIT_FAILURE_MODE=mode,
    )
    client = await aiohttp_client(build_app(settings, "settings"))
    if mode == "closed":
        status, headers, body = await list_integrations(client, bearer("acme"))
        assert status == 503, body
        assert body["type"].endswith("/service-unavailable")
        assert "Retry-After" in headers
        return
    await drain(client, bearer("acme"))  # local buckets, still limited per token
    assert_rate_limited(*await list_integrations(client, bearer("acme")))


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("MCPGW_SETTINGS_RATE_LIMIT_RPS", "0", "must be greater than 0"),
        ("MCPGW_SETTINGS_RATE_LIMIT_RPS", "-1", "must be greater than 0"),
        ("MCPGW_SETTINGS_RATE_LIMIT_RPS", "fast", "must be a number"),
        ("MCPGW_SETTINGS_RATE_LIMIT_RPS", "inf", "must be finite"),
        ("MCPGW_SETTINGS_RATE_LIMIT_BURST", "0", "must be greater than 0"),
        ("MCPGW_SETTINGS_RATE_LIMIT_BURST", "2.5", "must be an integer"),
    ],
)
def test_bad_settings_rate_limit_values_are_reported(
    tmp_path: Path, name: str, value: str, message: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(
            {"MCPGW_DATA_DIR": str(tmp_path), "MCPGW_JWT_SECRET": JWT_SECRET, name: value}
        )
    assert caught.value.problems == [f"{name}={value!r}: {message}"]


def test_settings_rate_limit_defaults(tmp_path: Path) -> None:
    settings = load_settings({"MCPGW_DATA_DIR": str(tmp_path), "MCPGW_JWT_SECRET": JWT_SECRET})
    assert (settings.settings_rate_limit_rps, settings.settings_rate_limit_burst) == (20.0, 40)
