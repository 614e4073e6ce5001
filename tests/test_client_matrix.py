"""The client matrix: MCP clients people use against a real gateway process, on testUrl and on
callUrl (bound to a stub upstream). Each lists tools, calls one, receives log messages only once
it asks and only at or above the level asked (docs/mcp-endpoints.md, "Log messages"), meets the
rate limit and goes on: a `tools/call` past the limit is an `isError` result of that call and a
`tools/list` past it a -32029 error of that request, both naming the wait, and after the wait
the next one succeeds on the same session (docs/mcp-endpoints.md, "Rate limits"; docs/clients.md).

Clients: the Python SDK 2.x in this process (auto: 2026-07-28; legacy: the initialize
handshake), the Python SDK 1.x and the TypeScript SDK 1.x and 2.x in subprocesses, from the
cache that tests/client_envs.py builds on first use (a clean clone installs them; nothing is
skipped). Then the official conformance suite's server scenarios that apply to a gateway."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import aiohttp
import httpx2
import pytest
from aiohttp import web
from client_envs import ClientEnvs, client_envs
from clients import matrix_steps
from clients.matrix_steps import ARGUMENTS, TOOL, Seen, each_url, steps
from conftest import JWT_SECRET
from crm_integration import TOOLS, setup_integration
from mcp.client import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError
from mcp.types import CallToolResult, LoggingLevel, LoggingMessageNotificationParams
from mcp_stub import StubUpstream
from net import free_port
from processes import GatewayProcess

from mcp_core.errors import RATE_LIMIT_META, RATE_LIMITED
from mcp_core.versions import MODERN_VERSIONS

pytestmark = pytest.mark.slow

# Small buckets, so each client meets both limits within a few requests and waits well under a
# second: tools/call 3 then 2/s; all requests 12 then 4/s (a session's handshake, listing and
# calls fit in the burst, the listing loop then runs it out).
LIMITS = {
    "MCPGW_RATE_LIMIT_BURST": "3",
    "MCPGW_RATE_LIMIT_RPS": "2",
    "MCPGW_REQUEST_LIMIT_BURST": "12",
    "MCPGW_REQUEST_LIMIT_RPS": "4",
}
LOGGED = ("debug", "info", "warning")  # by the stub upstream; matrix_steps asks for "warning"
PAUSE_S = 3.0  # between the two URLs: both buckets full again
SUBPROCESS_TIMEOUT_S = 60
EXPECTED_VERSION = {
    "python-sdk2-auto": "2026-07-28",
    "python-sdk2-legacy": "2025-11-25",
    "python-sdk1": "2025-11-25",
    "typescript-sdk": "2025-11-25",
    "typescript-sdk2": "2026-07-28",  # version negotiation "auto"
}
TYPESCRIPT_DRIVERS = {
    "typescript-sdk": "typescript_sdk.mjs",
    "typescript-sdk2": "typescript_sdk2.mjs",
}


@pytest.fixture(scope="module")
def envs() -> ClientEnvs:
    return client_envs()


@pytest.fixture
async def gateway(tmp_path: Path, aiohttp_server: Any) -> AsyncIterator[tuple[str, list[str]]]:
    """The key and the two URLs (testUrl, callUrl) of an integration on a fresh gateway."""
    async with serving(tmp_path, aiohttp_server, LIMITS) as served:
        yield served


@asynccontextmanager
async def serving(
    tmp_path: Path, aiohttp_server: Any, limits: dict[str, str]
) -> AsyncIterator[tuple[str, list[str]]]:
    # Answers in SSE, each led by a log message at each of LOGGED (whatever was asked: the
    # gateway filters).
    stub = StubUpstream(tools=TOOLS, sse=True, log_levels=LOGGED)
    upstream = await aiohttp_server(stub.app())
    env = {"MCPGW_DATA_DIR": str(tmp_path / "data"), "MCPGW_JWT_SECRET": JWT_SECRET, **limits}
    proc = GatewayProcess(tmp_path, "gw", env)
    proc.wait_ready()
    try:
        settings = await setup_integration(proc.url, str(upstream.make_url("/mcp")))
        base = f"{proc.url}/v1/tenants/acme/integrations/crm/mcp:"
        yield settings["apiKey"], [base + "test", base + "call"]
    finally:
        proc.stop()


@pytest.mark.parametrize("client", list(EXPECTED_VERSION))
async def test_client_lists_calls_meets_the_rate_limit_and_goes_on(
    client: str, gateway: tuple[str, list[str]], envs: ClientEnvs
) -> None:
    assert matrix_steps.RATE_LIMIT_META == RATE_LIMIT_META  # the drivers import no project code
    key, urls = gateway
    if client.startswith("python-sdk2-"):
        runs = await python_sdk2(client.removeprefix("python-sdk2-"), key, urls)
    elif client == "python-sdk1":
        runs = await subprocess_runs(envs.python_sdk1(key, PAUSE_S, urls))
    else:
        driver = TYPESCRIPT_DRIVERS[client]
        runs = await subprocess_runs(envs.typescript_sdk(driver, key, PAUSE_S, urls))
    assert [run["url"] for run in runs] == urls
    test_run, call_run = runs
    # The simulator sends no log messages; the upstream's arrive only once asked for, and only
    # those at or above the level asked.
    check_run(test_run, EXPECTED_VERSION[client], logged=[])
    check_run(call_run, EXPECTED_VERSION[client], logged=[matrix_steps.LOG_LEVEL])


def check_run(run: dict[str, Any], version: str, logged: list[str]) -> None:
    """What one client saw on one URL (the drivers' common JSON)."""
    assert run["protocol"] == version, run
    assert run["list"] == {"tools": [TOOL]}, run
    assert run["call"]["isError"] is False and run["call"]["text"], run
    assert run["logs_unasked"] == [], run
    assert run["logged_call"]["isError"] is False, run
    assert run["logs_asked"] == logged, run
    limited = run["limited_call"]
    assert limited["isError"] is True, run
    assert "Rate limit exceeded" in limited["text"], run
    wait = limited["meta"][RATE_LIMIT_META]
    assert wait["code"] == RATE_LIMITED and 1 <= wait["retryAfterMs"] <= 1000, run
    assert run["retried_call"]["isError"] is False, run
    limited_list = run["limited_request"]
    assert limited_list.get("code") == RATE_LIMITED, run
    assert "Rate limit exceeded" in limited_list["message"], run
    assert 1 <= limited_list["data"]["retryAfterMs"] <= 1000, run
    assert run["retried_request"] == {"tools": [TOOL]}, run


@dataclass(frozen=True)
class Finished:
    returncode: int
    text: str  # stdout, then stderr


async def run_command(command: list[str]) -> Finished:
    """Run a subprocess while this loop keeps serving (the stub upstream, a keyed proxy)."""
    proc = await asyncio.create_subprocess_exec(
        *command, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), SUBPROCESS_TIMEOUT_S)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise AssertionError(f"{command[1]} did not finish in {SUBPROCESS_TIMEOUT_S} s") from None
    assert proc.returncode is not None
    return Finished(proc.returncode, out.decode() + err.decode())


