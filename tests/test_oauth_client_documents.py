"""Client ID metadata documents: an https client_id is fetched with the egress-checked upstream
client (here trusting a local self-signed certificate), bounded in size and time, cached, and
its redirect URIs enforced on the consent page."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, cast
from urllib.parse import urlencode

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from conftest import Api
from oauth_flow import CALL, REDIRECT, TOOLS, approve, parse_page, pkce_pair
from tls import server_context, trusting

from gateway.oauth.authorization import OAUTH_SERVER
from settings_api.egress import create_upstream_client, parse_networks
from settings_api.oauth.clients import ClientRegistry, ClientUnavailable, DocumentLimits
from settings_api.store import Store

pytestmark = pytest.mark.backends("sqlite")

LOOPBACK = parse_networks("127.0.0.0/8,::1/128")


class DocumentServer:
    """An HTTPS server of client metadata documents: `documents[path]` is the body (a dict is
    sent as JSON), `delay_s` holds each answer; `hits` counts requests per path."""

    def __init__(self) -> None:
        self.documents: dict[str, Any] = {}
        self.hits: dict[str, int] = {}
        self.delay_s = 0.0
        self.server: TestServer | None = None

    def url(self, path: str) -> str:
        assert self.server is not None
        return f"https://localhost:{self.server.port}{path}"

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.hits[request.path] = self.hits.get(request.path, 0) + 1
        await asyncio.sleep(self.delay_s)
        body = self.documents.get(request.path)
        if body is None:
            return web.Response(status=404)
        if isinstance(body, web.StreamResponse):
            return body
        text = json.dumps(body) if isinstance(body, dict) else body
        return web.Response(text=text, content_type="application/json")


@pytest.fixture
async def documents(
    aiohttp_server: Any, tmp_path: Path
) -> AsyncIterator[tuple[DocumentServer, Path]]:
    context, cert = server_context(tmp_path, dns=["localhost"], ips=["127.0.0.1"])
    docs = DocumentServer()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", docs.handle)
    docs.server = await aiohttp_server(app, ssl=context)
    yield docs, cert


@pytest.fixture
async def trusted_http(
    documents: tuple[DocumentServer, Path],
) -> AsyncIterator[aiohttp.ClientSession]:
    async with create_upstream_client(
        allowed_networks=LOOPBACK, timeout_s=10, ssl_context=trusting(documents[1])
    ) as session:
        yield session


def document(url: str, **fields: Any) -> dict[str, Any]:
    return {
        "client_id": url,
        "client_name": "Doc Client",
        "redirect_uris": [REDIRECT],
        "token_endpoint_auth_method": "none",
        **fields,
    }


def registry(http: aiohttp.ClientSession, **limits: Any) -> ClientRegistry:
    # Documents never touch the store.
    return ClientRegistry(cast(Store, None), http, DocumentLimits(**limits))


async def test_a_document_is_fetched_once_and_cached(
    documents: tuple[DocumentServer, Path], trusted_http: aiohttp.ClientSession
) -> None:
    docs, _ = documents
    url = docs.url("/client.json")
    docs.documents["/client.json"] = document(url)
    clients = registry(trusted_http)
    first = await clients.find(url)
    again = await clients.find(url)
    assert first is not None and first == again
    assert (first.client_id, first.client_name, first.redirect_uris) == (
        url,
        "Doc Client",
        [REDIRECT],
    )
    assert docs.hits["/client.json"] == 1


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ("other-client", "names another client_id"),
        ("x" * 20_000, "too large"),
        ("not json", "not JSON"),
        ("secret", "not acceptable"),
        ("bad-redirect", "not acceptable"),
        ("redirect", "HTTP 302"),
        (None, "HTTP 404"),
    ],
)
async def test_unusable_documents(
    documents: tuple[DocumentServer, Path],
    trusted_http: aiohttp.ClientSession,
    body: str | None,
    reason: str,
) -> None:
    docs, _ = documents
    url = docs.url("/client.json")
    served: Any = {
        "other-client": document("https://elsewhere.example/client.json"),
        "secret": document(url, token_endpoint_auth_method="client_secret_basic"),
        "bad-redirect": document(url, redirect_uris=["http://example.com/cb"]),
        "redirect": web.Response(status=302, headers={"Location": docs.url("/elsewhere.json")}),
    }.get(body or "", body)
    if served is not None:
        docs.documents["/client.json"] = served
    docs.documents["/elsewhere.json"] = document(url)
    with pytest.raises(ClientUnavailable, match=reason):
        await registry(trusted_http).find(url)
    assert "/elsewhere.json" not in docs.hits  # redirects are not followed


async def test_a_slow_document_is_given_up(
    documents: tuple[DocumentServer, Path], trusted_http: aiohttp.ClientSession
) -> None:
    docs, _ = documents
    url = docs.url("/client.json")
    docs.documents["/client.json"] = document(url)
    docs.delay_s = 2.0
    clients = registry(trusted_http, timeout_s=0.2)
    with pytest.raises(ClientUnavailable, match="in time"):
        await clients.find(url)
    # The failure is remembered a while: no second fetch for the next request.
    with pytest.raises(ClientUnavailable):
        await clients.find(url)
    assert docs.hits["/client.json"] == 1


async def test_the_egress_policy_applies(documents: tuple[DocumentServer, Path]) -> None:
    docs, cert = documents
    url = docs.url("/client.json")
    docs.documents["/client.json"] = document(url)
    # The default policy: loopback is not reachable.
    async with create_upstream_client(timeout_s=5, ssl_context=trusting(cert)) as http:
        with pytest.raises(ClientUnavailable, match="could not be fetched"):
            await registry(http).find(url)
    assert "/client.json" not in docs.hits


@pytest.mark.parametrize(
    "client_id",
    [
        "https://client.example",
        "https://client.example/",
        "https://client.example/a/../b.json",
        "https://user@client.example/c.json",
    ],
)
async def test_client_id_urls_that_cannot_name_a_document(client_id: str) -> None:
    with pytest.raises(ClientUnavailable):
        await registry(cast(aiohttp.ClientSession, None)).find(client_id)


async def test_consent_with_a_document_client(
    client: TestClient,
    api: Api,
    documents: tuple[DocumentServer, Path],
    trusted_http: aiohttp.ClientSession,
) -> None:
    key = await api.enabled_key(TOOLS)
    docs, _ = documents
    url = docs.url("/client.json")
    docs.documents["/client.json"] = document(url)
    client.app[OAUTH_SERVER].clients.http = trusted_http
    verifier, challenge = pkce_pair()
    query = {
        "response_type": "code",
        "client_id": url,
        "redirect_uri": REDIRECT,
        "code_challenge": challenge,
        "code_challenge_method": "S256",
        "state": "s",
        "resource": CALL,
    }
    async with client.get(
        "/oauth/authorize?" + urlencode({**query, "redirect_uri": "http://127.0.0.1:1/x"})
    ) as resp:
        assert resp.status == 400  # not a redirect URI of the document
        assert parse_page(await resp.text())[0] is None
    answer = await approve(client, "/oauth/authorize?" + urlencode(query), key)
    async with client.post(
        "/oauth/token",
        data={
            "grant_type": "authorization_code",
            "client_id": url,
            "code": answer["code"],
            "code_verifier": verifier,
            "redirect_uri": REDIRECT,
        },
    ) as resp:
        assert resp.status == 200
    _, listed = await api.call("GET", "/crm/mcp/oauth/clients", 200)
    [item] = listed["items"]
    assert (item["clientId"], item["clientName"]) == (url, "Doc Client")
    assert item["redirectHosts"] == ["127.0.0.1:33418"]
