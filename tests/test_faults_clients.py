"""Clients that hang up, against a real gateway process.

A client closing its socket while a slow upstream call is in flight, or after the first event
of a streamed (SSE) tools/call, cancels the gateway's work: the upstream sees its connection
closed long before it would have answered, the gateway's open file descriptors return to their
baseline (no leaked connections), and later requests are served.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest
from faults import (
    LEGACY,
    TOOLS,
    Client,
    fd_count,
    http_session,
    log_of,
    start_gateway,
    stop_gateway,
)
from mcp_stub import StubUpstream
from polling import until

pytestmark = pytest.mark.slow

LIMITS = {
    "MCPGW_RATE_LIMIT_BURST": "1000",
    "MCPGW_RATE_LIMIT_RPS": "1000",
    "MCPGW_REQUEST_LIMIT_BURST": "1000",
    "MCPGW_REQUEST_LIMIT_RPS": "1000",
}


class RawRequest:
    """One HTTP/1.1 POST on a socket of its own, which the test closes when it likes."""

    def __init__(
        self, client: Client, key: str, session: str, body: dict[str, Any], accept: str
    ) -> None:
        self.client, self.key, self.session = client, key, session
        self.body, self.accept = json.dumps(body).encode(), accept
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def send(self) -> None:
        url = self.client.api.split("://", 1)[1]
        host, _, path = url.partition("/")
        self.reader, self.writer = await asyncio.open_connection(*host.split(":"))
        head = (
            f"POST /{path}/mcp:call HTTP/1.1\r\nHost: {host}\r\n"
            f"Authorization: Bearer {self.key}\r\nMCP-Protocol-Version: {LEGACY}\r\n"
            f"Mcp-Session-Id: {self.session}\r\nAccept: {self.accept}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(self.body)}\r\n\r\n"
        )
        self.writer.write(head.encode() + self.body)
        await self.writer.drain()

    async def first_event(self, method: str) -> dict[str, Any]:
        """Read the response head, then SSE events until one of `method`."""
        assert self.reader is not None
        status = await self.reader.readline()
        assert b" 200 " in status, status
        while (await self.reader.readline()).strip():
            pass  # headers
        while True:
            line = await asyncio.wait_for(self.reader.readline(), 5)
            if line.startswith(b"data:") and line[5:].strip():
                event = json.loads(line[5:])
                if event.get("method") == method:
                    return event

    def close(self) -> None:
        assert self.writer is not None
        self.writer.close()


def call_body(meta: dict[str, Any] | None = None) -> dict[str, Any]:
    params: dict[str, Any] = {"name": "search_contacts", "arguments": {"query": "ada"}}
    if meta:
        params["_meta"] = meta
    return {"jsonrpc": "2.0", "id": 9, "method": "tools/call", "params": params}


async def fds_back_to(pid: int, baseline: int, timeout_s: float = 3.0) -> None:
    async def back() -> bool:
        return fd_count(pid) <= baseline

    try:
        await until(back, timeout_s=timeout_s)
    except AssertionError:
        raise AssertionError(f"open fds {fd_count(pid)} > baseline {baseline}") from None


async def test_client_gone_mid_request_cancels_the_upstream_call(tmp_path, aiohttp_server) -> None:
    slow = StubUpstream(tools=TOOLS, mode="slow", delay_s=20, fail_on={"tools/call"})
    healthy = StubUpstream(tools=TOOLS)
    slow_url = str((await aiohttp_server(slow.app())).make_url("/mcp"))
    healthy_url = str((await aiohttp_server(healthy.app())).make_url("/mcp"))
    proc = await start_gateway(
        tmp_path, "gw", f"sqlite:///{tmp_path / 'gw.db'}", MCPGW_UPSTREAM_TIMEOUT_S="30", **LIMITS
    )
    pid = proc.proc.pid
    try:
        async with http_session() as http:
            gw, other = Client(http, proc), Client(http, proc, integration="healthy")
            key, other_key = await gw.enable(slow_url), await other.enable(healthy_url)
            session, other_session = await gw.initialize(key), await other.initialize(other_key)
            assert (await other.call_tool(other_key, other_session))[0] == 200

            async def abandon(count: int) -> float:
                """`count` slow calls at once, each abandoned once the upstream has it."""
                before_calls, before_gone = slow.calls["tools/call"], slow.disconnects
                requests = [
                    RawRequest(gw, key, session, call_body(), "application/json")
                    for _ in range(count)
                ]
                await asyncio.gather(*(request.send() for request in requests))

                async def upstream_has_them() -> bool:
                    return slow.calls["tools/call"] == before_calls + count

                await until(upstream_has_them, timeout_s=5.0)
                closed_at = time.monotonic()
                for request in requests:
                    request.close()

                async def upstream_saw_them_go() -> bool:
                    return slow.disconnects == before_gone + count

                await until(upstream_saw_them_go, timeout_s=2.0)
                return time.monotonic() - closed_at

            await abandon(1)  # warm up: the upstream session and its connection exist now
            baseline = fd_count(pid)
            took = await abandon(5)
            assert took < 1.0, f"the upstream saw the calls cancelled after {took:.2f} s"
            await fds_back_to(pid, baseline)

            # Later requests are served, on both integrations.
            status, _, body = await other.call_tool(other_key, other_session)
            assert status == 200 and body["result"]["isError"] is False, body
            status, _, body = await gw.list_tools(key, session)
            assert status == 200 and len(body["result"]["tools"]) == 2
            await fds_back_to(pid, baseline)
        text = log_of(proc)
        assert '" 500 ' not in text and "Error handling request" not in text, text
        assert "Task was destroyed" not in text and "Unclosed" not in text, text
    finally:
        assert await stop_gateway(proc) == 0, log_of(proc)


async def test_client_gone_mid_stream_cancels_the_upstream_stream(tmp_path, aiohttp_server) -> None:
    stub = StubUpstream(tools=TOOLS, sse=True, progress_steps=6, progress_delay_s=0.5)
    url = str((await aiohttp_server(stub.app())).make_url("/mcp"))
    proc = await start_gateway(
        tmp_path, "gw", f"sqlite:///{tmp_path / 'gw.db'}", MCPGW_UPSTREAM_TIMEOUT_S="30", **LIMITS
    )
    pid = proc.proc.pid
    try:
        async with http_session() as http:
            gw = Client(http, proc)
            key = await gw.enable(url)
            session = await gw.initialize(key)

            async def streamed(token: str) -> RawRequest:
                request = RawRequest(
                    gw, key, session, call_body({"progressToken": token}), "text/event-stream"
                )
                await request.send()
                event = await request.first_event("notifications/progress")
                assert event["params"]["progressToken"] == token
                assert event["params"]["progress"] == 1, event
                return request

            async def abandon(token: str) -> float:
                before = stub.disconnects
                request = await streamed(token)
                closed_at = time.monotonic()
                request.close()

                async def upstream_saw_it_go() -> bool:
                    return stub.disconnects == before + 1

                await until(upstream_saw_it_go, timeout_s=2.0)
                return time.monotonic() - closed_at

            await abandon("warm-up")
            baseline = fd_count(pid)
            for n in range(3):
                took = await abandon(f"t{n}")
                # The stream had 2.5 s to go: the upstream heard of the hang-up at once.
                assert took < 1.0, f"the upstream saw the stream cancelled after {took:.2f} s"
            await fds_back_to(pid, baseline)

            # A stream read to the end still gets every progress event, then the result.
            stub.progress_delay_s = 0.01
            headers = {**gw.headers(key, session), "Accept": "text/event-stream"}
            async with http.post(
                f"{gw.api}/mcp:call", json=call_body({"progressToken": "end"}), headers=headers
            ) as r:
                assert r.status == 200 and r.content_type == "text/event-stream"
                events = [
                    json.loads(line[5:])
                    for line in (await r.text()).splitlines()
                    if line.startswith("data:") and line[5:].strip()
                ]
            progress = [e for e in events if e.get("method") == "notifications/progress"]
            assert [e["params"]["progress"] for e in progress] == [1, 2, 3, 4, 5, 6]
            assert events[-1]["result"]["isError"] is False, events[-1]
            await fds_back_to(pid, baseline + 1)  # + the keep-alive connection just used
        text = log_of(proc)
        assert '" 500 ' not in text and "Error handling request" not in text, text
        assert "Task was destroyed" not in text and "Unclosed" not in text, text
    finally:
        assert await stop_gateway(proc) == 0, log_of(proc)
