"""OAuth end to end: the official Python SDK 2.x's `OAuthClientProvider`, with no API key and
no custom header, connects to callUrl and testUrl of a real gateway process in both modes.

The SDK follows the 401 challenge to the protected resource metadata, the authorization
server metadata, registers itself, and opens the consent page; the "person" here is a
redirect handler that loads the page, types the integration's API key into `api_key`,
approves, and hands the redirect's `code`, `state` and `iss` to the SDK's callback. The SDK
then exchanges the code (PKCE) and lists and calls tools with the access token; callUrl's call
reaches the stub upstream, testUrl's the simulator."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import aiohttp
import httpx2
import pytest
from crm_integration import TOOLS, crm_gateway
from mcp.client import Client
from mcp.client.auth import AuthorizationCodeResult, OAuthClientProvider
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.auth import OAuthClientInformationFull, OAuthClientMetadata, OAuthToken
from mcp.types import CallToolResult
from mcp_stub import StubUpstream
from oauth_flow import parse_page, redirect_params
from processes import GatewayProcess

pytestmark = pytest.mark.slow

REDIRECT_URI = "http://127.0.0.1:33418/callback"  # never listened on: the handler reads it


@dataclass
class Gateway:
    key: str
    urls: dict[str, str]  # "call" / "test" → the URL
    upstream: StubUpstream
    proc: GatewayProcess


@pytest.fixture
async def gateway(tmp_path: Path, aiohttp_server: Any) -> AsyncIterator[Gateway]:
    async with serving(tmp_path, aiohttp_server) as served:
        yield served


@asynccontextmanager
async def serving(tmp_path: Path, aiohttp_server: Any, **env: str) -> AsyncIterator[Gateway]:
    """A gateway process (at its own MCPGW_PUBLIC_URL) with the CRM integration bound to a
    stub upstream."""
    stub = StubUpstream(tools=TOOLS)
    async with crm_gateway(tmp_path, aiohttp_server, stub, **env) as (proc, settings):
        urls = {"call": settings["callUrl"], "test": settings["testUrl"]}
        yield Gateway(settings["apiKey"], urls, stub, proc)


class MemoryStorage:
    """The SDK's `TokenStorage`, in memory."""

    def __init__(self) -> None:
        self.tokens: OAuthToken | None = None
        self.client: OAuthClientInformationFull | None = None

    async def get_tokens(self) -> OAuthToken | None:
        return self.tokens

    async def set_tokens(self, tokens: OAuthToken) -> None:
        self.tokens = tokens

    async def get_client_info(self) -> OAuthClientInformationFull | None:
        return self.client

    async def set_client_info(self, client_info: OAuthClientInformationFull) -> None:
        self.client = client_info


@dataclass
class Person:
    """Approves every authorization request with `key`, the way a person at a browser would."""

    key: str
    approvals: int = 0
    pages: list[str] = field(default_factory=list)
    redirect: dict[str, str] = field(default_factory=dict)

    async def open(self, authorization_url: str) -> None:
        """The SDK's redirect handler: load the page, fill `api_key`, approve."""
        # IP-address hosts keep their cookies only in an unsafe jar (a CSRF cookie, if any).
        jar = aiohttp.CookieJar(unsafe=True)
        timeout = aiohttp.ClientTimeout(total=10)
        async with aiohttp.ClientSession(cookie_jar=jar, timeout=timeout) as browser:
            async with browser.get(authorization_url) as page:
                html = await page.text()
                assert page.status == 200, html
                assert page.content_type == "text/html"
            self.pages.append(html)
            form, scripts = parse_page(html)
            assert form is not None and form.method.lower() == "post" and scripts == 0, html
            password = [i for i in form.inputs if i.get("name") == "api_key"]
            assert password and password[0].get("type") == "password", form.inputs
            action = urljoin(authorization_url, form.action)
            async with browser.post(
                action, data=form.filled(self.key), allow_redirects=False
            ) as answer:
                assert answer.status in (302, 303), await answer.text()
                location = answer.headers["Location"]
        assert location.startswith(REDIRECT_URI + "?"), location
        assert self.key not in location
        self.redirect = redirect_params(location)
        self.approvals += 1

    async def callback(self) -> AuthorizationCodeResult:
        """The SDK's callback handler: what the redirect carried."""
        return AuthorizationCodeResult(
            code=self.redirect["code"],
            state=self.redirect.get("state"),
            iss=self.redirect.get("iss"),
        )


