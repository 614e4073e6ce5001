"""Postgres stopped under a real gateway process: a fault-injecting TCP proxy
(tests/tcp_proxy.py) sits between the gateway and the real server, on a fresh database.

"Stopped" is either refused (listener closed, connections reset) or blackholed (connections
frozen, new ones never answered). Either way: warm keys keep working on the data plane, cold
keys get 503, the settings API answers 503 problem+json with Retry-After within the store
timeout, /readyz is 503; once Postgres is back everything works without a restart, no committed
change is lost, and a change interrupted mid-transaction left nothing behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import logging
import os
import subprocess
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from faults import (
    ADMIN_DSN,
    PG_PORT,
    Client,
    RedisServer,
    fresh_database,
    gateway_env,
    http_session,
    log_of,
    query,
    start_gateway,
    stop_gateway,
    via_port,
)
from processes import CLI, GatewayProcess
from tcp_proxy import TcpProxy

import settings_api.store.postgres  # noqa: F401 - installs the asyncpg.pool log filter
from gateway.observability.logs import REQUEST_ID_VAR, formatter

pytestmark = pytest.mark.slow

STORE_TIMEOUT_S = 1.0
# What "answers within the store timeout" may take on a loaded test machine: the bound on one
# store operation, plus scheduling slack.
BOUND_S = STORE_TIMEOUT_S + 1.0


def assert_unavailable(status: int, headers: dict[str, str], body: Any) -> None:
    assert status == 503, (status, body)
    assert headers["Content-Type"].startswith("application/problem+json"), headers
    assert int(headers["Retry-After"]) >= 1
    assert body["status"] == 503 and body["instance"], body


def assert_no_server_errors(log: str) -> None:
    """No 500 answered, no handler crashed, no traceback for an expected outage."""
    assert '" 500 ' not in log and "Error handling request" not in log, log
    assert "Traceback" not in log, log


def assert_pool_retries_logged_in_one_line(log: str) -> None:
    """asyncpg's warning for each retry of its connection floor: the reason, one line."""
    retries = [json.loads(line) for line in log.splitlines() if '"logger":"asyncpg.pool"' in line]
    assert retries, log
    for record in retries:
        assert record["level"] == "WARNING" and "exc" not in record, record
        # Whichever context started the retry task (often a request's), its lines belong to
        # no request.
        assert "request_id" not in record, record
        assert record["error"].split(":")[0] in (
            "ConnectionRefusedError",
            "TimeoutError",
            "ConnectionResetError",
            "OSError",
        ), record


async def timed(coro: Any) -> tuple[float, Any]:
    started = time.monotonic()
    result = await coro
    return time.monotonic() - started, result


async def setup_integrations(gw: Client, cold: Client) -> tuple[str, str, str]:
    """crm enabled and warm on the data plane; cold enabled, its key never used."""
    key = await gw.enable()
    cold_key = await cold.enable()
    await gw.settings("PATCH", "/mcp", json={"description": "committed before the outage"})
    session = await gw.initialize(key)
    assert (await gw.list_tools(key, session))[0] == 200
    status, _, body = await gw.call_tool(key, session, url="test")
    assert status == 200 and "result" in body, body
    return key, cold_key, session


@dataclass(frozen=True, slots=True)
class Outage:
    """A gateway that reaches Postgres through `proxy`, with crm warm and cold enabled."""

    proxy: TcpProxy
    database_url: str
    proc: GatewayProcess
    gw: Client
    cold: Client
    key: str
    cold_key: str
    session: str


