"""The tool-call log across live `mcp-gateway` processes: two replicas on one store (a shared
SQLite file, then Postgres) and one Redis see each other's calls within 2 s; the retention
delete removes old calls, one replica at a time; a Postgres outage drops calls (counted in
/metrics) without failing one."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from faults import (
    PG_PORT,
    Client,
    fresh_database,
    http_session,
    log_of,
    start_gateway,
    start_replicas,
    stop_gateway,
    via_port,
)
from mcp_stub import StubUpstream
from polling import until
from processes import GatewayProcess
from tcp_proxy import TcpProxy

from settings_api.store import ToolCall, create_store
from settings_api.use_cases.call_log import RETENTION_JOB
from settings_api.use_cases.store_access import now_ms

pytestmark = pytest.mark.slow

TOOLS = [
    {
        "name": "search_contacts",
        "inputSchema": {"type": "object", "properties": {"query": {"type": "string"}}},
    },
    # Exposed, but unknown to the stub upstream: its -32602 is relayed, an `error`.
    {"name": "create_contact", "inputSchema": {"type": "object"}},
]
DAY_MS = 86_400_000


async def post(
    client: Client,
    key: str,
    body: Any,
    *,
    url: str,
    session: str,
    run_id: str | None = None,
) -> tuple[int, Any]:
    headers = client.headers(key, session)
    if run_id is not None:
        headers["X-Run-Id"] = run_id
    async with client.http.post(f"{client.api}/mcp:{url}", json=body, headers=headers) as resp:
        return resp.status, await resp.json(content_type=None)


def call(tool: str, arguments: dict[str, Any]) -> dict[str, Any]:
    return {
        "jsonrpc": "2.0",
        "id": 7,
        "method": "tools/call",
        "params": {"name": tool, "arguments": arguments},
    }


async def calls_of(client: Client, query: str = "") -> list[dict[str, Any]]:
    page = await client.settings("GET", f"/mcp/calls{query}")
    return page["calls"]  # type: ignore[no-any-return]


@pytest.fixture
async def replicas(tmp_path: Path, fresh_database_url: str) -> AsyncIterator[list[GatewayProcess]]:
    # Burst 5, hardly any refill: the sixth tools/call of the key, on either replica, is limited.
    async with start_replicas(
        tmp_path, fresh_database_url, MCPGW_RATE_LIMIT_BURST="5", MCPGW_RATE_LIMIT_RPS="0.001"
    ) as procs:
        yield procs


async def test_every_replica_sees_every_call_within_two_seconds(
    replicas: list[GatewayProcess], http: aiohttp.ClientSession, aiohttp_server: Any
) -> None:
    stub = StubUpstream(tools=TOOLS[:1])
    upstream = await aiohttp_server(stub.app())
    a, b = (Client(http, proc) for proc in replicas)
    key = await a.enable(str(upstream.make_url("/mcp")), TOOLS)
    key_id = (await b.settings("GET", "/mcp"))["apiKeyId"]
    call_a, test_b = await a.initialize(key, "call"), await b.initialize(key, "test")

    status, body = await post(
        a, key, call("search_contacts", {"query": "ada"}), url="call", session=call_a, run_id="r1"
    )
    assert status == 200 and body["result"]["isError"] is False, body
    status, body = await post(a, key, call("create_contact", {}), url="call", session=call_a)
    assert body["error"]["code"] == -32602, body  # the upstream's, relayed
    status, body = await post(
        b, key, call("search_contacts", {"query": "Ünï"}), url="test", session=test_b, run_id="r1"
    )
    assert status == 200 and "result" in body, body
    status, body = await post(b, key, call("drop_tables", {}), url="test", session=test_b)
    assert body["error"]["code"] == -32602, body  # not exposed: denied by the gateway
    status, body = await post(a, key, call("search_contacts", {}), url="test", session=test_b)
    assert status == 200 and "result" in body, body
    status, body = await post(
        b, key, call("search_contacts", {"query": "six"}), url="test", session=test_b
    )
    assert body["result"]["isError"] is True, body  # the shared bucket is empty

    expected = [
        ("test", "search_contacts", "rate_limited"),
        ("test", "search_contacts", "ok"),
        ("test", "drop_tables", "denied"),
        ("test", "search_contacts", "ok"),
        ("call", "create_contact", "error"),
        ("call", "search_contacts", "ok"),
    ]

    async def both_see_everything() -> bool:
        seen = [await calls_of(replica) for replica in (a, b)]
        return all([(c["url"], c["tool"], c["outcome"]) for c in s] == expected for s in seen)

    await until(both_see_everything, timeout_s=2.0, interval_s=0.1)
    calls = await calls_of(b)
    assert {c["apiKeyId"] for c in calls} == {key_id}
    assert len({c["requestId"] for c in calls}) == 6
    by_run = await calls_of(a, "?runId=r1")
    assert [(c["url"], c["runId"]) for c in by_run] == [("test", "r1"), ("call", "r1")]
    assert by_run[0]["arguments"] == {"query": "Ünï"}
    assert "arguments" not in by_run[1] and len(by_run[1]["argumentsSha256"]) == 64
    page = await a.settings("GET", "/mcp/calls?limit=3&url=test")
    rest = await b.settings("GET", f"/mcp/calls?limit=3&url=test&cursor={page['nextCursor']}")
    assert [c["outcome"] for c in page["calls"] + rest["calls"]] == [
        "rate_limited",
        "ok",
        "denied",
        "ok",
    ]
    assert rest["nextCursor"] is None


def old_and_recent(at: int) -> list[ToolCall]:
    def entry(age_days: float, run: str) -> ToolCall:
        return ToolCall(
            "acme",
            "crm",
            at - int(age_days * DAY_MS),
            "test",
            "k",
            "t",
            "ok",
            1,
            None,
            run,
            "h",
            "{}",
        )

    return [entry(30, "old"), entry(7.5, "old"), entry(6.5, "recent"), entry(0.1, "recent")]


async def seed(database_url: str, calls: list[ToolCall]) -> None:
    store = create_store(database_url)
    await store.open()
    try:
        await store.migrate()
        async with store.transaction() as tx:
            await tx.insert_calls(calls)
    finally:
        await store.close()


async def test_retention_deletes_calls_older_than_the_setting(
    tmp_path: Path, fresh_database_url: str, http: aiohttp.ClientSession
) -> None:
    await seed(fresh_database_url, old_and_recent(now_ms()))
    async with start_replicas(
        tmp_path, fresh_database_url, MCPGW_CALL_LOG_RETENTION_DAYS="7"
    ) as procs:
        a = Client(http, procs[0])
        await a.settings("PUT", json={"name": "CRM"})

        async def only_recent_left() -> bool:
            return {c["runId"] for c in await calls_of(a)} == {"recent"}

        await until(only_recent_left, timeout_s=10.0, interval_s=0.2)
        assert len(await calls_of(a)) == 2


async def test_retention_runs_on_one_replica_at_a_time(pg_database_url: str) -> None:
    """A replica that finds the retention lock held leaves the round to its holder."""
    await seed(pg_database_url, old_and_recent(now_ms()))
    holder, other = create_store(pg_database_url), create_store(pg_database_url)
    await holder.open()
    await other.open()
    try:
        async with holder.transaction() as tx:
            assert await tx.try_job_lock(RETENTION_JOB)
            async with other.transaction() as busy:
                assert not await busy.try_job_lock(RETENTION_JOB)
        async with other.transaction() as tx:  # released at the holder's commit
            assert await tx.try_job_lock(RETENTION_JOB)
            assert await tx.delete_calls_before(now_ms() - 7 * DAY_MS, 100) == 2
    finally:
        await holder.close()
        await other.close()


async def test_a_postgres_outage_drops_calls_without_failing_them(tmp_path: Path) -> None:
    with fresh_database() as (_, database_url), TcpProxy(PG_PORT) as proxy:
        proc = await start_gateway(
            tmp_path, "pg", via_port(database_url, proxy.port), MCPGW_STORE_TIMEOUT_S="1"
        )
        try:
            async with http_session() as http:
                gw = Client(http, proc)
                key = await gw.enable()
                session = await gw.initialize(key, "test")
                args = {"query": "before"}
                status, _ = await post(
                    gw, key, call("search_contacts", args), url="test", session=session
                )
                assert status == 200
                await until(lambda: _has_calls(gw, 1), timeout_s=2.0, interval_s=0.1)

                proxy.refuse()
                for index in range(3):
                    status, body = await post(
                        gw,
                        key,
                        call("search_contacts", {"query": f"during {index}"}),
                        url="test",
                        session=session,
                    )
                    assert status == 200 and body["result"]["isError"] is False, body

                async def dropped() -> bool:
                    return await _dropped(http, proc) >= 3

                await until(dropped, timeout_s=10.0, interval_s=0.2)
                proxy.forward()
                status, _ = await post(
                    gw,
                    key,
                    call("search_contacts", {"query": "after"}),
                    url="test",
                    session=session,
                )
                assert status == 200
                await until(lambda: _has_calls(gw, 2), timeout_s=10.0, interval_s=0.2)
                queries = [c["arguments"]["query"] for c in await calls_of(gw)]
                assert queries == ["after", "before"]
        finally:
            assert await stop_gateway(proc) == 0, log_of(proc)
        assert "Traceback" not in log_of(proc)


async def _has_calls(client: Client, count: int) -> bool:
    status, _, body = await client.raw_settings("GET", "/mcp/calls")
    return status == 200 and len(body["calls"]) >= count


async def _dropped(http: aiohttp.ClientSession, proc: GatewayProcess) -> float:
    async with http.get(proc.url + "/metrics") as resp:
        text = await resp.text()
    for line in text.splitlines():
        if line.startswith('mcpgw_call_log_dropped_total{reason="store_unavailable"}'):
            return float(line.rsplit(" ", 1)[1])
    return 0.0
