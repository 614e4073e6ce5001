"""Helpers shared by the fault tests (tests/test_faults_*.py, tests/test_shutdown.py).

Everything runs on 127.0.0.1: a private `redis-server` per test, a fresh Postgres database per
test (optionally behind tests/tcp_proxy.py), real `mcp-gateway serve` processes
(tests/processes.py), and a small client for the settings API and the MCP endpoints.
Not a test module.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
from conftest import ADMIN_DSN, JWT_SECRET, REDIS_URL, fresh_postgres_database
from net import free_port
from processes import GatewayProcess

from settings_api.jwt_auth import issue_token

LEGACY = "2025-11-25"
SESSION_SECRET = "fault-session-secret-" + "s" * 20
SECRET_KEY = "fault-secret-key-" + "k" * 24
TOOLS = [
    {
        "name": "search_contacts",
        "inputSchema": {"type": "object", "properties": {"query": {"type": "string"}}},
    },
    {"name": "create_contact", "inputSchema": {"type": "object"}},
]
PG_HOST_PORT = ADMIN_DSN.split("@", 1)[1].split("/", 1)[0]
PG_PORT = int(PG_HOST_PORT.rpartition(":")[2] or 5432)


# --- Postgres -------------------------------------------------------------------------------


@contextlib.contextmanager
def fresh_database() -> Iterator[tuple[str, str]]:
    """A new, empty database: (its name, its URL on the real server)."""
    with fresh_postgres_database("mcpgw_faults") as url:
        yield url.rpartition("/")[2], url


def via_port(url: str, port: int) -> str:
    """`url` with its host:port replaced by 127.0.0.1:`port` (the proxy)."""
    head, _, tail = url.partition("@")
    _, _, path = tail.partition("/")
    return f"{head}@127.0.0.1:{port}/{path}"


async def query(url: str, sql: str, *args: Any) -> list[asyncpg.Record]:
    """Read straight from the real server (never through the proxy)."""
    conn = await asyncpg.connect(url, timeout=10)
    try:
        return await conn.fetch(sql, *args)
    finally:
        await conn.close()


# --- Redis ----------------------------------------------------------------------------------


class RedisServer:
    """A private `redis-server` on a free port: no persistence, killed and restarted at will.
    `args` go on its command line (a cluster node, a replica, a sentinel), after `config` (a
    file of its own: a sentinel rewrites its file)."""

    def __init__(
        self, workdir: Path, *args: str, port: int | None = None, config: Path | None = None
    ) -> None:
        self.port = free_port() if port is None else port
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._workdir = workdir
        self._args = args
        self._config = [] if config is None else [str(config)]
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout_s: float = 10.0) -> RedisServer:
        assert self.proc is None or self.proc.poll() is not None
        self.proc = subprocess.Popen(
            [
                "redis-server",
                *self._config,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self._workdir),
                "--loglevel",
                "warning",
                *self._args,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + timeout_s
        while not self.ping():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"redis-server did not start on {self.port}")
            time.sleep(0.02)
        return self

    def ping(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(64).startswith(b"+PONG")
        except OSError:
            return False

    def kill(self, sig: signal.Signals = signal.SIGKILL) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(10)

    def stop(self) -> None:
        self.kill(signal.SIGKILL)


# --- gateway processes ----------------------------------------------------------------------


def gateway_env(tmp_path: Path, name: str, database_url: str, **env: str) -> dict[str, str]:
    return {
        "MCPGW_DATABASE_URL": database_url,
        "MCPGW_DATA_DIR": str(tmp_path / f"data-{name}"),
        "MCPGW_JWT_SECRET": JWT_SECRET,
        "MCPGW_SESSION_SECRET": SESSION_SECRET,
        "MCPGW_SECRET_KEY": SECRET_KEY,
        "MCPGW_PUBLIC_URL": "http://gateway.test",
        **env,
    }


async def start_gateway(tmp_path: Path, name: str, database_url: str, **env: str) -> GatewayProcess:
    proc = GatewayProcess(tmp_path, name, gateway_env(tmp_path, name, database_url, **env))
    await asyncio.to_thread(proc.wait_ready)
    return proc


async def stop_gateway(proc: GatewayProcess) -> int:
    return await asyncio.to_thread(proc.stop)


@contextlib.asynccontextmanager
async def start_replicas(
    tmp_path: Path, database_url: str, **env: str
) -> AsyncIterator[list[GatewayProcess]]:
    """Two replicas ("a", "b") on one store and the test Redis; stopped cleanly after."""
    procs = await asyncio.gather(
        *(
            start_gateway(tmp_path, name, database_url, MCPGW_REDIS_URL=REDIS_URL, **env)
            for name in ("a", "b")
        )
    )
    try:
        yield list(procs)
    finally:
        for proc in procs:
            assert await stop_gateway(proc) == 0, log_of(proc)


def log_of(proc: GatewayProcess) -> str:
    """The process's output so far (also after `stop`)."""
    return proc.log_path.read_text(errors="replace")


def rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


def fd_count(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def tcp_connections(pid: int) -> int:
    """Open sockets of the process (its fds that are sockets)."""
    count = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        with contextlib.suppress(OSError):
            if os.readlink(f"/proc/{pid}/fd/{fd}").startswith("socket:"):
                count += 1
    return count


@contextlib.asynccontextmanager
async def http_session(total_s: float = 20) -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=total_s)) as session:
        yield session


class Client:
    """Settings-API and MCP calls against one gateway process, for one integration."""

    def __init__(
        self,
        http: aiohttp.ClientSession,
        proc: GatewayProcess,
        tenant: str = "acme",
        integration: str = "crm",
    ) -> None:
        self.http, self.proc = http, proc
        self.api = f"{proc.url}/v1/tenants/{tenant}/integrations/{integration}"
        self.auth = {"Authorization": f"Bearer {issue_token(JWT_SECRET, tenant)}"}

    async def raw_settings(
        self, method: str, path: str = "", **kw: Any
    ) -> tuple[int, dict[str, str], Any]:
        async with self.http.request(method, self.api + path, headers=self.auth, **kw) as r:
            text = await r.text()
            body = await r.json(content_type=None) if text else None
            return r.status, dict(r.headers), body

    async def settings(self, method: str, path: str = "", **kw: Any) -> Any:
        status, _, body = await self.raw_settings(method, path, **kw)
        assert status < 300, (status, body)
        return body

    async def enable(
        self, upstream_url: str | None = None, tools: list[dict[str, Any]] | None = None
    ) -> str:
        """Create, bind, expose and enable the integration; its first key."""
        await self.settings("PUT", json={"name": "CRM"})
        body: dict[str, Any] = {"tools": tools or TOOLS}
        if upstream_url:
            body["upstreamUrl"] = upstream_url
        config = await self.settings("POST", "/configs", json=body)
        names = [tool["name"] for tool in (tools or TOOLS)]
        settings = await self.settings(
            "PATCH",
            "/mcp",
            json={"enabled": True, "configId": config["configId"], "exposedToolIds": names},
        )
        return settings["apiKey"]

    def headers(self, key: str, session: str | None = None) -> dict[str, str]:
        headers = {
            "Authorization": f"Bearer {key}",
            "MCP-Protocol-Version": LEGACY,
            "Accept": "application/json, text/event-stream",
        }
        if session:
            headers["Mcp-Session-Id"] = session
        return headers

    async def mcp(
        self,
        key: str,
        body: Any,
        *,
        url: str = "call",
        session: str | None = None,
        method: str = "POST",
    ) -> tuple[int, dict[str, str], Any]:
        async with self.http.request(
            method, f"{self.api}/mcp:{url}", json=body, headers=self.headers(key, session)
        ) as r:
            text = await r.text()
            payload = await r.json(content_type=None) if text else None
            return r.status, dict(r.headers), payload

    async def initialize(self, key: str, url: str = "call") -> str:
        status, headers, body = await self.mcp(
            key,
            {
                "jsonrpc": "2.0",
                "id": 1,
                "method": "initialize",
                "params": {
                    "protocolVersion": LEGACY,
                    "capabilities": {},
                    "clientInfo": {"name": "fault-test", "version": "1"},
                },
            },
            url=url,
        )
        assert status == 200, (status, body)
        session = headers["Mcp-Session-Id"]
        status, _, _ = await self.mcp(
            key, {"jsonrpc": "2.0", "method": "notifications/initialized"}, url=url, session=session
        )
        assert status == 202
        return session

    async def list_tools(
        self, key: str, session: str, url: str = "call"
    ) -> tuple[int, dict[str, str], Any]:
        return await self.mcp(
            key, {"jsonrpc": "2.0", "id": 2, "method": "tools/list"}, url=url, session=session
        )

    async def call_tool(
        self,
        key: str,
        session: str,
        url: str = "call",
        name: str = "search_contacts",
        arguments: dict[str, Any] | None = None,
    ) -> tuple[int, dict[str, str], Any]:
        return await self.mcp(
            key,
            {
                "jsonrpc": "2.0",
                "id": 3,
                "method": "tools/call",
                "params": {"name": name, "arguments": arguments or {"query": "ada"}},
            },
            url=url,
            session=session,
        )

    async def readyz(self) -> tuple[int, Any]:
        async with self.http.get(self.proc.url + "/readyz") as r:
            return r.status, await r.json(content_type=None)
