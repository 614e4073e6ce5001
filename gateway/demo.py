"""`mcp-gateway demo`: the gateway, an example upstream MCP server and a ready integration.

One process, one event loop: the example CRM server (:mod:`gateway.example_upstream`) on
127.0.0.1, the gateway (both planes, embedded SQLite store in the data dir, no Redis), and, set
up through the real settings API over HTTP, tenant ``demo`` with integration ``crm`` bound to
the example server with every tool exposed. It prints the API key, callUrl and testUrl, a curl
line, client configurations, a settings-API token, the console's URL and a one-time console
sign-in link, then serves until SIGINT or SIGTERM.

Every run is idempotent on the same data dir: the integration is reused, the config is
re-pointed at this run's upstream (its port may change between runs), and the key is rotated,
because a key is only shown once and never stored (the previous run's key stops working).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import logging
import os
import shlex
import signal
import socket
import sys
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from aiohttp import web

from console.client_configs import (
    claude_desktop_config,
    connector_steps,
    cursor_config,
    mcp_remote_oauth_config,
)
from console.sign_in_links import LINK_TTL_S, SIGN_IN_LINKS
from gateway.example_upstream import ExampleUpstream
from gateway.server import bind_socket, build_app, use_fast_event_loop
from mcp_core.headers import METHOD_HEADER, NAME_HEADER, PROTOCOL_VERSION_HEADER
from mcp_core.versions import CLIENT_CAPABILITIES_META, MODERN_VERSIONS, PROTOCOL_VERSION_META
from settings_api.config import ConfigError, Settings, load_settings
from settings_api.jwt_auth import issue_token
from settings_api.store import StoreError

__all__ = [
    "CLIENT_NAME",
    "DEMO_INTEGRATION",
    "DEMO_TENANT",
    "DemoError",
    "DemoInfo",
    "curl_command",
    "demo_settings",
    "render",
    "run_demo",
    "with_upstream_allowed",
]

log = logging.getLogger(__name__)

DEMO_TENANT = "demo"
DEMO_INTEGRATION = "crm"
CLIENT_NAME = "crm-demo"  # the server's name in the client configurations
TOKEN_TTL_S = 3600
MODERN_VERSION = MODERN_VERSIONS[0]
SHUTDOWN_TIMEOUT_S = 5.0
DESCRIPTION = (
    "Example CRM served by mcp-gateway demo: search contacts, read one, add notes, list deals."
)
_IGNORED = ("MCPGW_DATABASE_URL", "MCPGW_REDIS_URL")


class DemoError(Exception):
    """The demo could not be set up; the message says what failed."""


@dataclass(frozen=True, slots=True)
class DemoInfo:
    """What the demo prints."""

    api_key: str
    call_url: str
    test_url: str
    token: str
    upstream_url: str
    settings_api: str
    tools: tuple[str, ...]
    created: bool  # the integration was made by this run (else reused from an earlier one)
    console_url: str = ""
    sign_in_link: str = ""  # one-time, expires in LINK_TTL_S


# --------------------------------------------------------------------------- settings, sockets


def demo_settings(env: Mapping[str, str], public_base: str) -> Settings:
    """The regular settings, with the embedded store and no Redis whatever the environment says.

    The data dir is the one `serve` uses (``MCPGW_DATA_DIR`` or its default), so a later
    `mcp-gateway serve` sees the demo's tenant. ``MCPGW_PUBLIC_URL`` defaults to `public_base`.
    """
    values = {k: v for k, v in env.items() if k not in _IGNORED}
    if not values.get("MCPGW_PUBLIC_URL", "").strip():
        values["MCPGW_PUBLIC_URL"] = public_base
    return load_settings(values)


def with_upstream_allowed(settings: Settings, upstream_sock: socket.socket) -> Settings:
    """`settings` with the example upstream's own address (loopback, which the egress policy
    refuses) opened, and no other: the demo works without the user setting anything."""
    host = urlsplit(http_base(upstream_sock)).hostname
    assert host is not None
    own = ipaddress.ip_network(host)
    if own in settings.upstream_allowed_networks:
        return settings
    return settings.with_overrides(
        upstream_allowed_networks=(*settings.upstream_allowed_networks, own)
    )


def http_base(sock: socket.socket) -> str:
    """`http://host:port` that reaches `sock` from this machine (wildcards → loopback)."""
    host, port = sock.getsockname()[:2]
    if host in ("0.0.0.0", ""):  # noqa: S104 - we connect to it, we do not bind it
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


# --------------------------------------------------------------------------- output


def curl_command(
    call_url: str,
    api_key: str,
    tool: str = "search_contacts",
    arguments: Mapping[str, Any] | None = None,
) -> str:
    """One shell line calling `tool` (modern era: stateless, no handshake needed)."""
    body = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "tools/call",
        "params": {
            "name": tool,
            "arguments": dict(arguments or {"query": "ada"}),
            "_meta": {
                PROTOCOL_VERSION_META: MODERN_VERSION,
                CLIENT_CAPABILITIES_META: {},
            },
        },
    }
    words = [
        "curl",
        "-s",
        call_url,
        "-H",
        f"Authorization: Bearer {api_key}",
        "-H",
        "Content-Type: application/json",
        "-H",
        f"{PROTOCOL_VERSION_HEADER}: {MODERN_VERSION}",
        "-H",
        f"{METHOD_HEADER}: tools/call",
        "-H",
        f"{NAME_HEADER}: {tool}",
        "-d",
        json.dumps(body, separators=(",", ":")),
    ]
    return shlex.join(words)


def render(info: DemoInfo) -> str:
    """The text the demo prints: one `name: value` line per value, then the snippets."""
    state = "created" if info.created else "reused from an earlier run; the key was rotated"
    lines = [
        f"mcp-gateway demo: tenant {DEMO_TENANT!r}, integration {DEMO_INTEGRATION!r} ({state})",
        f"example upstream: {info.upstream_url} (tools: {', '.join(info.tools)})",
        "",
        f"API key: {info.api_key}",
        f"callUrl: {info.call_url}",
        f"testUrl: {info.test_url}",
        f"settings API: {info.settings_api}",
        f"settings-API token: {info.token}",
        f"console: {info.console_url}",
        f"console sign-in link: {info.sign_in_link}",
        "",
        "The key is shown once: each run of the demo mints a new one and revokes the last.",
        f"The token is valid {TOKEN_TTL_S // 60} minutes; "
        f"`mcp-gateway token --tenant {DEMO_TENANT}` prints another.",
        f"The sign-in link works once, within {LINK_TTL_S / 60:g} minutes; after that, sign in "
        "to the console with the token.",
        "",
        "Call a tool (callUrl: answered by the example upstream; testUrl: by the simulator):",
        curl_command(info.call_url, info.api_key),
        "",
        "Cursor (~/.cursor/mcp.json):",
        json.dumps(cursor_config(CLIENT_NAME, info.call_url, info.api_key), indent=2),
        "",
        "Claude Desktop (claude_desktop_config.json, through mcp-remote):",
        json.dumps(claude_desktop_config(CLIENT_NAME, info.call_url, info.api_key), indent=2),
        "",
        "Without a header (OAuth: approve with the key on the gateway's consent page):",
        "mcp-remote:",
        json.dumps(mcp_remote_oauth_config(CLIENT_NAME, info.call_url), indent=2),
        "Claude.ai / Claude Desktop custom connector:",
        *(f"  {n}. {step}" for n, step in enumerate(connector_steps(info.call_url), 1)),
        "",
        "Serving until Ctrl-C.",
    ]
    return "\n".join(lines)


# --------------------------------------------------------------------------- provisioning


class _Api:
    """The settings API of the demo integration, over HTTP."""

    def __init__(self, http: aiohttp.ClientSession, base: str) -> None:
        self.http = http
        self.base = f"{base}/v1/tenants/{DEMO_TENANT}/integrations/{DEMO_INTEGRATION}"

    async def call(self, method: str, path: str = "", body: Any = None) -> tuple[int, Any]:
        try:
            async with self.http.request(method, self.base + path, json=body) as resp:
                payload = await resp.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise DemoError(f"{method} {self.base + path} failed: {exc!r}") from exc
        if resp.status >= 300:
            detail = payload.get("detail") if isinstance(payload, dict) else None
            raise DemoError(
                f"{method} {self.base + path} answered {resp.status}: {detail or payload}"
            )
        return resp.status, payload


async def provision(api_base: str, token: str, upstream_url: str, settings_api: str) -> DemoInfo:
    """Create or reuse the demo integration, bind it to `upstream_url`, and get a fresh key."""
    timeout = aiohttp.ClientTimeout(total=60)
    headers = {"Authorization": f"Bearer {token}"}
    async with aiohttp.ClientSession(timeout=timeout, headers=headers) as http:
        api = _Api(http, api_base)
        status, _ = await api.call("PUT", body={"name": "CRM (demo)"})
        created = status == 201
        _, current = await api.call("GET", "/mcp")
        config = None
        if current.get("configId"):
            _, bound = await api.call("GET", f"/configs/{current['configId']}")
            if bound.get("upstreamUrl") == upstream_url:  # a fixed --upstream-port: re-read
                _, config = await api.call("POST", f"/configs/{bound['configId']}:syncTools")
        if config is None:
            _, config = await api.call("POST", "/configs", body={"upstreamUrl": upstream_url})
        tools = [tool["name"] for tool in config["tools"]]
        _, settings = await api.call(
            "PATCH",
            "/mcp",
            body={
                "configId": config["configId"],
                "exposedToolIds": tools,
                "enabled": True,
                "description": DESCRIPTION,
            },
        )
        api_key = settings.get("apiKey")
        if not api_key:  # enabled before: the raw key is not stored, so mint a new one
            _, settings = await api.call("POST", "/mcp:rotateKey")
            api_key = settings["apiKey"]
    return DemoInfo(
        api_key=api_key,
        call_url=settings["callUrl"],
        test_url=settings["testUrl"],
        token=token,
        upstream_url=upstream_url,
        settings_api=settings_api,
        tools=tuple(tools),
        created=created,
    )


# --------------------------------------------------------------------------- running


async def _start(
    stack: contextlib.AsyncExitStack,
    settings: Settings,
    gateway_sock: socket.socket,
    upstream_sock: socket.socket,
) -> DemoInfo:
    upstream = web.AppRunner(
        ExampleUpstream().app(), access_log=None, shutdown_timeout=SHUTDOWN_TIMEOUT_S
    )
    await upstream.setup()
    stack.push_async_callback(upstream.cleanup)
    await web.SockSite(upstream, upstream_sock).start()
    upstream_url = f"{http_base(upstream_sock)}/mcp"

    # As in `serve`: a client that hangs up stops its request's work, and the request
    # middleware (not aiohttp's access log) logs every request.
    app = build_app(settings, "all")
    gateway = web.AppRunner(
        app,
        handler_cancellation=True,
        shutdown_timeout=SHUTDOWN_TIMEOUT_S,
        access_log=None,
    )
    await gateway.setup()
    stack.push_async_callback(gateway.cleanup)  # runs first: its upstream sessions end cleanly
    await web.SockSite(gateway, gateway_sock).start()
    api_base = http_base(gateway_sock)
    log.info(
        "mcp-gateway demo serving on %s (public URL %s, store: sqlite in %s)",
        api_base,
        settings.public_url,
        settings.data_dir,
    )

    token = issue_token(
        settings.jwt_secret,
        DEMO_TENANT,
        ttl_s=TOKEN_TTL_S,
        subject="cli:demo",
        audience=settings.jwt_audience,
        issuer=settings.jwt_issuer,
    )
    settings_api = f"{settings.public_url}/v1/tenants/{DEMO_TENANT}/integrations"
    info = await provision(api_base, token, upstream_url, settings_api)
    # The link stands for the token, so it is spent on first use and expires within minutes.
    code = app[SIGN_IN_LINKS].issue(token)
    return replace(
        info,
        console_url=f"{settings.public_url}/console",
        sign_in_link=f"{settings.public_url}/console/sign-in/{code}",
    )


async def _serve(
    settings: Settings, gateway_sock: socket.socket, upstream_sock: socket.socket
) -> int:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    signals = (signal.SIGINT, signal.SIGTERM)
    for sig in signals:
        loop.add_signal_handler(sig, stop.set)
    try:
        async with contextlib.AsyncExitStack() as stack:
            starting = asyncio.create_task(_start(stack, settings, gateway_sock, upstream_sock))
            stopping = asyncio.create_task(stop.wait())
            await asyncio.wait({starting, stopping}, return_when=asyncio.FIRST_COMPLETED)
            if not starting.done():  # a signal while starting: stop without a traceback
                starting.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await starting
                return 0
            try:
                info = starting.result()
            finally:
                if not stopping.done():
                    stopping.cancel()
            print(render(info), flush=True)
            await stop.wait()
            log.info("mcp-gateway demo stopping")
        return 0
    finally:
        for sig in signals:
            loop.remove_signal_handler(sig)


def run_demo(host: str, port: int, upstream_port: int, env: Mapping[str, str] | None = None) -> int:
    """Run the demo until SIGINT/SIGTERM; the exit status (2: configuration, 1: failure)."""
    env = os.environ if env is None else env
    ignored = [name for name in _IGNORED if env.get(name, "").strip()]
    if ignored:
        log.warning("demo uses the embedded store without Redis; ignoring %s", ", ".join(ignored))
    sockets: list[socket.socket] = []
    try:
        for what, h, p in (
            ("the gateway", host, port),
            ("the example upstream", "127.0.0.1", upstream_port),
        ):
            try:
                sockets.append(bind_socket(h, p))
            except OSError as exc:
                print(
                    f"mcp-gateway: cannot listen on {h}:{p} for {what} ({exc.strerror or exc})",
                    file=sys.stderr,
                )
                return 1
        gateway_sock, upstream_sock = sockets
        try:
            settings = with_upstream_allowed(
                demo_settings(env, http_base(gateway_sock)), upstream_sock
            )
        except ConfigError as exc:
            print(f"mcp-gateway: {exc}", file=sys.stderr)
            return 2
        use_fast_event_loop()
        try:
            return asyncio.run(_serve(settings, gateway_sock, upstream_sock))
        except (DemoError, StoreError) as exc:
            print(f"mcp-gateway: demo failed: {exc}", file=sys.stderr)
            return 1
    except KeyboardInterrupt:  # Ctrl-C before the loop's own handler was installed
        return 0
    finally:
        for sock in sockets:
            sock.close()