@contextlib.asynccontextmanager
async def gateway_behind_proxy(tmp_path: Path, **env: str) -> AsyncIterator[Outage]:
    """The gateway on a fresh database behind a fault proxy; at the end it must stop cleanly
    and its log show no server error."""
    with fresh_database() as (_, database_url), TcpProxy(PG_PORT) as proxy:
        proc = await start_gateway(
            tmp_path,
            "pg",
            via_port(database_url, proxy.port),
            MCPGW_STORE_TIMEOUT_S=str(STORE_TIMEOUT_S),
            **env,
        )
        try:
            async with http_session() as http:
                gw, cold = Client(http, proc), Client(http, proc, integration="cold")
                key, cold_key, session = await setup_integrations(gw, cold)
                yield Outage(proxy, database_url, proc, gw, cold, key, cold_key, session)
        finally:
            assert await stop_gateway(proc) == 0, log_of(proc)
            assert_no_server_errors(log_of(proc))


async def assert_warm_key_works(gw: Client, key: str, session: str) -> None:
    for _ in range(3):
        took, (status, _, body) = await timed(gw.list_tools(key, session))
        assert status == 200 and len(body["result"]["tools"]) == 2, (status, body)
        assert took < BOUND_S
        took, (status, _, body) = await timed(gw.call_tool(key, session, url="test"))
        assert status == 200 and body["result"].get("isError") is not True, (status, body)
        assert took < BOUND_S
    assert (await gw.initialize(key)) != session  # a new session needs no store either


async def assert_outage_answers(gw: Client, cold: Client, cold_key: str) -> None:
    # Cold key: 503 (the store is needed to know it), not 500 or a hang.
    took, (status, headers, body) = await timed(
        cold.mcp(
            cold_key,
            {
                "jsonrpc": "2.0",
                "id": 1,
                "method": "initialize",
                "params": {
                    "protocolVersion": "2025-11-25",
                    "capabilities": {},
                    "clientInfo": {"name": "cold", "version": "1"},
                },
            },
        )
    )
    assert_unavailable(status, headers, body)
    assert took < BOUND_S, took
    # Settings API: reads and writes, several at once.
    calls = [
        gw.raw_settings("GET"),
        gw.raw_settings("GET", "/mcp"),
        gw.raw_settings("PATCH", "/mcp", json={"description": "during the outage"}),
        Client(gw.http, gw.proc, integration="other").raw_settings("PUT", json={"name": "Other"}),
        gw.raw_settings("POST", "/mcp:rotateKey"),
    ]
    started = time.monotonic()
    answers = await asyncio.gather(*calls)
    took = time.monotonic() - started
    for status, headers, body in answers:
        assert_unavailable(status, headers, body)
    assert took < BOUND_S, took
    took, (status, body) = await timed(gw.readyz())
    assert status == 503 and body["checks"]["store"] == "unreachable", body
    assert took < BOUND_S


async def assert_recovered(
    gw: Client, cold: Client, key: str, cold_key: str, database_url: str
) -> None:
    # The very first request after the outage works: the pool replaces dead connections.
    settings = await gw.settings("GET", "/mcp")
    assert settings["description"] == "committed before the outage"
    assert (await gw.readyz())[0] == 200
    session = await cold.initialize(cold_key)
    assert (await cold.list_tools(cold_key, session))[0] == 200
    session = await gw.initialize(key)
    assert (await gw.call_tool(key, session, url="test"))[0] == 200
    # Nothing that failed during the outage happened: no rotation, no rename, no audit.
    assert settings["keyPrefix"] == key[:12]
    status, _, _ = await Client(gw.http, gw.proc, integration="other").raw_settings("GET")
    assert status == 404
    rows = await query(database_url, "SELECT action, details::text AS d FROM audit_events")
    assert rows and not any("during the outage" in row["d"] for row in rows)
    assert "mcp.key_rotated" not in [row["action"] for row in rows]
    rows = await query(
        database_url, "SELECT description FROM mcp_settings WHERE integration_id = 'crm'"
    )
    assert rows[0]["description"] == "committed before the outage"
    # And writes work again.
    await gw.settings("PATCH", "/mcp", json={"description": "after the outage"})
    assert (await gw.settings("GET", "/mcp"))["description"] == "after the outage"