async def subprocess_runs(command: list[str]) -> list[dict[str, Any]]:
    """Run a driver; its JSON runs (its last line of output)."""
    done = await run_command(command)
    assert done.returncode == 0, f"{command[1]} exited {done.returncode}:\n{done.text[-4000:]}"
    last = [line for line in done.text.splitlines() if line.startswith('{"runs"')][-1]
    runs: list[dict[str, Any]] = json.loads(last)["runs"]
    return runs


# --- the Python SDK 2.x, in this process ------------------------------------------------------


async def python_sdk2(mode: str, key: str, urls: list[str]) -> list[Seen]:
    return await each_url(urls, PAUSE_S, lambda url: python_sdk2_run(mode, key, url))


async def python_sdk2_run(mode: str, key: str, url: str) -> Seen:
    http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {key}"}, timeout=10)
    logs: list[str] = []

    async def on_log(params: LoggingMessageNotificationParams) -> None:
        logs.append(params.level)

    def connect(log_level: LoggingLevel | None = None) -> Client:
        return Client(
            streamable_http_client(url, http_client=http),
            mode=mode,
            read_timeout_seconds=10,
            logging_callback=on_log,
            log_level=log_level,
        )

    async with AsyncExitStack() as stack:
        await stack.enter_async_context(http)
        client = await stack.enter_async_context(connect())
        # The client that calls: on 2026-07-28 the log opt-in is the client's `log_level`,
        # stamped on each request's _meta, so asking means a client made with it.
        calling = [client]

        async def ask_logs(level: str) -> None:
            if client.protocol_version in MODERN_VERSIONS:
                calling[0] = await stack.enter_async_context(connect(cast(LoggingLevel, level)))
            else:
                await client.set_logging_level(cast(LoggingLevel, level))

        async def call() -> Seen:
            result: CallToolResult = await calling[0].call_tool(TOOL, ARGUMENTS)
            text = getattr(result.content[0], "text", None) if result.content else None
            return {"isError": bool(result.is_error), "text": text, "meta": result.meta}

        async def list_tools() -> Seen:
            try:
                # Past the client's response cache (2026-07-28 lists carry ttlMs): to the server.
                listed = await client.list_tools(cache_mode="bypass")
            except MCPError as exc:
                return {
                    "code": exc.error.code,
                    "message": exc.error.message,
                    "data": exc.error.data,
                }
            return {"tools": [tool.name for tool in listed.tools]}

        return await steps(client.protocol_version, call, list_tools, ask_logs, logs)


