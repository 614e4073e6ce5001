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
from urllib.parse import parse_qs, urlsplit


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


async def approve(client: Any, authorize_url: str, api_key: str) -> dict[str, str]:
    """Load the consent page at `authorize_url`, fill in `api_key`, approve: the parameters of
    the redirect back to the client (code, state, iss; or error)."""
    async with client.get(authorize_url, allow_redirects=False) as page:
        assert page.status == 200, (page.status, await page.text())
        form, _ = parse_page(await page.text())
    assert form is not None
    async with client.post(
        _path_of(client, form.action), data=form.filled(api_key), allow_redirects=False
    ) as answer:
        assert answer.status in (302, 303), (answer.status, await answer.text())
        return redirect_params(answer.headers["Location"])


def _path_of(client: Any, action: str) -> str:
    # A TestClient takes paths (its server is not at MCPGW_PUBLIC_URL); a session takes URLs.
    return urlsplit(action).path if hasattr(client, "server") else action
