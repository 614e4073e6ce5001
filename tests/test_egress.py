"""Egress policy for tenant-chosen upstream URLs (issue #18): loopback, private, link-local and
reserved addresses are refused at configuration time and at connect time, errors do not map
ports, and tenant headers cannot take over the framing of upstream requests.

No test sends a packet to a non-loopback address: `no_outside_connects` fails any such
connect before it happens, and every "allowed" case uses loopback.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from aiohttp.test_utils import TestClient
from conftest import JWT_SECRET, make_settings
from mcp_stub import StubUpstream, make_tools
from net import closed_url

from gateway.server import build_app
from mcp_core.client import UNREACHABLE_MESSAGE, UpstreamError, fetch_tool_catalog, mcp_headers
from settings_api.config import ConfigError, load_settings
from settings_api.egress import EgressPolicy, create_upstream_client, parse_networks
from settings_api.jwt_auth import issue_token

BASE = "/v1/tenants/acme/integrations"
MODERN = "2026-07-28"
TOOLS = [{"name": "echo", "inputSchema": {"type": "object"}}]
LOOPBACK = "127.0.0.0/8,::1/128"
PUBLIC_ADDRESS = "93.184.216.34"  # resolved to in a fake DNS answer; never connected to

Factory = Callable[..., Awaitable[TestClient]]


# --------------------------------------------------------------------------- fixtures


@pytest.fixture
async def no_outside_connects(monkeypatch: pytest.MonkeyPatch) -> None:
    """A safety net: a connect to a non-loopback address fails before any packet leaves."""
    loop = asyncio.get_running_loop()
    connect = loop.sock_connect

    async def loopback_only(sock: socket.socket, address: Any) -> None:
        if not ipaddress.ip_address(address[0]).is_loopback:
            raise AssertionError(f"a test tried to connect to {address[0]}")
        await connect(sock, address)

    monkeypatch.setattr(loop, "sock_connect", loopback_only)


@pytest.fixture
async def fake_dns(
    monkeypatch: pytest.MonkeyPatch, no_outside_connects: None
) -> dict[str, list[str]]:
    """Names under `.test` resolve to the addresses queued here, one answer per lookup (the
    last one repeats): a DNS server that rebinds between lookups."""
    answers: dict[str, list[str]] = {}
    loop = asyncio.get_running_loop()
    resolve = loop.getaddrinfo

    async def fake(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        name = host.decode() if isinstance(host, bytes) else host
        queued = answers.get(name)
        if not queued:
            return await resolve(host, port, *args, **kwargs)
        address = queued.pop(0) if len(queued) > 1 else queued[0]
        return await resolve(address, port, *args, **kwargs)

    monkeypatch.setattr(loop, "getaddrinfo", fake)
    return answers


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'store.db'}"


@pytest.fixture
def gateway(aiohttp_client: Any, tmp_path: Path, db_url: str, no_outside_connects: None) -> Factory:
    """`await gateway(allowed)`: a live app on one shared store, with that egress setting
    ("" = the default policy)."""

    async def make(allowed: str = "") -> TestClient:
        settings = make_settings(tmp_path, db_url, MCPGW_UPSTREAM_ALLOWED_NETWORKS=allowed)
        return await aiohttp_client(build_app(settings))

    return make


class Tenant:
    """The settings API and the callUrl of tenant acme on one app."""

    def __init__(self, client: TestClient) -> None:
        self.client = client
        self.headers = {"Authorization": f"Bearer {issue_token(JWT_SECRET, 'acme')}"}

    async def call(self, method: str, path: str, **kwargs: Any) -> tuple[int, Any]:
        async with self.client.request(method, BASE + path, headers=self.headers, **kwargs) as resp:
            return resp.status, await resp.json(content_type=None)

    async def config(self, integration: str, **body: Any) -> tuple[int, Any]:
        await self.call("PUT", f"/{integration}", json={"name": integration})
        return await self.call("POST", f"/{integration}/configs", json=body)

    async def enable(self, integration: str, config_id: str) -> tuple[str, str]:
        status, settings = await self.call(
            "PATCH",
            f"/{integration}/mcp",
            json={"enabled": True, "configId": config_id, "exposedToolIds": ["echo"]},
        )
        assert status == 200, settings
        return settings["apiKey"], urlsplit(settings["callUrl"]).path

    async def call_tool(self, key: str, path: str) -> dict[str, Any]:
        """One modern-era (stateless) tools/call on the callUrl; the JSON-RPC answer."""
        body = {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "tools/call",
            "params": {
                "name": "echo",
                "arguments": {"q": "x"},
                "_meta": {
                    "io.modelcontextprotocol/protocolVersion": MODERN,
                    "io.modelcontextprotocol/clientCapabilities": {},
                },
            },
        }
        headers = {
            "Authorization": f"Bearer {key}",
            "MCP-Protocol-Version": MODERN,
            "Accept": "application/json, text/event-stream",
            "Mcp-Method": "tools/call",
            "Mcp-Name": "echo",
        }
        async with self.client.post(path, json=body, headers=headers) as resp:
            assert resp.status == 200, await resp.text()
            return await resp.json()


async def serve_stub(aiohttp_server: Any, stub: StubUpstream) -> int:
    return int((await aiohttp_server(stub.app())).port)


def assert_not_allowed(status: int, problem: dict[str, Any]) -> None:
    assert status == 422, problem
    assert problem["type"].endswith("/upstream-not-allowed")
    assert problem["errors"][0]["field"] == "upstreamUrl"


# --------------------------------------------------------------------------- configuration


REFUSED_URLS = [
    "http://127.0.0.1:{port}/mcp",
    "http://127.1:{port}/mcp",
    "http://0x7f000001:{port}/mcp",
    "http://2130706433:{port}/mcp",
    "http://[::1]:{port}/mcp",
    "http://[::ffff:127.0.0.1]:{port}/mcp",
    "http://localhost:{port}/mcp",
    "http://169.254.169.254/latest/meta-data/",
    "http://10.0.0.1/mcp",
    "http://100.64.0.1/mcp",
    "http://192.168.1.1/mcp",
    "http://[fd00::1]/mcp",
    "http://0.0.0.0:{port}/mcp",
]


@pytest.mark.parametrize("template", REFUSED_URLS)
@pytest.mark.parametrize("inline", [False, True], ids=["catalog-read", "inline-tools"])
async def test_configs_pointing_at_internal_addresses_are_refused(
    gateway: Factory, aiohttp_server: Any, template: str, inline: bool
) -> None:
    stub = StubUpstream(tools=TOOLS)
    url = template.format(port=await serve_stub(aiohttp_server, stub))
    tenant = Tenant(await gateway())

    status, problem = await tenant.config(
        "crm", upstreamUrl=url, **({"tools": TOOLS} if inline else {})
    )

    assert_not_allowed(status, problem)
    assert str(stub_port(url)) not in problem["detail"]  # nothing about what listens there
    assert sum(stub.calls.values()) == 0  # refused before connecting
    assert (await tenant.call("GET", "/crm/configs"))[1]["items"] == []


@pytest.mark.parametrize("url", ["http://[::1/mcp", "http://[v1.x]/mcp", "http://:80/mcp"])
async def test_unparsable_upstream_urls_are_still_answered_cleanly(
    gateway: Factory, url: str
) -> None:
    tenant = Tenant(await gateway())
    status, problem = await tenant.config("crm", upstreamUrl=url)
    assert status in (422, 502), problem


def stub_port(url: str) -> int | None:
    return urlsplit(url).port


async def test_allowed_networks_open_the_stub_upstream(
    gateway: Factory, aiohttp_server: Any
) -> None:
    stub = StubUpstream(tools=TOOLS)
    url = f"http://127.0.0.1:{await serve_stub(aiohttp_server, stub)}/mcp"

    assert_not_allowed(*await Tenant(await gateway()).config("strict", upstreamUrl=url))
    tenant = Tenant(await gateway("127.0.0.0/8"))
    status, config = await tenant.config("crm", upstreamUrl=url)
    assert status == 201, config
    key, path = await tenant.enable("crm", config["configId"])
    answer = await tenant.call_tool(key, path)

    assert answer["result"]["content"][0]["text"] == '{"q": "x"}'


async def test_a_name_resolving_to_a_refused_address_is_refused(
    gateway: Factory, fake_dns: dict[str, list[str]]
) -> None:
    fake_dns["upstream.test"] = ["10.1.2.3"]
    tenant = Tenant(await gateway())

    assert_not_allowed(*await tenant.config("crm", upstreamUrl="http://upstream.test/mcp"))
    assert_not_allowed(
        *await tenant.config("crm", upstreamUrl="http://upstream.test/mcp", tools=TOOLS)
    )


async def test_catalog_read_refuses_a_name_rebound_after_the_check(
    gateway: Factory, aiohttp_server: Any, fake_dns: dict[str, list[str]]
) -> None:
    # The configuration check sees a public address, the connection a loopback one.
    port = await serve_stub(aiohttp_server, stub := StubUpstream(tools=TOOLS))
    fake_dns["rebind.test"] = [PUBLIC_ADDRESS, "127.0.0.1"]
    tenant = Tenant(await gateway())

    assert_not_allowed(*await tenant.config("crm", upstreamUrl=f"http://rebind.test:{port}/mcp"))
    assert sum(stub.calls.values()) == 0


async def test_sync_after_the_policy_closed_the_range_is_refused(
    gateway: Factory, aiohttp_server: Any
) -> None:
    url = f"http://127.0.0.1:{await serve_stub(aiohttp_server, StubUpstream(tools=TOOLS))}/mcp"
    status, config = await Tenant(await gateway(LOOPBACK)).config("crm", upstreamUrl=url)
    assert status == 201, config

    strict = Tenant(await gateway())
    assert_not_allowed(*await strict.call("POST", f"/crm/configs/{config['configId']}:syncTools"))


# --------------------------------------------------------------------------- call time


async def test_call_to_an_upstream_the_policy_now_refuses_is_a_jsonrpc_error(
    gateway: Factory, aiohttp_server: Any
) -> None:
    stub = StubUpstream(tools=TOOLS)
    url = f"http://localhost:{await serve_stub(aiohttp_server, stub)}/mcp"
    allowed = Tenant(await gateway(LOOPBACK))  # stored while loopback was allowed
    _, config = await allowed.config("crm", upstreamUrl=url)
    key, path = await allowed.enable("crm", config["configId"])
    stub.calls.clear()

    answer = await Tenant(await gateway()).call_tool(key, path)

    assert answer["error"]["code"] == -32603
    assert answer["error"]["data"] == {"upstream": "not-allowed"}
    assert "could not be reached" not in answer["error"]["message"]
    assert sum(stub.calls.values()) == 0


async def test_call_refuses_a_name_that_rebinds_to_loopback(
    gateway: Factory, aiohttp_server: Any, fake_dns: dict[str, list[str]]
) -> None:
    stub = StubUpstream(tools=TOOLS)
    port = await serve_stub(aiohttp_server, stub)
    fake_dns["rebind.test"] = [PUBLIC_ADDRESS, "127.0.0.1"]  # public when configured
    tenant = Tenant(await gateway())
    status, config = await tenant.config(
        "crm", upstreamUrl=f"http://rebind.test:{port}/mcp", tools=TOOLS
    )
    assert status == 201, config
    key, path = await tenant.enable("crm", config["configId"])

    answer = await tenant.call_tool(key, path)

    assert answer["error"]["data"] == {"upstream": "not-allowed"}
    assert sum(stub.calls.values()) == 0


@pytest.mark.parametrize("host", ["127.0.0.1", "[::ffff:127.0.0.1]", "169.254.169.254"])
async def test_the_upstream_client_refuses_before_connecting(
    aiohttp_server: Any, no_outside_connects: None, host: str
) -> None:
    # IP literals: aiohttp never hands them to its resolver, so the connector checks them too.
    stub = StubUpstream(tools=TOOLS)
    port = await serve_stub(aiohttp_server, stub)
    http = create_upstream_client(timeout_s=3)
    try:
        with pytest.raises(UpstreamError) as info:
            await fetch_tool_catalog(http, f"http://{host}:{port}/mcp", {}, timeout_s=3)
    finally:
        await http.close()

    assert info.value.reason == "not-allowed"
    assert sum(stub.calls.values()) == 0


# --------------------------------------------------------------------------- neutral errors


async def garbage_server() -> asyncio.Server:
    """Something that is not an HTTP server: a banner, then the connection closes."""

    async def banner(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"SSH-2.0-OpenSSH_9.6\r\n")
        await writer.drain()
        writer.close()

    return await asyncio.start_server(banner, "127.0.0.1", 0)


async def test_closed_port_and_non_http_service_look_the_same_to_a_tenant(gateway: Factory) -> None:
    server = await garbage_server()
    try:
        garbage = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/mcp"
        closed = closed_url()
        tenant = Tenant(await gateway(LOOPBACK))

        problems = [
            await tenant.config(name, upstreamUrl=url)
            for name, url in (("a", closed), ("b", garbage))
        ]
        calls = []
        for name, url in (("c", closed), ("d", garbage)):
            _, config = await tenant.config(name, upstreamUrl=url, tools=TOOLS)
            calls.append(
                (await tenant.call_tool(*await tenant.enable(name, config["configId"])))["error"]
            )
    finally:
        server.close()

    (status_a, closed_problem), (status_b, garbage_problem) = problems
    assert status_a == status_b == 502
    assert closed_problem["detail"] == garbage_problem["detail"]
    assert closed_problem["reason"] == garbage_problem["reason"] == "connect"
    assert UNREACHABLE_MESSAGE in closed_problem["detail"]
    assert calls[0]["message"] == calls[1]["message"]
    assert calls[0]["data"] == calls[1]["data"] == {"upstream": "connect"}
    assert UNREACHABLE_MESSAGE in calls[0]["message"]


# --------------------------------------------------------------------------- headers


TENANT_HEADERS = {
    "Host": "internal.example",
    "Content-Length": "5",
    "Transfer-Encoding": "chunked",
    "Connection": "upgrade",
    "Upgrade": "h2c",
    "Keep-Alive": "timeout=99",
    "TE": "trailers",
    "Trailer": "X-Later",
    "Proxy-Authorization": "Basic Zm9vOmJhcg==",
    "X-Tenant": "kept",
}
GATEWAY_ONLY = [name for name in TENANT_HEADERS if name != "X-Tenant"]


async def test_upstream_requests_never_carry_tenant_framing_headers(
    aiohttp_server: Any, no_outside_connects: None
) -> None:
    # Configs stored before the rule may hold such names: they are dropped.
    stub = StubUpstream(tools=make_tools(2))
    port = await serve_stub(aiohttp_server, stub)
    http = create_upstream_client(allowed_networks=parse_networks(LOOPBACK), timeout_s=3)
    try:
        tools = await fetch_tool_catalog(
            http, f"http://127.0.0.1:{port}/mcp", TENANT_HEADERS, timeout_s=3
        )
    finally:
        await http.close()

    assert len(tools) == 2
    assert stub.received_headers
    for seen in stub.received_headers:
        lowered = {name.lower(): value for name, value in seen.items()}
        assert lowered["host"] == f"127.0.0.1:{port}"
        assert lowered["x-tenant"] == "kept"
        for name in (
            "transfer-encoding",
            "upgrade",
            "keep-alive",
            "te",
            "trailer",
            "proxy-authorization",
        ):
            assert name not in lowered, (name, seen)
        assert lowered.get("connection", "keep-alive").lower() in ("keep-alive", "close")


def test_one_rule_decides_the_headers_of_every_upstream_request() -> None:
    sent = mcp_headers(TENANT_HEADERS)
    assert [name for name in GATEWAY_ONLY if name in sent] == []
    assert sent["X-Tenant"] == "kept"


@pytest.mark.parametrize("name", GATEWAY_ONLY)
async def test_configs_with_gateway_only_header_names_are_refused(
    gateway: Factory, name: str
) -> None:
    tenant = Tenant(await gateway(LOOPBACK))
    status, problem = await tenant.config(
        "crm", upstreamUrl="http://127.0.0.1:9/mcp", upstreamHeaders={name: "x"}, tools=TOOLS
    )
    assert status == 422, problem
    assert problem["type"].endswith("/validation-failed")
    assert problem["errors"] == [
        {"field": f"upstreamHeaders.{name}", "message": "is set by the gateway, not by a config"}
    ]


# --------------------------------------------------------------------------- policy, config


@pytest.mark.parametrize(
    ("address", "refused"),
    [
        ("127.0.0.1", True),
        ("0.0.0.0", True),  # noqa: S104 - an address to judge, not to bind
        ("0.1.2.3", True),
        ("10.255.0.1", True),
        ("100.64.0.1", True),
        ("100.127.255.254", True),
        ("169.254.169.254", True),
        ("172.16.0.1", True),
        ("172.31.255.255", True),
        ("192.168.0.1", True),
        ("192.0.0.8", True),
        ("192.0.2.1", True),
        ("198.18.0.1", True),
        ("198.51.100.1", True),
        ("203.0.113.9", True),
        ("224.0.0.1", True),
        ("240.0.0.1", True),
        ("255.255.255.255", True),
        ("::", True),
        ("::1", True),
        ("::127.0.0.1", True),
        ("::ffff:127.0.0.1", True),
        ("::ffff:10.0.0.1", True),
        ("::ffff:169.254.169.254", True),
        ("64:ff9b::a9fe:a9fe", True),
        ("64:ff9b::7f00:1", True),
        ("2002:7f00:1::1", True),
        ("2002:a00:1::1", True),
        ("fc00::1", True),
        ("fd12:3456::1", True),
        ("fe80::1", True),
        ("fe80::1%eth0", True),
        ("ff02::1", True),
        ("2001:db8::1", True),
        ("2001::1", True),
        ("100::1", True),
        ("fec0::1", True),
        ("93.184.216.34", False),
        ("8.8.8.8", False),
        ("100.128.0.1", False),
        ("172.32.0.1", False),
        ("2606:4700:4700::1111", False),
        ("::ffff:8.8.8.8", False),
        ("64:ff9b::808:808", False),
        ("2002:808:808::1", False),
    ],
)
def test_default_policy(address: str, refused: bool) -> None:
    assert (EgressPolicy().refusal(address) is not None) is refused


def test_allowed_networks_open_only_their_range() -> None:
    policy = EgressPolicy(tuple(map(ipaddress.ip_network, ["127.0.0.0/8", "10.1.0.0/16"])))
    assert policy.refusal("127.0.0.1") is None
    assert policy.refusal("::ffff:127.0.0.1") is None  # the same address, mapped
    assert policy.refusal("10.1.2.3") is None
    assert policy.refusal("10.2.0.1") is not None
    assert policy.refusal("::1") is not None


def test_allowed_networks_setting(tmp_path: Path) -> None:
    base = {"MCPGW_DATA_DIR": str(tmp_path), "MCPGW_JWT_SECRET": JWT_SECRET}
    assert load_settings(base).upstream_allowed_networks == ()
    assert (
        load_settings({**base, "MCPGW_UPSTREAM_ALLOWED_NETWORKS": " "}).upstream_allowed_networks
        == ()
    )
    given = load_settings({**base, "MCPGW_UPSTREAM_ALLOWED_NETWORKS": "10.0.0.0/8, ::1,"})
    assert given.upstream_allowed_networks == (
        ipaddress.ip_network("10.0.0.0/8"),
        ipaddress.ip_network("::1/128"),
    )


@pytest.mark.parametrize(
    "value", ["10.0.0.0/33", "not-a-network", "10.0.0.1/8", "127.0.0.0/8,fe80::/129"]
)
def test_a_bad_allowed_network_is_a_config_error(tmp_path: Path, value: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(
            {
                "MCPGW_DATA_DIR": str(tmp_path),
                "MCPGW_JWT_SECRET": JWT_SECRET,
                "MCPGW_UPSTREAM_ALLOWED_NETWORKS": value,
            }
        )
    assert len(info.value.problems) == 1
    assert info.value.problems[0].startswith("MCPGW_UPSTREAM_ALLOWED_NETWORKS: ")


async def test_demo_opens_only_its_own_upstream(tmp_path: Path) -> None:
    from gateway.demo import with_upstream_allowed

    settings = load_settings({"MCPGW_DATA_DIR": str(tmp_path), "MCPGW_JWT_SECRET": JWT_SECRET})
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        opened = with_upstream_allowed(settings, sock)
    policy = EgressPolicy(opened.upstream_allowed_networks)
    assert policy.refusal("127.0.0.1") is None
    assert policy.refusal("127.0.0.2") is not None
