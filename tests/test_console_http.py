"""The console over plain HTTP (no browser): what a browser test cannot set up cheaply, such as
an expired sign-in link, the settings API's rate limit, and the no-script rotation form."""

from __future__ import annotations

import datetime
import html as html_text
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from conftest import Api, make_settings
from oauth_flow import TOOLS, access_state, register, tokens_for

from console.sign_in_links import SIGN_IN_LINKS
from gateway.server import build_app

pytestmark = pytest.mark.backends("sqlite")


async def signed_in(client: TestClient, jwt: str) -> str:
    """Sign `client` in with `jwt`; the CSRF token of its forms."""
    async with client.post("/console/sign-in", data={"token": jwt}) as resp:
        assert resp.status == 200, await resp.text()
        html = await resp.text()
    found = re.search(r'name="csrf" value="([0-9a-f]+)"', html)
    assert found is not None
    return found.group(1)


def confirmation_fields(html: str) -> dict[str, str]:
    """The fields of the page's no-script confirmation form, as rendered."""
    confirmation = re.search(r'<form[^>]*class="confirm".*?</form>', html, re.S)
    assert confirmation is not None
    return dict(re.findall(r'name="(\w+)" value="([^"]*)"', confirmation.group(0)))


async def test_a_sign_in_link_works_once_and_not_after_it_expired(
    client: TestClient, token: Callable[..., str]
) -> None:
    links = client.app[SIGN_IN_LINKS]
    code = links.issue(token("acme"))
    async with client.get(f"/console/sign-in/{code}", allow_redirects=False) as resp:
        assert resp.status == 303 and resp.headers["Location"] == "/console/tenants/acme"
    async with client.get(f"/console/sign-in/{code}", allow_redirects=False) as resp:
        assert resp.status == 400
        assert "used already or it expired" in await resp.text()

    links.ttl_s = 0.0
    expired = links.issue(token("acme"))
    async with client.get(f"/console/sign-in/{expired}", allow_redirects=False) as resp:
        assert resp.status == 400


async def test_a_token_for_several_tenants_asks_which_one(
    client: TestClient, token: Callable[..., str]
) -> None:
    async with client.post("/console/sign-in", data={"token": token("*")}) as resp:
        assert resp.status == 400
        assert "enter the one to open" in await resp.text()
    data = {"token": token("*"), "tenant": "globex"}
    async with client.post("/console/sign-in", data=data, allow_redirects=False) as resp:
        assert resp.status == 303 and resp.headers["Location"] == "/console/tenants/globex"


async def test_console_pages_spend_the_tokens_settings_api_bucket(
    aiohttp_client: Any, tmp_path: Path, token: Callable[..., str]
) -> None:
    settings = make_settings(
        tmp_path,
        f"sqlite:///{tmp_path}/db.sqlite",
        MCPGW_SETTINGS_RATE_LIMIT_RPS="0.001",
        MCPGW_SETTINGS_RATE_LIMIT_BURST="3",
    )
    client = await aiohttp_client(build_app(settings))
    jwt = token("acme")
    await signed_in(client, jwt)  # the sign-in and the page it lands on: 2
    async with client.get("/console/tenants/acme/audit") as resp:
        assert resp.status == 200
    async with client.get("/console/tenants/acme") as resp:
        assert resp.status == 429
        assert "Retry-After" in resp.headers
        assert "rate limit exceeded" in await resp.text()
        assert "frame-ancestors 'none'" in resp.headers["Content-Security-Policy"]
    # the same bucket as the REST API's
    headers = {"Authorization": f"Bearer {jwt}"}
    async with client.get("/v1/tenants/acme/integrations", headers=headers) as resp:
        assert resp.status == 429


async def test_rotation_without_script_asks_on_the_page_first(
    client: TestClient, api: Api, token: Callable[..., str]
) -> None:
    key = await api.enabled_key([{"name": "echo", "inputSchema": {"type": "object"}}])
    csrf = await signed_in(client, token("acme"))
    path = "/console/tenants/acme/integrations/crm/rotate"
    async with client.post(path, data={"csrf": csrf, "confirmed": "0"}) as resp:
        html = await resp.text()
        assert resp.status == 200 and "Confirm rotation" in html and "api-key" not in html
    _, settings = await api.call("GET", "/crm/mcp", 200)
    assert settings["keyPrefix"] == key[:12]  # nothing rotated yet
    async with client.post(path, data={"csrf": csrf, "confirmed": "1"}) as resp:
        html = await resp.text()
    new_key = re.search(r'data-testid="api-key">(mcpk_\w+)<', html)
    assert new_key is not None and new_key.group(1) != key
    _, settings = await api.call("GET", "/crm/mcp", 200)
    assert settings["keyPrefix"] == new_key.group(1)[:12]


