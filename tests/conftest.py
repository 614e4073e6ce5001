"""Shared fixtures: a live app on each store backend, JWTs, a fresh Postgres database, Redis.

Postgres tests use the real server at 127.0.0.1:5432 (MCPGW_TEST_POSTGRES_DSN overrides); one
fresh database per test run, emptied before each test. Redis tests use 127.0.0.1:6379
(MCPGW_TEST_REDIS_URL overrides) and keys of their own, never a flush. A missing server fails
the run: nothing here skips.

A module whose subject is not the store runs on one backend with
`pytestmark = pytest.mark.backends("sqlite")`; the other backend's cases are deselected. Every
test that needs the Postgres server is marked `slow`, like those that start processes, inject
faults or fuzz: `python -m pytest -m "not slow"` is the quick loop, the whole suite is CI.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import os
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest
import redis.asyncio as redis
from aiohttp.test_utils import TestClient

from gateway.executors import UpstreamPool
from gateway.server import build_app
from settings_api.config import Settings, load_settings
from settings_api.egress import create_upstream_client, parse_networks
from settings_api.jwt_auth import issue_token

ADMIN_DSN = os.environ.get(
    "MCPGW_TEST_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/postgres"
)
REDIS_URL = os.environ.get("MCPGW_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
JWT_SECRET = "test-secret-" + "x" * 40
BACKENDS = ("sqlite", "postgres")
POSTGRES_FIXTURES = frozenset({"postgres_url", "pg_database_url", "fresh_pg_url"})
TABLES = (
    "oauth_tokens",
    "oauth_codes",
    "oauth_clients",
    "tool_calls",
    "audit_events",
    "api_keys",
    "simulator_fixtures",
    "mcp_settings",
    "configs",
    "integrations",
)


def run_sync(coro: Any) -> Any:
    """Run a coroutine to completion from sync code, even inside a running event loop."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


def _dsn_for(database: str) -> str:
    base, _, _ = ADMIN_DSN.rpartition("/")
    return f"{base}/{database}"


async def _admin(sql: str) -> None:
    conn = await asyncpg.connect(ADMIN_DSN, timeout=10)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@contextlib.contextmanager
def fresh_postgres_database(prefix: str = "mcpgw_test") -> Iterator[str]:
    """A new, empty database on the real server, dropped afterwards; yields its URL."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    run_sync(_admin(f'CREATE DATABASE "{name}"'))
    try:
        yield _dsn_for(name)
    finally:
        run_sync(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A fresh database for this test run, dropped at the end."""
    with fresh_postgres_database() as url:
        yield url


@pytest.fixture
def fresh_pg_url() -> Iterator[str]:
    """A brand-new Postgres database for one test (multi-process and migration tests)."""
    with fresh_postgres_database() as url:
        yield url


async def _empty_postgres(url: str) -> None:
    conn = await asyncpg.connect(url, timeout=10)
    try:
        exists = await conn.fetchval("SELECT to_regclass('public.integrations') IS NOT NULL")
        if exists:
            await conn.execute(f"TRUNCATE {', '.join(TABLES)} RESTART IDENTITY CASCADE")
    finally:
        await conn.close()


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The URL of an empty database on each backend in turn."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.db'}"
    url = request.getfixturevalue("postgres_url")
    run_sync(_empty_postgres(url))
    return url


@pytest.fixture(params=BACKENDS)
def fresh_database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database nobody has migrated yet: a new SQLite file (in a new directory) or a new
    Postgres database, in turn."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'fresh' / 'store.db'}"
        return
    with fresh_postgres_database() as url:
        yield url


def _backends(item: pytest.Item) -> set[str]:
    """The store backends a collected test runs on (empty when it takes no database URL)."""
    callspec = getattr(item, "callspec", None)
    params = callspec.params if callspec is not None else {}
    return {params[name] for name in ("database_url", "fresh_database_url") if name in params}


@pytest.hookimpl(tryfirst=True)  # before `-m` selects on the `slow` marks added here
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Deselect the backends a `backends` marker leaves out; mark every test that needs the
    Postgres server `slow`, so `-m "not slow"` runs the store tests on SQLite alone."""
    kept, dropped = [], []
    for item in items:
        backends = _backends(item)
        marker = item.get_closest_marker("backends")
        if marker is not None and not backends.issubset(marker.args):
            dropped.append(item)
            continue
        kept.append(item)
        if "postgres" in backends or POSTGRES_FIXTURES.intersection(
            getattr(item, "fixturenames", ())
        ):
            item.add_marker(pytest.mark.slow)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """Keep each phase's report on the test (`item.rep_call`), for fixtures that act on a
    failure (the console tests' screenshots)."""
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report


@pytest.fixture
def pg_database_url(postgres_url: str) -> str:
    """The URL of an empty Postgres database (Postgres-only tests)."""
    run_sync(_empty_postgres(postgres_url))
    return postgres_url


def make_settings(tmp_path: Path, database_url: str, **env: str) -> Settings:
    """Settings as the service would load them, with a private data dir."""
    base = {
        "MCPGW_DATA_DIR": str(tmp_path / "data"),
        "MCPGW_DATABASE_URL": database_url,
        "MCPGW_JWT_SECRET": JWT_SECRET,
        "MCPGW_PUBLIC_URL": "http://gw.test:8080",
        "MCPGW_UPSTREAM_TIMEOUT_S": "3",
        # The tests' stub upstreams listen on loopback, which the egress policy refuses.
        "MCPGW_UPSTREAM_ALLOWED_NETWORKS": "127.0.0.0/8,::1/128",
    }
    base.update(env)
    return load_settings(base)


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    return make_settings(tmp_path, database_url)


@pytest.fixture
async def client(aiohttp_client: Any, settings: Settings) -> TestClient:
    """A live app (all roles) on the parametrized backend."""
    return await aiohttp_client(build_app(settings))


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    """A client session for tests that talk to real servers (bounded, so a hang fails)."""
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=20)) as session:
        yield session