async def test_postgres_refused_mid_transaction_then_back(tmp_path) -> None:
    async with gateway_behind_proxy(tmp_path) as o:
        # Postgres stops in the middle of a write: its COMMIT never arrives.
        o.proxy.refuse_before(b"COMMIT")
        took, answer = await timed(
            o.gw.raw_settings("PATCH", "/mcp", json={"description": "during the outage"})
        )
        assert o.proxy.trapped and o.proxy.mode == "refuse"
        assert_unavailable(*answer)
        assert took < BOUND_S

        await assert_warm_key_works(o.gw, o.key, o.session)
        await assert_outage_answers(o.gw, o.cold, o.cold_key)

        o.proxy.forward()
        await assert_recovered(o.gw, o.cold, o.key, o.cold_key, o.database_url)
        assert_pool_retries_logged_in_one_line(log_of(o.proc))


async def test_postgres_blackholed_stays_bounded_then_back(tmp_path) -> None:
    async with gateway_behind_proxy(tmp_path) as o:
        # The pool's open connections freeze mid-stream; new ones are never answered.
        o.proxy.blackhole(drop_existing=False)
        took, answer = await timed(
            o.gw.raw_settings("PATCH", "/mcp", json={"description": "during the outage"})
        )
        assert_unavailable(*answer)
        assert took < BOUND_S, took

        await assert_warm_key_works(o.gw, o.key, o.session)
        await assert_outage_answers(o.gw, o.cold, o.cold_key)
        # Again, now that every connection the gateway opens is blackholed.
        await assert_outage_answers(o.gw, o.cold, o.cold_key)

        o.proxy.forward()
        await assert_recovered(o.gw, o.cold, o.key, o.cold_key, o.database_url)


async def test_warm_keys_outlive_their_ttl_while_the_store_hangs(tmp_path) -> None:
    """Entries past their TTL keep serving while the store hangs (stale-if-error), without
    each request waiting out the store timeout. Redis is stopped too, so that the entries
    expire after the degraded TTL (1 s) instead of 30 s."""
    redis_server = RedisServer(tmp_path).start()
    try:
        async with gateway_behind_proxy(
            tmp_path,
            MCPGW_REDIS_URL=redis_server.url,
            # Far above what the loop below can send: on a fast
            # machine it sent more than 1000 requests a second, and
            # the local buckets rightly refused some (a 429 here).
            MCPGW_RATE_LIMIT_BURST="1000000",
            MCPGW_RATE_LIMIT_RPS="1000000",
            MCPGW_REQUEST_LIMIT_BURST="1000000",
            MCPGW_REQUEST_LIMIT_RPS="1000000",
        ) as o:
            o.proxy.blackhole(drop_existing=False)
            redis_server.kill()
            await asyncio.sleep(1.2)  # past the degraded TTL of every cached entry
            took = []
            deadline = time.monotonic() + 3.0
            while time.monotonic() < deadline:
                elapsed, (status, _, body) = await timed(o.gw.list_tools(o.key, o.session))
                assert status == 200 and len(body["result"]["tools"]) == 2, (status, body)
                took.append(elapsed)
                elapsed, (status, _, body) = await timed(
                    o.gw.call_tool(o.key, o.session, url="test")
                )
                assert status == 200, (status, body)
                took.append(elapsed)
            # The store is retried now and then, not on every request. A request that
            # asked the store waited out its timeout; a loaded machine can slow others a
            # little, but never by that much.
            slow = [t for t in took if t > 0.9 * STORE_TIMEOUT_S]
            assert len(took) > 20 and len(slow) <= 4, (len(took), slow)
            assert max(took) < BOUND_S
            status, headers, body = await o.cold.mcp(
                o.cold_key, {"jsonrpc": "2.0", "id": 1, "method": "ping"}
            )
            assert_unavailable(status, headers, body)

            o.proxy.forward()
            redis_server.start()
            await assert_recovered(o.gw, o.cold, o.key, o.cold_key, o.database_url)
    finally:
        redis_server.stop()