async def test_revoking_an_oauth_client_without_script_asks_on_the_page_first(
    client: TestClient, api: Api, token: Callable[..., str]
) -> None:
    key = await api.enabled_key(TOOLS)
    client_id = await register(client, client_name="Inspector")
    tokens = await tokens_for(client, client_id, key)
    csrf = await signed_in(client, token("acme"))
    async with client.get("/console/tenants/acme/integrations/crm") as resp:
        assert "Inspector" in await resp.text()
    path = "/console/tenants/acme/integrations/crm/oauth-clients/revoke"
    form = {"csrf": csrf, "clientId": client_id, "confirmed": "0"}
    async with client.post(path, data=form) as resp:
        html = await resp.text()
        assert resp.status == 200 and "Confirm revocation" in html and "Revoke Inspector?" in html
    forged = {**form, "csrf": "0" * 64, "confirmed": "1"}
    async with client.post(path, data=forged) as resp:
        assert resp.status == 403 and "not from this console session" in await resp.text()
    assert await access_state(client, tokens["access_token"]) == "live"
    # the page's confirmation form, as rendered
    fields = confirmation_fields(html)
    assert fields == {**form, "confirmed": "1"}
    async with client.post(path, data=fields, allow_redirects=False) as resp:
        assert resp.status == 303
    assert await access_state(client, tokens["access_token"]) == "revoked"
    # a second time: the API's 404, next to the list
    async with client.post(path, data={**form, "confirmed": "1"}) as resp:
        assert resp.status == 404 and "holds no tokens" in await resp.text()


async def test_a_bad_calls_cursor_is_a_page_in_words(
    client: TestClient, api: Api, token: Callable[..., str]
) -> None:
    await api.enabled_key(TOOLS)
    await signed_in(client, token("acme"))
    async with client.get("/console/tenants/acme/integrations/crm?calls=nope") as resp:
        assert resp.status == 422
        assert "cursor" in await resp.text()


TWO_TOOLS = [
    {"name": "search_contacts", "inputSchema": {"type": "object"}},
    {"name": "create_note", "inputSchema": {"type": "object"}},
]
CRM_PAGE = "/console/tenants/acme/integrations/crm"


def error_next_to(html: str, place: str) -> str:
    """The text of the error block of `place` (a form, or `form.field`)."""
    found = re.search(
        rf'<div class="error" role="alert" id="{re.escape(place)}-error">(.*?)</div>', html, re.S
    )
    assert found is not None, f"no error next to {place}"
    return html_text.unescape(re.sub(r"<[^>]+>", "", found.group(1))).strip()


async def test_a_deleted_default_key_leaves_a_page_that_says_how_to_get_one(
    client: TestClient, api: Api, token: Callable[..., str]
) -> None:
    await api.enabled_key(TOOLS)
    _, listed = await api.call("GET", "/crm/mcp/keys", 200)
    (default,) = listed["keys"]
    await api.call("DELETE", f"/crm/mcp/keys/{default['apiKeyId']}", 204)
    csrf = await signed_in(client, token("acme"))
    for page in (CRM_PAGE, "/console/tenants/acme"):
        async with client.get(page) as resp:
            assert resp.status == 200, await resp.text()
    async with client.get(CRM_PAGE) as resp:
        html = await resp.text()
    assert "no default key: it was deleted" in html and "Rotate key" in html
    assert 'data-testid="key-prefix"' not in html
    # rotating mints the next default key
    data = {"csrf": csrf, "confirmed": "1", "gracePeriodSeconds": "0"}
    async with client.post(CRM_PAGE + "/rotate", data=data) as resp:
        assert resp.status == 200
        minted = re.search(r'data-testid="api-key">(mcpk_\w+)<', await resp.text())
    assert minted is not None
    _, settings = await api.call("GET", "/crm/mcp", 200)
    assert settings["keyPrefix"] == minted.group(1)[:12]


