"""Two gateway replicas on a real Redis Cluster (3 masters, 1 replica each) and on a real
Sentinel set (1 master, 1 replica, 3 sentinels), all on loopback: one bucket across replicas,
revocation across replicas, and a master killed under load: no 5xx, local buckets meanwhile
(`MCPGW_RATE_LIMIT_FAILURE_MODE=open`), the shared bucket again soon after the promotion.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
import pytest
from faults import Client, start_gateway, stop_gateway
from mcp_helpers import rate_limited_data
from polling import until
from processes import GatewayProcess
from redis_topologies import Cluster, SentinelSet

pytestmark = pytest.mark.slow

CALL_BURST = 4
# Large enough that the load during a failover never empties it: the request bucket is read
# through `RateLimit-Remaining` to tell a shared bucket from per-replica ones.
REQUEST_BURST = 100_000
LIMITS = {
    "MCPGW_RATE_LIMIT_BURST": str(CALL_BURST),
    "MCPGW_RATE_LIMIT_RPS": "0.001",
    "MCPGW_REQUEST_LIMIT_BURST": str(REQUEST_BURST),
    "MCPGW_REQUEST_LIMIT_RPS": "0.001",
    "MCPGW_RATE_LIMIT_FAILURE_MODE": "open",
}
# How long a killed master may take to be replaced and found again by both replicas.
RECOVERY_S = 15.0


async def start_replicas(tmp_path: Path, database_url: str, **env: str) -> list[GatewayProcess]:
    return list(
        await asyncio.gather(
            *(start_gateway(tmp_path, name, database_url, **LIMITS, **env) for name in "ab")
        )
    )


async def one_bucket(
    a: Client, b: Client, key: str, session: str, statuses: list[int] | None = None
) -> bool:
    """Whether a, b, a each took the next token of one bucket (per-replica buckets count apart;
    nothing else may use the key meanwhile). The answers' statuses go to `statuses`."""
    remaining = []
    for replica in (a, b, a):
        status, headers, _ = await replica.list_tools(key, session)
        if statuses is not None:
            statuses.append(status)
        if status != 200:
            return False
        remaining.append(int(headers["RateLimit-Remaining"]))
    return remaining[1] == remaining[0] - 1 and remaining[2] == remaining[1] - 1


async def call_limit_is_shared(a: Client, b: Client, key: str) -> None:
    """CALL_BURST tools/calls pass across both replicas, then each replica refuses the next."""
    sessions = {id(r): await r.initialize(key, url="test") for r in (a, b)}
    for index in range(CALL_BURST):
        replica = (a, b)[index % 2]
        status, _, body = await replica.call_tool(key, sessions[id(replica)], url="test")
        assert status == 200 and body["result"]["isError"] is False, body
    for replica in (a, b):
        rate_limited_data(*await replica.call_tool(key, sessions[id(replica)], url="test"))


async def survive_failover(
    a: Client, b: Client, key: str, kill: Callable[[], None], promoted: Callable[[], None]
) -> None:
    """Kill the master under load until the promotion: every answer is below 500, and the
    replicas share one bucket again within RECOVERY_S."""
    session = await a.initialize(key)
    assert await one_bucket(a, b, key, session)
    statuses: list[int] = []
    stop = asyncio.Event()

    async def load() -> None:
        while not stop.is_set():
            for replica in (a, b):
                try:
                    status, _, _ = await replica.list_tools(key, session)
                except (aiohttp.ClientError, TimeoutError) as exc:
                    raise AssertionError(f"no answer during the failover: {exc!r}") from exc
                statuses.append(status)
            await asyncio.sleep(0.01)

    loading = asyncio.create_task(load())
    try:
        await asyncio.sleep(0.3)
        kill()
        await asyncio.to_thread(promoted)
    finally:
        stop.set()
        await loading
    await until(
        lambda: one_bucket(a, b, key, session, statuses), timeout_s=RECOVERY_S, interval_s=0.2
    )
    assert statuses and max(statuses) < 500, sorted(set(statuses))


async def revocation_reaches_other_replica(a: Client, b: Client) -> str:
    """Rotate on a: b refuses the old key within a second. The new key."""
    old_key = await a.enable()
    session = await b.initialize(old_key)  # warms b's cache with the old key
    assert (await b.list_tools(old_key, session))[0] == 200
    new_key = (await a.settings("POST", "/mcp:rotateKey"))["apiKey"]

    async def refused_on_b() -> bool:
        return (await b.list_tools(old_key, session))[0] == 401

    assert await until(refused_on_b, timeout_s=1.0) < 1.0
    return str(new_key)


async def run_replicas(
    tmp_path: Path, database_url: str, env: dict[str, str], body: Callable[..., Awaitable[None]]
) -> None:
    procs = await start_replicas(tmp_path, database_url, **env)
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=20)) as http:
            await body(*(Client(http, proc) for proc in procs))
    except BaseException:
        for proc in procs:
            lines = [line for line in proc.log().splitlines() if "mcp_gateway.access" not in line]
            print(f"--- {proc.log_path.name}", *lines[-40:], sep="\n")
        raise
    finally:
        await asyncio.gather(*(stop_gateway(proc) for proc in procs))


async def test_cluster_mode_shares_limits_revocations_and_survives_a_master_loss(
    tmp_path: Path, fresh_pg_url: str
) -> None:
    cluster = await asyncio.to_thread(Cluster(tmp_path).start)
    try:
        env = {"MCPGW_REDIS_MODE": "cluster", "MCPGW_REDIS_URL": cluster.seeds}

        async def body(a: Client, b: Client) -> None:
            key = await revocation_reaches_other_replica(a, b)
            cluster.flush_scripts()  # the limiter loads its script again, on every master
            await call_limit_is_shared(a, b, key)
            # Only the new key made tools/calls: its slot is the one with a call bucket.
            owner = cluster.master_of("mcpgw:rl:*:call")
            await survive_failover(
                a,
                b,
                key,
                kill=lambda: owner.kill(signal.SIGKILL),
                promoted=lambda: cluster.wait_promoted(owner),
            )

        await run_replicas(tmp_path, fresh_pg_url, env, body)
    finally:
        cluster.stop()


async def test_sentinel_mode_shares_limits_and_follows_a_failover(
    tmp_path: Path, fresh_pg_url: str
) -> None:
    sentinels = await asyncio.to_thread(SentinelSet(tmp_path).start)
    try:
        env = {
            "MCPGW_REDIS_MODE": "sentinel",
            "MCPGW_REDIS_URL": sentinels.urls,
            "MCPGW_REDIS_SENTINEL_MASTER": sentinels.name,
        }

        async def body(a: Client, b: Client) -> None:
            key = await a.enable()
            await call_limit_is_shared(a, b, key)
            await survive_failover(
                a,
                b,
                key,
                kill=lambda: sentinels.master.kill(signal.SIGKILL),
                promoted=sentinels.wait_promoted,
            )

        await run_replicas(tmp_path, fresh_pg_url, env, body)
    finally:
        sentinels.stop()