def test_only_outage_errors_lose_their_traceback(caplog: pytest.LogCaptureFixture) -> None:
    pool_log = logging.getLogger("asyncpg.pool")
    for exc in (
        ConnectionRefusedError(111, "Connection refused"),
        TimeoutError(),
        ValueError("a bug in the pool"),
    ):
        try:
            raise exc
        except Exception:
            pool_log.warning("Failed to restore the pool connection floor; retrying", exc_info=True)
    refused, timed_out, bug = caplog.records[-3:]
    assert refused.exc_info is None
    assert refused.fields == {"error": "ConnectionRefusedError: [Errno 111] Connection refused"}
    assert timed_out.exc_info is None and timed_out.fields == {"error": "TimeoutError"}
    assert bug.exc_info is not None and bug.exc_info[0] is ValueError  # a traceback, as ever


@pytest.mark.parametrize("fmt", ["json", "text"])
def test_pool_lines_belong_to_no_request(fmt: str) -> None:
    """The pool's retry task inherits the context of the request that started it; its lines
    must not carry that request's id. Other lines logged in a request still do."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter(fmt))
    pool_log, other = logging.getLogger("asyncpg.pool"), logging.getLogger("gateway.test")
    for logger in (pool_log, other):
        logger.addHandler(handler)
    token = REQUEST_ID_VAR.set("req-started-the-retries")
    try:
        try:
            raise ConnectionRefusedError(111, "Connection refused")
        except ConnectionRefusedError:
            pool_log.warning("Failed to restore the pool connection floor; retrying", exc_info=True)
        other.warning("something in the request")
    finally:
        REQUEST_ID_VAR.reset(token)
        for logger in (pool_log, other):
            logger.removeHandler(handler)
    pool_line, request_line = stream.getvalue().splitlines()
    assert "req-started-the-retries" not in pool_line
    assert "req-started-the-retries" in request_line
    if fmt == "json":
        assert "request_id" not in json.loads(pool_line)
        assert json.loads(request_line)["request_id"] == "req-started-the-retries"


async def test_a_dropped_database_is_an_outage_not_a_crash(tmp_path) -> None:
    # The server answers, but refuses every new connection (the database is gone): readiness
    # and the settings API say 503, as for a server that is down, never 500.
    with fresh_database() as (name, database_url):
        proc = await start_gateway(
            tmp_path, "dropped", database_url, MCPGW_STORE_TIMEOUT_S=str(STORE_TIMEOUT_S)
        )
        try:
            async with http_session() as http:
                gw = Client(http, proc)
                await gw.settings("PUT", json={"name": "CRM"})
                await query(ADMIN_DSN, f'DROP DATABASE "{name}" WITH (FORCE)')
                for _ in range(2):  # the pool's connection is gone; so is any new one
                    async with http.get(proc.url + "/readyz") as resp:
                        assert resp.status == 503, await resp.text()
                        assert (await resp.json())["checks"]["store"] == "unreachable"
                    assert_unavailable(*await gw.raw_settings("GET"))
        finally:
            assert await stop_gateway(proc) == 0, log_of(proc)
        log = log_of(proc)
        assert '"status":500' not in log and "unhandled error" not in log, log


def test_serve_names_a_missing_database_in_one_line(tmp_path) -> None:
    with fresh_database() as (name, database_url):
        missing = database_url.replace(name, name + "_missing")
        done = subprocess.run(
            [CLI, "serve", "--port", "0"],
            env={**gateway_env(tmp_path, "missing", missing), "PATH": os.environ.get("PATH", "")},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert done.returncode == 1, done.stderr
    assert done.stderr.strip() == (
        f"mcp-gateway: cannot connect to Postgres: "
        f'InvalidCatalogNameError: database "{name}_missing" does '
        "not exist"
    ), done.stderr