async def test_a_new_key_is_shown_once_and_its_errors_next_to_their_fields(
    client: TestClient, api: Api, token: Callable[..., str]
) -> None:
    await api.enabled_key(TWO_TOOLS, exposed=["search_contacts"])
    csrf = await signed_in(client, token("acme"))
    async with client.get(CRM_PAGE) as resp:
        html = await resp.text()
    # only the exposed tools are offered for narrowing
    assert 'name="toolId" value="search_contacts"' in html
    assert 'name="toolId" value="create_note"' not in html

    bad = {"csrf": csrf, "label": "default", "expiresAt": "tomorrow"}
    async with client.post(CRM_PAGE + "/keys", data=bad) as resp:
        html = await resp.text()
        assert resp.status == 422
    assert "date and time" in error_next_to(html, "key.expiresAt")
    bad = {"csrf": csrf, "label": "default"}
    async with client.post(CRM_PAGE + "/keys", data=bad) as resp:
        html = await resp.text()
        assert resp.status == 422
    assert "'default'" in error_next_to(html, "key.label")
    assert 'value="default"' in html  # what was typed stays in the form
    forged_tool = {"csrf": csrf, "label": "ci", "toolId": "nope"}
    async with client.post(CRM_PAGE + "/keys", data=forged_tool) as resp:
        assert resp.status == 422
        assert "nope" in error_next_to(await resp.text(), "key.toolIds")

    good = {
        "csrf": csrf,
        "label": "ci",
        "expiresAt": "2099-01-31T18:00",
        "toolId": "search_contacts",
    }
    async with client.post(CRM_PAGE + "/keys", data=good) as resp:
        assert resp.status == 200
        html = await resp.text()
    raw = re.search(r'data-testid="api-key">(mcpk_\w+)<', html)
    assert raw is not None and "\u201cci\u201d: shown once" in html
    cursor = html.split('data-testid="cursor-config">')[1]
    assert raw.group(1) in cursor.split("</pre>")[0]
    _, listed = await api.call("GET", "/crm/mcp/keys", 200)
    ci = next(k for k in listed["keys"] if k["label"] == "ci")
    expires = datetime.datetime(2099, 1, 31, 18, 0, tzinfo=datetime.UTC)
    assert ci["expiresAt"] == expires.timestamp() * 1000 and ci["toolIds"] == ["search_contacts"]
    async with client.get(CRM_PAGE) as resp:
        html = await resp.text()
    assert raw.group(1) not in html and ci["keyPrefix"] in html
    # a past expiry makes a key born expired, as in the API, and the list says so
    born_expired = {"csrf": csrf, "label": "old", "expiresAt": "2000-01-01T00:00:00"}
    async with client.post(CRM_PAGE + "/keys", data=born_expired) as resp:
        assert resp.status == 200
    async with client.get(CRM_PAGE) as resp:
        row = (await resp.text()).split('data-testid="key-label">old<')[1].split("</tr>")[0]
    assert "expired" in row and "2000-01-01 00:00:00 UTC" in row


async def test_deleting_a_key_without_script_asks_on_the_page_first(
    client: TestClient, api: Api, token: Callable[..., str]
) -> None:
    await api.enabled_key(TOOLS)
    _, created = await api.call("POST", "/crm/mcp/keys", 201, json={"label": "laptop"})
    csrf = await signed_in(client, token("acme"))
    path = CRM_PAGE + "/keys/delete"
    form = {"csrf": csrf, "apiKeyId": created["apiKeyId"], "confirmed": "0"}
    async with client.post(path, data=form) as resp:
        html = await resp.text()
        assert resp.status == 200 and "Confirm deletion" in html
        assert "Delete the key laptop" in html
    _, listed = await api.call("GET", "/crm/mcp/keys", 200)
    assert len(listed["keys"]) == 2  # nothing deleted yet
    fields = confirmation_fields(html)
    assert fields == {**form, "confirmed": "1"}
    async with client.post(path, data=fields, allow_redirects=False) as resp:
        assert resp.status == 303
    _, listed = await api.call("GET", "/crm/mcp/keys", 200)
    assert [k["label"] for k in listed["keys"]] == ["default"]
    async with client.post(path, data=fields) as resp:
        assert resp.status == 404
        assert "does not exist" in error_next_to(await resp.text(), "delete-key")


async def test_a_bad_grace_period_is_shown_next_to_it_and_rotates_nothing(
    client: TestClient, api: Api, token: Callable[..., str]
) -> None:
    key = await api.enabled_key(TOOLS)
    csrf = await signed_in(client, token("acme"))
    for grace in ("86401", "1.5", "-1"):
        data = {"csrf": csrf, "confirmed": "1", "gracePeriodSeconds": grace}
        async with client.post(CRM_PAGE + "/rotate", data=data) as resp:
            html = await resp.text()
            assert resp.status == 422, grace
        assert "86400" in error_next_to(html, "rotate.gracePeriodSeconds")
        assert 'data-testid="api-key"' not in html
    _, settings = await api.call("GET", "/crm/mcp", 200)
    assert settings["keyPrefix"] == key[:12]
    # the no-script confirmation carries the grace period on
    data = {"csrf": csrf, "confirmed": "0", "gracePeriodSeconds": "30"}
    async with client.post(CRM_PAGE + "/rotate", data=data) as resp:
        html = await resp.text()
    assert confirmation_fields(html)["gracePeriodSeconds"] == "30"