@pytest.fixture
async def upstream_http() -> AsyncIterator[aiohttp.ClientSession]:
    """The gateway's own upstream client (its limits and egress policy), allowed to reach the
    tests' stubs on loopback."""
    loopback = parse_networks("127.0.0.0/8,::1/128")
    async with create_upstream_client(allowed_networks=loopback, timeout_s=30) as session:
        yield session


@pytest.fixture
async def upstream_pool(upstream_http: aiohttp.ClientSession) -> AsyncIterator[UpstreamPool]:
    """callUrl's pool of upstreams over the gateway's own upstream client, closed afterwards."""
    pool = UpstreamPool(upstream_http, timeout_s=5.0)
    yield pool
    await pool.close()


@pytest.fixture
async def redis_client() -> AsyncIterator[redis.Redis]:
    """A client of the test Redis; bounded socket timeouts, so an outage fails, never hangs."""
    client = redis.from_url(REDIS_URL, socket_timeout=2, socket_connect_timeout=2)
    try:
        yield client
    finally:
        await client.aclose()


@pytest.fixture
def token() -> Callable[..., str]:
    """`token("acme")` → a valid settings-API JWT for that tenant."""

    def make(tenant: str = "acme", **kwargs: Any) -> str:
        return issue_token(JWT_SECRET, tenant, **kwargs)

    return make


@pytest.fixture
def auth(token: Callable[..., str]) -> Callable[..., dict[str, str]]:
    """`auth("acme")` → headers carrying a JWT for that tenant."""

    def make(tenant: str = "acme", **kwargs: Any) -> dict[str, str]:
        return {"Authorization": f"Bearer {token(tenant, **kwargs)}"}

    return make


class Api:
    """Small helper over the settings API for tests that need setup steps."""

    def __init__(self, client: TestClient, headers: dict[str, str], tenant: str = "acme") -> None:
        self.client = client
        self.headers = headers
        self.base = f"/v1/tenants/{tenant}/integrations"

    async def call(
        self, method: str, path: str, expect: int | None = None, **kwargs: Any
    ) -> tuple[int, Any]:
        async with self.client.request(
            method, self.base + path, headers=self.headers, **kwargs
        ) as resp:
            body = await resp.json(content_type=None) if resp.status != 204 else None
            if expect is not None:
                assert resp.status == expect, (resp.status, body)
            return resp.status, body

    async def integration_with_config(
        self, integration: str = "crm", tools: list[dict[str, Any]] | None = None
    ) -> str:
        """Create an integration with an inline config; return the config id."""
        await self.call("PUT", f"/{integration}", 201, json={"name": integration.upper()})
        tools = (
            tools
            if tools is not None
            else [
                {"name": "search_contacts", "inputSchema": {"type": "object"}},
                {"name": "create_contact", "inputSchema": {"type": "object"}},
            ]
        )
        _, config = await self.call("POST", f"/{integration}/configs", 201, json={"tools": tools})
        return config["configId"]

    async def enabled_key(
        self,
        tools: list[dict[str, Any]],
        integration: str = "crm",
        exposed: list[str] | None = None,
    ) -> str:
        """An integration with `tools` inline, its MCP enabled exposing `exposed` (default:
        every tool); return its API key."""
        config_id = await self.integration_with_config(integration, tools)
        exposed = exposed if exposed is not None else [tool["name"] for tool in tools]
        return await self.enable(config_id, exposed, integration)

    async def enable(self, config_id: str, exposed: list[str], integration: str = "crm") -> str:
        """Enable the integration's MCP on `config_id`, exposing `exposed`; return the API key."""
        _, body = await self.call(
            "PATCH",
            f"/{integration}/mcp",
            200,
            json={"enabled": True, "configId": config_id, "exposedToolIds": exposed},
        )
        return body["apiKey"]


@pytest.fixture
def api(client: TestClient, auth: Callable[..., dict[str, str]]) -> Api:
    return Api(client, auth("acme"))