# --- the official conformance suite -----------------------------------------------------------

# The server scenarios that apply to a gateway, per suite and spec version (None: the suite's
# default). The others (tools-call-*, resources-*, prompts-*, completion-complete,
# elicitation-*, json-schema-2020-12, input-required-*, http-custom-header-server-validation,
# server-sse-polling, tasks-*) call the reference server's own test tools, resources and
# prompts, which an integration does not have (docs/clients.md, "Conformance").
SESSION_SCENARIOS = ("server-initialize", "ping", "tools-list", "logging-set-level")
CONFORMANCE_RUNS: tuple[tuple[str, str | None, tuple[str, ...]], ...] = (
    ("@modelcontextprotocol/conformance", None, (*SESSION_SCENARIOS, "dns-rebinding-protection")),
    ("conformance-next", "2025-06-18", (*SESSION_SCENARIOS, "server-session-lifecycle")),
    (
        "conformance-next",
        "2025-11-25",
        (
            *SESSION_SCENARIOS,
            "server-session-lifecycle",
            "server-sse-multiple-streams",
            "dns-rebinding-protection",
        ),
    ),
    (
        "conformance-next",
        "2026-07-28",
        (
            "server-stateless",  # the sep-2575-* checks: server/discover, capabilities, errors
            "tools-list",
            "caching",
            "http-header-validation",
            "server-sse-multiple-streams",
            "dns-rebinding-protection",
        ),
    ),
)
# Checks that need what an integration does not have, each with its reason (0.2.0-alpha only).
EXPECTED_FAILURES = (
    Path(__file__).resolve().parent / "clients" / "conformance_expected_failures.yml"
)
ROOMY = {"MCPGW_REQUEST_LIMIT_RPS": "1000", "MCPGW_REQUEST_LIMIT_BURST": "1000"}


async def test_conformance_scenarios_pass_on_both_urls(
    tmp_path: Path, aiohttp_server: Any, envs: ClientEnvs
) -> None:
    # The suite sends no credentials: a local hop adds the integration's key. Its port is
    # chosen first, so the gateway can allow the hop's origin (dns-rebinding-protection sends
    # the server URL's own origin, and expects it accepted and any other refused).
    port = free_port()
    origins = {"MCPGW_ALLOWED_ORIGINS": f"http://127.0.0.1:{port}"}
    async with serving(tmp_path, aiohttp_server, {**ROOMY, **origins}) as (key, urls):
        keyed = await aiohttp_server(
            keyed_proxy(dict(zip(HOPS, urls, strict=True)), key), port=port
        )
        hops = [str(keyed.make_url(hop)) for hop in HOPS]
        for package, version, scenarios in CONFORMANCE_RUNS:
            expected = None if package.startswith("@") else EXPECTED_FAILURES
            for scenario in scenarios:
                outs = await asyncio.gather(
                    *(
                        run_command(envs.conformance(package, hop, scenario, version, expected))
                        for hop in hops
                    )
                )
                for url, out in zip(urls, outs, strict=True):
                    where = f"{package} {version or ''} {scenario} on {url}"
                    assert out.returncode == 0, f"{where}:\n{out.text[-3000:]}"
                    assert re.search(r"Passed: [1-9]", out.text), f"{where}:\n{out.text[-3000:]}"


HOPS = ("/test", "/call")


def keyed_proxy(targets: dict[str, str], key: str) -> web.Application:
    """Forwards each path's requests to its target with `Authorization: Bearer <key>` added."""
    hop = {"host", "content-length", "transfer-encoding", "connection"}

    async def forward(request: web.Request) -> web.StreamResponse:
        headers = {k: v for k, v in request.headers.items() if k.lower() not in hop}
        headers["Authorization"] = f"Bearer {key}"
        target = targets[request.path]
        async with aiohttp.ClientSession(auto_decompress=False) as http:
            async with http.request(
                request.method, target, headers=headers, data=await request.read()
            ) as upstream:
                answer = web.StreamResponse(
                    status=upstream.status,
                    headers={k: v for k, v in upstream.headers.items() if k.lower() not in hop},
                )
                await answer.prepare(request)
                async for chunk in upstream.content.iter_any():
                    await answer.write(chunk)
                await answer.write_eof()
                return answer

    app = web.Application()
    for path in targets:
        app.router.add_route("*", path, forward)
    return app