def oauth_provider(url: str, person: Person, storage: MemoryStorage) -> OAuthClientProvider:
    return OAuthClientProvider(
        server_url=url,
        client_metadata=OAuthClientMetadata(
            client_name="OAuth e2e test",
            redirect_uris=[REDIRECT_URI],  # type: ignore[list-item]
            grant_types=["authorization_code", "refresh_token"],
            response_types=["code"],
            token_endpoint_auth_method="none",
        ),
        storage=storage,
        redirect_handler=person.open,
        callback_handler=person.callback,
    )


async def list_and_call(url: str, mode: str, provider: OAuthClientProvider) -> tuple[Any, ...]:
    """An OAuth-only client (no key, no custom header): protocol, tools, one call."""
    http = httpx2.AsyncClient(auth=provider, timeout=10)
    client = Client(
        streamable_http_client(url, http_client=http), mode=mode, read_timeout_seconds=10
    )
    async with http, client:
        listed = await client.list_tools()
        result: CallToolResult = await client.call_tool("search_contacts", {"query": "ada"})
        return client.protocol_version, [t.name for t in listed.tools], result


@pytest.mark.parametrize(("mode", "version"), [("auto", "2026-07-28"), ("legacy", "2025-11-25")])
async def test_oauth_only_sdk_client_lists_and_calls_on_both_urls(
    gateway: Gateway, mode: str, version: str
) -> None:
    for which in ("test", "call"):
        url = gateway.urls[which]
        person, storage = Person(gateway.key), MemoryStorage()
        before = gateway.upstream.calls["tools/call"]
        protocol, tools, result = await list_and_call(
            url, mode, oauth_provider(url, person, storage)
        )
        assert protocol == version
        assert tools == ["search_contacts"]
        assert not result.is_error and result.content, result
        # callUrl's call reached the upstream; testUrl's never does.
        assert gateway.upstream.calls["tools/call"] - before == (1 if which == "call" else 0)

        # One approval, on a page that named the client and the integration; the SDK holds
        # its tokens.
        assert person.approvals == 1
        assert "OAuth e2e test" in person.pages[0] and "crm" in person.pages[0]
        assert storage.tokens is not None and storage.tokens.access_token.startswith("mcpat_")
        assert storage.tokens.access_token != gateway.key
        assert person.redirect["iss"] == url.split("/v1/")[0] + "/"

        # A new connection with the stored tokens needs no approval.
        again = await list_and_call(url, mode, oauth_provider(url, person, storage))
        assert again[1] == ["search_contacts"] and person.approvals == 1

        log = gateway.proc.log()
        assert storage.tokens.access_token not in log and gateway.key not in log
        assert storage.tokens.refresh_token is not None
        assert storage.tokens.refresh_token not in log
        assert person.redirect["code"] not in log


async def test_sdk_refreshes_an_expired_access_token_without_asking_again(
    tmp_path: Path, aiohttp_server: Any
) -> None:
    async with serving(tmp_path, aiohttp_server, MCPGW_OAUTH_ACCESS_TOKEN_TTL_S="1") as gateway:
        url = gateway.urls["call"]
        person, storage = Person(gateway.key), MemoryStorage()
        http = httpx2.AsyncClient(auth=oauth_provider(url, person, storage), timeout=10)
        client = Client(
            streamable_http_client(url, http_client=http), mode="auto", read_timeout_seconds=10
        )
        async with http, client:
            await client.list_tools()
            first = storage.tokens
            assert first is not None and first.expires_in == 1
            await asyncio.sleep(1.5)  # the access token expired
            listed = await client.list_tools(cache_mode="bypass")
        assert [tool.name for tool in listed.tools] == ["search_contacts"]
        assert person.approvals == 1  # refreshed (rotating the refresh token), not approved again
        assert storage.tokens is not None
        assert storage.tokens.access_token != first.access_token
        assert storage.tokens.refresh_token != first.refresh_token
