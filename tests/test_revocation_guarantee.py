"""Revocation does not depend on a change message getting through (issue #18, item 6).

After rotateKey, disabling or deleting answers 2xx, no replica accepts the old key (or serves
the disabled integration) for more than about 2 s, whatever happened to the change message.
When that cannot be promised, the settings API answers 503 and the replicas still agree:

- Redis refuses writes before the change: 503 `change-feed-unavailable`, nothing changed;
- the change message is lost after the commit: 503 `change-not-confirmed` carrying the new
  key; the message is re-sent until Redis takes it, and every replica refuses the old key
  within about 2 s of Redis working again.

Each test runs two real `mcp-gateway serve` processes on a fresh Postgres database and a
private `redis-server` (so pausing it affects no other test), some of their Redis connections
through tests/tcp_proxy.py. Everything is on 127.0.0.1 and bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path

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
from polling import until
from processes import GatewayProcess
from tcp_proxy import TcpProxy

pytestmark = pytest.mark.slow

PROBLEMS = "https://mcp-gateway.dev/problems/"
# The guarantee under test, with the polling granularity of a loaded test machine on top.
REFUSED_WITHIN_S = 2.0
ENV = {"MCPGW_STORE_TIMEOUT_S": "1", "MCPGW_RATE_LIMIT_FAILURE_MODE": "open"}


@contextlib.asynccontextmanager
async def replicas(
    tmp_path: Path, redis_a: str, redis_b: str
) -> AsyncIterator[tuple[GatewayProcess, GatewayProcess]]:
    """Replicas a and b on one fresh database, each with its own Redis URL."""
    with fresh_database() as (_, database_url):
        a, b = await asyncio.gather(
            start_gateway(tmp_path, "a", database_url, MCPGW_REDIS_URL=redis_a, **ENV),
            start_gateway(tmp_path, "b", database_url, MCPGW_REDIS_URL=redis_b, **ENV),
        )
        try:
            yield a, b
        finally:
            for proc in (a, b):
                await stop_gateway(proc)


async def refused(client: Client, key: str, session: str) -> bool:
    status, _, body = await client.list_tools(key, session)
    return status == 401 and body["reason"] == "revoked"


async def served(client: Client, key: str, session: str) -> bool:
    return (await client.list_tools(key, session))[0] == 200


async def writes_accepted(url: str) -> None:
    """Wait until the server takes a PUBLISH again (a CLIENT PAUSE ... WRITE ended)."""
    client = redis.from_url(url)
    try:
        async with asyncio.timeout(10):
            await client.publish("test:writable", "")
    finally:
        await client.aclose()


async def test_rotation_and_disabling_while_redis_refuses_writes_answer_503_and_change_nothing(
    tmp_path,
) -> None:
    """Redis pauses writes (`CLIENT PAUSE ... WRITE` on a private server, lifted by the test
    after at most 10 s): rotateKey, a disabling PATCH and deleting the integration answer 503
    within about a second instead of 200, and nothing changed: the old key works on both
    replicas. A change that takes nothing away still answers 200, in about a second. Once
    writes are back, the rotation goes through and the other replica refuses the old key at
    once."""
    server = RedisServer(tmp_path).start()
    try:
        async with (
            replicas(tmp_path, server.url, server.url) as (a_proc, b_proc),
            http_session() as http,
        ):
            a, b = Client(http, a_proc), Client(http, b_proc)
            old_key = await a.enable()
            before = await a.settings("GET", "/mcp")
            session_b = await b.initialize(old_key)
            assert await served(b, old_key, session_b)  # b has the old key warm

            pauser = redis.from_url(server.url)
            try:
                await pauser.execute_command("CLIENT", "PAUSE", 10_000, "WRITE")
                started = time.monotonic()
                status, headers, body = await a.raw_settings("POST", "/mcp:rotateKey")
                rotate_s = time.monotonic() - started
                assert status == 503, (status, body)
                assert body["type"] == PROBLEMS + "change-feed-unavailable", body
                assert "nothing was changed" in body["detail"]
                assert "apiKey" not in body and int(headers["Retry-After"]) >= 1
                assert rotate_s < 1.8, f"503 took {rotate_s:.2f} s"

                status, _, body = await a.raw_settings("PATCH", "/mcp", json={"enabled": False})
                assert status == 503, (status, body)
                assert body["type"] == PROBLEMS + "change-feed-unavailable", body
                status, _, body = await a.raw_settings("DELETE")
                assert status == 503, (status, body)
                assert body["type"] == PROBLEMS + "change-feed-unavailable", body

                # A change that takes nothing away is not held up: saved, answered in ~1 s.
                started = time.monotonic()
                status, _, body = await a.raw_settings(
                    "PATCH", "/mcp", json={"description": "written during the pause"}
                )
                assert status == 200 and body["enabled"], (status, body)
                assert time.monotonic() - started < 1.8

                # Nothing revoked, anywhere: same key id, still enabled, old key served.
                assert (await a.settings("GET"))["name"] == "CRM"
                after = await a.settings("GET", "/mcp")
                assert (after["apiKeyId"], after["enabled"]) == (before["apiKeyId"], True)
                assert await served(b, old_key, session_b)
                assert await served(a, old_key, await a.initialize(old_key))
            finally:
                await pauser.execute_command("CLIENT", "UNPAUSE")
                await writes_accepted(server.url)
                await pauser.aclose()

            status, _, rotated = await a.raw_settings("POST", "/mcp:rotateKey")
            assert status == 200, rotated
            took = await until(lambda: refused(b, old_key, session_b), timeout_s=1.0)
            assert took < 1.0
            new_session = await b.initialize(rotated["apiKey"])
            assert await served(b, rotated["apiKey"], new_session)
    finally:
        server.stop()


async def test_a_replica_that_stops_hearing_the_feed_refuses_a_rotated_key_within_2_s(
    tmp_path,
) -> None:
    """Replica b's Redis connections freeze (a proxy stops relaying, nothing is closed): the
    rotation's message reaches Redis (200) but never b. b notices its heartbeats stopped and
    stops trusting its cache: the old key is refused within 2 s of the 200, and a disabling
    is honoured within 2 s too, all while b still hears nothing."""
    server = RedisServer(tmp_path).start()
    proxy = TcpProxy(server.port).start()
    try:
        async with (
            replicas(tmp_path, server.url, f"redis://127.0.0.1:{proxy.port}/0") as (a_proc, b_proc),
            http_session() as http,
        ):
            a, b = Client(http, a_proc), Client(http, b_proc)
            old_key = await a.enable()
            session_b = await b.initialize(old_key)
            assert await served(b, old_key, session_b)

            proxy.blackhole(drop_existing=False)  # b's subscription stays open, silent
            status, _, rotated = await a.raw_settings("POST", "/mcp:rotateKey")
            answered = time.monotonic()
            assert status == 200, rotated
            await until(lambda: refused(b, old_key, session_b), timeout_s=3.0)
            took = time.monotonic() - answered
            assert took < REFUSED_WITHIN_S, f"b accepted the old key {took:.2f} s after 200"

            new_key = rotated["apiKey"]
            session_new = await b.initialize(new_key)
            assert await served(b, new_key, session_new)
            await a.settings("PATCH", "/mcp", json={"enabled": False})
            answered = time.monotonic()

            async def disabled_on_b() -> bool:
                status, _, body = await b.list_tools(new_key, session_new)
                return status == 403 and body["type"] == PROBLEMS + "mcp-disabled"

            await until(disabled_on_b, timeout_s=3.0)
            took = time.monotonic() - answered
            assert took < REFUSED_WITHIN_S, f"b served a disabled integration {took:.2f} s"
            assert "no heartbeat" in log_of(b_proc)
    finally:
        proxy.close()
        server.stop()


async def test_a_rotation_whose_message_is_lost_answers_503_with_the_new_key_and_replicas_agree(
    tmp_path,
) -> None:
    """Replica a's Redis link drops exactly when it publishes the rotation (after the commit):
    rotateKey answers 503 `change-not-confirmed` carrying the new key, which works everywhere.
    When a's link is back, a re-sends the change and b refuses the old key within 2 s."""
    server = RedisServer(tmp_path).start()
    proxy = TcpProxy(server.port).start()
    try:
        async with (
            replicas(tmp_path, f"redis://127.0.0.1:{proxy.port}/0", server.url) as (a_proc, b_proc),
            http_session() as http,
        ):
            a, b = Client(http, a_proc), Client(http, b_proc)
            old_key = await a.enable()
            session_b = await b.initialize(old_key)
            assert await served(b, old_key, session_b)

            proxy.refuse_before(b'"i":"crm"')  # the change message, not a heartbeat
            status, headers, body = await a.raw_settings("POST", "/mcp:rotateKey")
            assert proxy.trapped
            assert status == 503, (status, body)
            assert body["type"] == PROBLEMS + "change-not-confirmed", body
            assert int(headers["Retry-After"]) >= 1
            new_key = body["apiKey"]
            assert (await a.settings("GET", "/mcp"))["apiKeyId"] == body["apiKeyId"]
            session_new = await b.initialize(new_key)
            assert await served(b, new_key, session_new)
            assert await refused(a, old_key, session_b)  # a applied it before answering

            back = time.monotonic()
            proxy.forward()
            await until(lambda: refused(b, old_key, session_b), timeout_s=3.0)
            took = time.monotonic() - back
            assert took < REFUSED_WITHIN_S, f"b accepted the old key {took:.2f} s after recovery"

            async def resent() -> bool:
                return "re-sent 1 change(s)" in log_of(a_proc)

            await until(resent, timeout_s=1.0)
            for key in (old_key, new_key):  # the 503 carried a key: never into the logs
                assert key not in log_of(a_proc) and key not in log_of(b_proc)
    finally:
        proxy.close()
        server.stop()
