"""What an OAuth client and a person at the browser do, for tests of the authorization server:
PKCE pairs, the consent page's form read from its HTML, and the flow over an aiohttp client
(a `TestClient` of the app, or a `ClientSession` with a cookie jar that accepts IP hosts)."""

from __future__ import annotations

import base64
import hashlib
import secrets
from dataclasses import dataclass
from html.parser import HTMLParser
from typing import Any
from urllib.parse import parse_qs, urlencode, urljoin, urlsplit

from aiohttp import ClientSession
from aiohttp.test_utils import TestClient

from settings_api.oauth.tokens import hash_token
from settings_api.routes import SERVICE

# A TestClient of the app, or a ClientSession with `base_url` at a live gateway.
Http = TestClient | ClientSession


def pkce_pair() -> tuple[str, str]:
    """(code_verifier, its S256 code_challenge)."""
    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode()).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


@dataclass
class ConsentForm:
    """The page's one form: where it posts and its fields (hidden ones with their values)."""

    method: str
    action: str
    fields: dict[str, str]
    inputs: list[dict[str, str]]  # every <input>'s attributes
    labels: dict[str, str]  # label `for` → its text
    buttons: list[dict[str, str]]

    def filled(self, api_key: str, decision: str = "approve") -> dict[str, str]:
        return {**self.fields, "api_key": api_key, "decision": decision}


class _FormParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.forms: list[ConsentForm] = []
        self.scripts = 0
        self._label: str | None = None
        self.labels: dict[str, str] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "script":
            self.scripts += 1
        elif tag == "form":
            self.forms.append(
                ConsentForm(a.get("method", "get"), a.get("action", ""), {}, [], {}, [])
            )
        elif tag == "input" and self.forms:
            form = self.forms[-1]
            form.inputs.append(a)
            if a.get("type") == "hidden":
                form.fields[a["name"]] = a.get("value", "")
        elif tag == "button" and self.forms:
            self.forms[-1].buttons.append(a)
        elif tag == "label":
            self._label = a.get("for", "")
            self.labels[self._label] = ""

    def handle_data(self, data: str) -> None:
        if self._label is not None:
            self.labels[self._label] += data

    def handle_endtag(self, tag: str) -> None:
        if tag == "label":
            self._label = None


def parse_page(html: str) -> tuple[ConsentForm | None, int]:
    """The page's form (None when it has none) and how many <script> elements it has."""
    parser = _FormParser()
    parser.feed(html)
    form = parser.forms[0] if parser.forms else None
    if form is not None:
        form.labels = parser.labels
    return form, parser.scripts


def redirect_params(location: str) -> dict[str, str]:
    """The query parameters of a redirect back to the client (each given once)."""
    query = parse_qs(urlsplit(location).query, keep_blank_values=True)
    assert all(len(v) == 1 for v in query.values()), query
    return {k: v[0] for k, v in query.items()}


async def approve(
    client: Any, authorize_url: str, api_key: str, *, post_to: str | None = None
) -> dict[str, str]:
    """Load the consent page at `authorize_url`, fill in `api_key`, approve (at `post_to`, by
    default the form's action): the parameters of the redirect back to the client (code,
    state, iss; or error)."""
    async with client.get(authorize_url, allow_redirects=False) as page:
        assert page.status == 200, (page.status, await page.text())
        form, _ = parse_page(await page.text())
    assert form is not None
    async with client.post(
        post_to or urljoin(authorize_url, form.action),
        data=form.filled(api_key),
        allow_redirects=False,
    ) as answer:
        assert answer.status in (302, 303), (answer.status, await answer.text())
        return redirect_params(answer.headers["Location"])


# The app under test (conftest's MCPGW_PUBLIC_URL) and a client registered with it.
PUBLIC = "http://gw.test:8080"
ISSUER = PUBLIC + "/"
CALL = f"{PUBLIC}/v1/tenants/acme/integrations/crm/mcp:call"
TEST = f"{PUBLIC}/v1/tenants/acme/integrations/crm/mcp:test"
REDIRECT = "http://127.0.0.1:33418/callback"
TOOLS = [{"name": "search_contacts", "inputSchema": {"type": "object"}}]


async def register(client: Http, **metadata: Any) -> str:
    body = {"client_name": "Test Client", "redirect_uris": [REDIRECT], **metadata}
    async with client.post("/oauth/register", json=body) as resp:
        assert resp.status == 201, await resp.text()
        return str((await resp.json())["client_id"])


def authorize_path(client_id: str, challenge: str, /, **overrides: str | None) -> str:
    params: dict[str, str | None] = {
        "response_type": "code",
        "client_id": client_id,
        "redirect_uri": REDIRECT,
        "code_challenge": challenge,
        "code_challenge_method": "S256",
        "state": "st-123",
        "resource": CALL,
        **overrides,
    }
    return "/oauth/authorize?" + urlencode({k: v for k, v in params.items() if v is not None})


async def token_request(client: Http, **form: str) -> tuple[int, dict[str, Any]]:
    async with client.post("/oauth/token", data=form) as resp:
        assert resp.headers["Cache-Control"] == "no-store"
        return resp.status, await resp.json()


async def refresh(client: Http, client_id: str, refresh_token: str) -> tuple[int, dict[str, Any]]:
    """A refresh_token grant: (status, body)."""
    return await token_request(
        client, grant_type="refresh_token", client_id=client_id, refresh_token=refresh_token
    )


async def code_for(
    client: Http, client_id: str, api_key: str, resource: str = CALL
) -> tuple[str, str]:
    """(code, verifier) of an approved request."""
    verifier, challenge = pkce_pair()
    answer = await approve(client, authorize_path(client_id, challenge, resource=resource), api_key)
    return answer["code"], verifier


async def tokens_for(
    client: Http, client_id: str, api_key: str, resource: str = CALL
) -> dict[str, Any]:
    code, verifier = await code_for(client, client_id, api_key, resource)
    status, body = await exchange(client, client_id, code, verifier, resource=resource)
    assert status == 200, body
    return body


async def exchange(
    client: Http,
    client_id: str,
    code: str,
    verifier: str,
    redirect: str = REDIRECT,
    resource: str = CALL,
) -> tuple[int, dict[str, Any]]:
    return await token_request(
        client,
        grant_type="authorization_code",
        client_id=client_id,
        code=code,
        code_verifier=verifier,
        redirect_uri=redirect,
        resource=resource,
    )


async def access_state(client: TestClient, access_token: str) -> str:
    """'live', 'revoked' or 'unknown', as the data plane's lookup sees the token."""
    found = await client.app[SERVICE].find_access_token(hash_token(access_token))
    if found is None:
        return "unknown"
    return "revoked" if found.revoked else "live"
