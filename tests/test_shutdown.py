"""SIGTERM on a real `mcp-gateway serve` process.

Readiness turns 503 first, while the listener is still open (load balancers drain it; requests
that still arrive are served); after MCPGW_SHUTDOWN_GRACE_S the listener closes; requests in
flight finish (a testUrl call with a fixture latency of 1.5 s and a slow callUrl call, both
started before the signal, answer 200); the pools close (the upstream session is ended with
DELETE; nothing unclosed); the exit code is 0, in bounded time. A second signal skips the grace.
"""

from __future__ import annotations

import asyncio
import signal
import time

import aiohttp
import pytest
from faults import (
    TOOLS,
    Client,
    RedisServer,
    fresh_database,
    http_session,
    log_of,
    start_gateway,
    stop_gateway,
)
from mcp_stub import StubUpstream

from settings_api.config import ConfigError, load_settings

pytestmark = pytest.mark.slow

GRACE_S = 1.0


async def probe(url: str) -> int | str:
    """GET /readyz on a new connection: its status, or "refused" once the listener is gone."""
    try:
        async with aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(force_close=True), timeout=aiohttp.ClientTimeout(total=2)
        ) as http:
            async with http.get(url + "/readyz") as r:
                return r.status
    except aiohttp.ClientConnectionError:
        return "refused"


async def wait_exit(proc, timeout_s: float) -> int:
    return await asyncio.to_thread(proc.proc.wait, timeout_s)


async def test_sigterm_drains_readiness_then_finishes_in_flight_requests(
    tmp_path, aiohttp_server
) -> None:
    stub = StubUpstream(tools=TOOLS, mode="slow", delay_s=1.5, fail_on={"tools/call"})
    upstream_url = str((await aiohttp_server(stub.app())).make_url("/mcp"))
    redis_server = RedisServer(tmp_path).start()
    with fresh_database() as (_, database_url):
        proc = await start_gateway(
            tmp_path,
            "gw",
            database_url,
            MCPGW_REDIS_URL=redis_server.url,
            MCPGW_SHUTDOWN_GRACE_S=str(GRACE_S),
            MCPGW_UPSTREAM_TIMEOUT_S="10",
        )
        try:
            async with http_session() as http:
                gw = Client(http, proc)
                key = await gw.enable(upstream_url)
                await gw.settings(
                    "PUT",
                    "/mcp/simulator/fixtures/search_contacts",
                    json={
                        "rules": [
                            {
                                "match": {},
                                "latencyMs": 1500,
                                "result": {"content": [{"type": "text", "text": "slow but sure"}]},
                            }
                        ]
                    },
                )
                test_session = await gw.initialize(key, url="test")
                call_session = await gw.initialize(key, url="call")
                assert (await probe(proc.url)) == 200

                started = time.monotonic()
                in_flight = [
                    asyncio.create_task(gw.call_tool(key, test_session, url="test")),
                    asyncio.create_task(gw.call_tool(key, call_session, url="call")),
                ]
                await asyncio.sleep(0.3)  # both are being worked on now
                assert not any(task.done() for task in in_flight)
                signalled = time.monotonic()
                proc.proc.send_signal(signal.SIGTERM)

                seen: list[int | str] = []
                served_while_draining = None
                while proc.proc.poll() is None and time.monotonic() - signalled < 10:
                    seen.append(await probe(proc.url))
                    if seen[-1] == 503 and served_while_draining is None:
                        # Not ready, yet still serving what arrives.
                        served_while_draining = (await gw.list_tools(key, call_session))[0]
                    if seen[-1] == "refused":
                        break
                    await asyncio.sleep(0.05)

                # Readiness went 503 while the listener was still open, then it closed.
                first_503 = seen.index(503)
                assert set(seen[:first_503]) <= {200}, seen
                assert seen[first_503:].count(503) >= 5, seen  # about GRACE_S of them
                assert seen[-1] == "refused" and set(seen[first_503:-1]) == {503}, seen
                assert served_while_draining == 200

                # The calls in flight before the signal completed normally.
                (status_t, _, body_t), (status_c, _, body_c) = await asyncio.gather(*in_flight)
                assert status_t == 200, body_t
                assert body_t["result"]["content"][0]["text"] == "slow but sure", body_t
                assert status_c == 200 and body_c["result"]["isError"] is False, body_c
                assert time.monotonic() - started >= 1.5

                code = await wait_exit(proc, 10)
                took = time.monotonic() - signalled
                assert code == 0, log_of(proc)
                # Grace, then the in-flight calls' remaining second or so, then cleanup.
                assert GRACE_S <= took < GRACE_S + 3.0, took
            # The pools closed: the upstream session was ended, nothing left unclosed.
            assert stub.calls["DELETE"] == 1 and len(stub.ended_sessions) == 1
            text = log_of(proc)
            for bad in ("Unclosed", "Task was destroyed", "Traceback", "Error handling request"):
                assert bad not in text, text
            assert "SIGTERM: not ready any more" in text
        finally:
            assert await stop_gateway(proc) == 0, log_of(proc)
            redis_server.stop()


async def test_second_signal_skips_the_grace(tmp_path) -> None:
    # A grace far longer than the bounds below: a second signal ends the wait at once, and an
    # exit within the bounds cannot be the grace running out on a busy machine.
    proc = await start_gateway(
        tmp_path, "gw", f"sqlite:///{tmp_path / 'gw.db'}", MCPGW_SHUTDOWN_GRACE_S="30"
    )
    try:
        proc.proc.send_signal(signal.SIGTERM)

        async def draining() -> bool:
            return (await probe(proc.url)) == 503

        started = time.monotonic()
        while not await draining():
            assert time.monotonic() - started < 2
            await asyncio.sleep(0.02)
        signalled = time.monotonic()
        proc.proc.send_signal(signal.SIGINT)
        assert await wait_exit(proc, 10) == 0, log_of(proc)
        assert time.monotonic() - signalled < 5.0  # the 30 s grace was cut short
    finally:
        assert await stop_gateway(proc) == 0, log_of(proc)


def test_shutdown_grace_is_validated(tmp_path) -> None:
    base = {"MCPGW_DATA_DIR": str(tmp_path / "data")}
    assert load_settings(base).shutdown_grace_s == 2.0
    assert load_settings({**base, "MCPGW_SHUTDOWN_GRACE_S": "0"}).shutdown_grace_s == 0.0
    with pytest.raises(ConfigError, match="MCPGW_SHUTDOWN_GRACE_S"):
        load_settings({**base, "MCPGW_SHUTDOWN_GRACE_S": "-1"})
