"""Redis stopped under traffic, with real gateway processes and a private redis-server.

- failure mode `open`: no MCP request fails while Redis is away; the local buckets keep
  limiting (a burst is refused); a rotation is refused (503, nothing changed) while the change
  feed cannot carry it, and goes through once Redis is back
  (tests/test_revocation_guarantee.py has the rest); /readyz says redis is unreachable (503)
  and recovers.
- failure mode `closed`: 503 problem+json with Retry-After, quickly; recovery without restart.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
import redis.asyncio as redis
from faults import (
    Client,
    RedisServer,
    fresh_database,
    http_session,
    log_of,
    start_gateway,
    stop_gateway,
)
from mcp_helpers import rate_limited_data
from polling import until

pytestmark = pytest.mark.slow

SUBSCRIBED = "listening for changes on mcpgw:changes"


async def test_redis_outage_fail_open_serves_limits_locally_and_recovers(tmp_path) -> None:
    server = RedisServer(tmp_path).start()
    env = {
        "MCPGW_REDIS_URL": server.url,
        "MCPGW_RATE_LIMIT_FAILURE_MODE": "open",
        "MCPGW_RATE_LIMIT_BURST": "5",
        "MCPGW_RATE_LIMIT_RPS": "0.5",
        "MCPGW_STORE_TIMEOUT_S": "1",
    }
    with fresh_database() as (_, database_url):
        a_proc = await start_gateway(tmp_path, "a", database_url, **env)
        b_proc = await start_gateway(tmp_path, "b", database_url, **env)
        try:
            async with http_session() as http:
                a, b = Client(http, a_proc), Client(http, b_proc)
                traffic_a = Client(http, a_proc, integration="traffic")
                traffic_b = Client(http, b_proc, integration="traffic")
                traffic_key = await traffic_a.enable()
                key1 = await a.enable()
                sessions = {
                    id(traffic_a): await traffic_a.initialize(traffic_key),
                    id(traffic_b): await traffic_b.initialize(traffic_key),
                }
                crm_session = await b.initialize(key1)
                assert (await b.list_tools(key1, crm_session))[0] == 200  # b has key1 warm

                # Steady traffic on both replicas for the whole outage.
                statuses: list[int] = []
                stop = asyncio.Event()

                async def traffic() -> None:
                    while not stop.is_set():
                        for client in (traffic_a, traffic_b):
                            status, _, body = await client.list_tools(
                                traffic_key, sessions[id(client)]
                            )
                            statuses.append(status)
                            assert status == 200, (status, body)
                        await asyncio.sleep(0.02)

                runner = asyncio.create_task(traffic())
                await asyncio.sleep(0.3)
                server.kill()
                await asyncio.sleep(0.5)

                # /readyz names Redis as the failing dependency.
                status, body = await a.readyz()
                assert status == 503 and body["checks"]["redis"] == "unreachable", body
                assert body["checks"]["store"] == "ok"

                # The local bucket still limits: a burst of tools/call past the burst of 5.
                burst = [
                    (await traffic_a.call_tool(traffic_key, sessions[id(traffic_a)], url="test"))
                    for _ in range(8)
                ]
                assert [s for s, _, _ in burst] == [200] * 8, burst
                assert [bool(b["result"].get("isError")) for _, _, b in burst] == [False] * 5 + [
                    True
                ] * 3
                for status, headers, body in burst[5:]:
                    rate_limited_data(status, headers, body)

                # A rotation while the change feed is down is refused, quickly: b could not
                # be told of it. Nothing changed: key1 still works on b.
                started = time.monotonic()
                status, _, body = await a.raw_settings("POST", "/mcp:rotateKey")
                rotate_s = time.monotonic() - started
                assert status == 503 and body["type"].endswith("/change-feed-unavailable"), body
                assert rotate_s < 1.5, f"rotation took {rotate_s:.2f} s with Redis down"
                assert (await b.list_tools(key1, crm_session))[0] == 200
                assert log_of(b_proc).count(SUBSCRIBED) == 1

                server.start()

                async def resubscribed() -> bool:
                    return log_of(b_proc).count(SUBSCRIBED) >= 2

                await until(resubscribed, timeout_s=2.0)
                # a's own publisher may need a moment to reconnect: until then a rotation is
                # refused with nothing changed, which is the promise, so retry as a client would.
                rotated: dict[str, Any] = {}

                async def rotation_taken() -> bool:
                    status, _, body = await a.raw_settings("POST", "/mcp:rotateKey")
                    if status == 503 and body["type"].endswith("/change-feed-unavailable"):
                        return False
                    assert status == 200, (status, body)
                    rotated.update(body)
                    return True

                await until(rotation_taken, timeout_s=2.0, interval_s=0.1)
                key2 = rotated["apiKey"]

                async def key1_refused_on_b() -> bool:
                    status, _, body = await b.list_tools(key1, crm_session)
                    return status == 401 and body["reason"] == "revoked"

                # Within a second of the rotation's 200, whatever the outage did to the feed.
                await until(key1_refused_on_b, timeout_s=1.0)
                session2 = await b.initialize(key2)
                assert (await b.list_tools(key2, session2))[0] == 200

                async def ready() -> bool:
                    return (await a.readyz())[0] == 200

                await until(ready, timeout_s=2.0)
                await asyncio.sleep(0.3)
                stop.set()
                await runner
                assert len(statuses) > 40 and set(statuses) == {200}

                # The limiter is back on Redis: the buckets live in the restarted server.
                client = redis.from_url(server.url)
                try:
                    assert await client.keys("mcpgw:rl:*")
                finally:
                    await client.aclose()
                assert "rate limiter: Redis answers again" in log_of(a_proc)
        finally:
            for proc in (a_proc, b_proc):
                assert await stop_gateway(proc) == 0, log_of(proc)
            server.stop()


async def test_redis_outage_fail_closed_answers_503_and_recovers(tmp_path) -> None:
    server = RedisServer(tmp_path).start()
    with fresh_database() as (_, database_url):
        proc = await start_gateway(
            tmp_path,
            "closed",
            database_url,
            MCPGW_REDIS_URL=server.url,
            MCPGW_RATE_LIMIT_FAILURE_MODE="closed",
            MCPGW_STORE_TIMEOUT_S="1",
        )
        try:
            async with http_session() as http:
                gw = Client(http, proc)
                key = await gw.enable()
                session = await gw.initialize(key)
                assert (await gw.list_tools(key, session))[0] == 200

                server.kill()
                for _ in range(5):
                    started = time.monotonic()
                    status, headers, body = await gw.list_tools(key, session)
                    assert time.monotonic() - started < 1.5
                    assert status == 503, (status, body)
                    assert headers["Content-Type"].startswith("application/problem+json")
                    assert int(headers["Retry-After"]) >= 1
                    assert body["status"] == 503 and "rate limiter" in body["detail"]
                status, body = await gw.readyz()
                assert status == 503 and body["checks"]["redis"] == "unreachable"

                server.start()

                async def served() -> bool:
                    return (await gw.list_tools(key, session))[0] == 200

                await until(served, timeout_s=3.0)
                assert (await gw.readyz())[0] == 200
        finally:
            assert await stop_gateway(proc) == 0, log_of(proc)
            server.stop()
