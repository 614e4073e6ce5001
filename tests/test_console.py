"""The admin console end to end: a real headless Chromium (Selenium) against a live
`mcp-gateway serve`, with the example CRM server as the upstream. Each test also checks that
the browser logged no Content-Security-Policy violation; a failing test leaves a screenshot
and the page's HTML in its tmp dir."""

from __future__ import annotations

import asyncio
import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import aiohttp
import pytest
from browser import (
    clipboard_text,
    console_messages,
    emulate_color_scheme,
    grant_clipboard,
    start_chromium,
)
from conftest import JWT_SECRET
from mcp_helpers import modern_headers, modern_message
from net import free_port
from oauth_flow import register, tokens_for
from processes import GatewayProcess
from selenium.common.exceptions import StaleElementReferenceException, WebDriverException
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.ui import WebDriverWait

from gateway.example_upstream import ExampleUpstream
from settings_api.jwt_auth import issue_token

pytestmark = pytest.mark.slow

TENANT = "acme"
CRM_TOOLS = ["search_contacts", "get_contact", "create_note", "list_deals"]
CLIENT_NAME = "Browser Test Client"
SEARCH = ("search_contacts",)
CALLS_PAGE = 20  # recent tool calls the integration page shows at once


# --------------------------------------------------------------------------- live servers


class UpstreamThread:
    """The example CRM MCP server on 127.0.0.1, in a thread with its own event loop."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/mcp"
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        assert self._ready.wait(10), "the example upstream did not start"

    def _run(self) -> None:
        from aiohttp import web

        asyncio.set_event_loop(self._loop)
        runner = web.AppRunner(ExampleUpstream().app())
        self._loop.run_until_complete(runner.setup())
        self._loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", self.port).start())
        self._runner = runner
        self._ready.set()
        self._loop.run_forever()
        self._loop.run_until_complete(runner.cleanup())
        self._loop.close()

    def stop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)


@pytest.fixture(scope="module")
def upstream() -> Iterator[UpstreamThread]:
    server = UpstreamThread()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    workdir = tmp_path_factory.mktemp("console")
    port = free_port()
    env = {
        "MCPGW_DATA_DIR": str(workdir / "data"),
        "MCPGW_DATABASE_URL": f"sqlite:///{workdir}/console.db",
        "MCPGW_JWT_SECRET": JWT_SECRET,
        "MCPGW_PUBLIC_URL": f"http://127.0.0.1:{port}",
    }
    process = GatewayProcess(workdir, "gateway", env, port=port).wait_ready()
    yield process
    process.stop()


@pytest.fixture(scope="module")
def chromium(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebDriver]:
    driver = start_chromium(tmp_path_factory.mktemp("chromium-profile"))
    yield driver
    driver.quit()


@pytest.fixture
def browser(
    chromium: WebDriver, gateway: GatewayProcess, request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[WebDriver]:
    """The shared browser, signed out, on a desktop-sized light window; afterwards: no CSP
    violation logged, and on failure a screenshot and the page's HTML in the test's tmp dir."""
    chromium.delete_all_cookies()
    chromium.set_window_size(1280, 900)
    emulate_color_scheme(chromium, "light")
    grant_clipboard(chromium, gateway.url)
    console_messages(chromium)  # drop what earlier tests left
    yield chromium
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        chromium.save_screenshot(str(tmp_path / "failure.png"))
        (tmp_path / "failure.html").write_text(chromium.page_source)
    violations = [
        m for m in console_messages(chromium) if "Content Security Policy" in m.get("message", "")
    ]
    assert violations == []


# --------------------------------------------------------------------------- helpers


def jwt_for(tenant: str = TENANT) -> str:
    return issue_token(JWT_SECRET, tenant, subject=f"admin@{tenant}")


def wait(driver: WebDriver, timeout_s: float = 15) -> WebDriverWait[WebDriver]:
    return WebDriverWait(driver, timeout_s)


def by_label(driver: WebDriver, text: str) -> WebElement:
    """The control labelled `text` (through <label for>): labels are how users find fields."""
    for label in driver.find_elements(By.TAG_NAME, "label"):
        if label.text.strip() == text or label.text.strip().startswith(text + " ("):
            return driver.find_element(By.ID, label.get_attribute("for") or "")
    raise AssertionError(f"no control labelled {text!r}")


def button(scope: WebDriver | WebElement, text: str) -> WebElement:
    for found in scope.find_elements(By.TAG_NAME, "button"):
        if found.text.strip() == text:
            return found
    raise AssertionError(f"no button {text!r}")


def click_and_load(driver: WebDriver, element: WebElement) -> None:
    """Click `element` and wait until the page it leads to replaced this one."""
    page = driver.find_element(By.TAG_NAME, "html")
    element.click()
    wait(driver).until(lambda _: is_gone(page))
    wait(driver).until(lambda d: d.execute_script("return document.readyState") == "complete")


def is_gone(element: WebElement) -> bool:
    """True once `element`'s document was replaced. Chromium reports an element of a document
    being torn down as "does not belong to the document" rather than as stale."""
    try:
        element.is_enabled()
    except StaleElementReferenceException:
        return True
    except WebDriverException as exc:
        if "does not belong to the document" in str(exc):
            return True
        raise
    return False


def by_testid(driver: WebDriver, name: str) -> WebElement:
    return driver.find_element(By.CSS_SELECTOR, f'[data-testid="{name}"]')


def sign_in(driver: WebDriver, gateway: GatewayProcess, jwt: str) -> None:
    driver.get(gateway.url + "/console")
    by_label(driver, "Settings-API token").send_keys(jwt)
    click_and_load(driver, button(driver, "Sign in"))
    wait(driver).until(expected_conditions.url_contains(f"/console/tenants/{TENANT}"))


def create_integration(driver: WebDriver, integration: str, name: str) -> None:
    by_label(driver, "Integration ID").send_keys(integration)
    by_label(driver, "Name").send_keys(name)
    click_and_load(driver, button(driver, "Create"))
    wait(driver).until(expected_conditions.url_contains(f"/integrations/{integration}"))


def bind_upstream(driver: WebDriver, upstream_url: str) -> None:
    by_label(driver, "Upstream URL").send_keys(upstream_url)
    click_and_load(driver, button(driver, "Create config from upstream"))
    wait(driver).until(lambda d: d.find_elements(By.CSS_SELECTOR, '[data-testid="bound-config"]'))


def new_integration(
    driver: WebDriver,
    gateway: GatewayProcess,
    upstream: UpstreamThread,
    integration: str,
    name: str,
) -> None:
    """Signed in, a new integration bound to the example upstream, on its page."""
    sign_in(driver, gateway, jwt_for())
    create_integration(driver, integration, name)
    bind_upstream(driver, upstream.url)


def enabled_integration(
    driver: WebDriver,
    gateway: GatewayProcess,
    upstream: UpstreamThread,
    integration: str,
    name: str,
    exposed: tuple[str, ...] = (),
) -> str:
    """A new integration exposing `exposed`, enabled, on its page reloaded (the key no longer
    shown): its key."""
    new_integration(driver, gateway, upstream, integration, name)
    for tool in exposed:
        by_label(driver, tool).click()
    if exposed:
        click_and_load(driver, button(driver, "Save"))
    key = enable(driver)
    driver.refresh()
    return key


def call_mcp(
    url: str, key: str, method: str, params: dict[str, Any] | None = None, run_id: str = ""
) -> Any:
    """One modern-era MCP request: (status, JSON body)."""
    message = modern_message(method, params)
    headers = {**modern_headers(message, key), "Content-Type": "application/json"}
    if run_id:
        headers["X-Run-Id"] = run_id
    request = urllib.request.Request(
        url, data=json.dumps(message).encode(), headers=headers, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=20) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


def read_settings(gateway: GatewayProcess, integration: str) -> dict[str, Any]:
    """The MCP settings through the settings API itself."""
    request = urllib.request.Request(
        f"{gateway.url}/v1/tenants/{TENANT}/integrations/{integration}/mcp",
        headers={"Authorization": f"Bearer {jwt_for()}"},
    )
    with urllib.request.urlopen(request, timeout=20) as response:
        return json.loads(response.read())  # type: ignore[no-any-return]


def shown_key(driver: WebDriver) -> str:
    """The raw key the page shows once, when it has loaded."""
    return str(
        wait(driver)
        .until(lambda d: d.find_elements(By.CSS_SELECTOR, '[data-testid="api-key"]'))[0]
        .text
    )


def enable(driver: WebDriver) -> str:
    click_and_load(driver, button(driver, "Enable MCP"))
    return shown_key(driver)


def assert_oauth_instructions(driver: WebDriver, call_url: str) -> None:
    """The custom-connector steps paste this callUrl; mcp-remote's config has no header."""
    steps = by_testid(driver, "connector-steps").find_elements(By.TAG_NAME, "li")
    assert "Add custom connector" in steps[0].text
    assert f"paste {call_url} as the remote MCP server URL" in steps[1].text
    assert "consent page" in steps[2].text
    oauth = json.loads(by_testid(driver, "oauth-config").text)
    (server,) = oauth["mcpServers"].values()
    assert server == {"command": "npx", "args": ["-y", "mcp-remote", call_url]}
    assert len(driver.find_elements(By.CSS_SELECTOR, '[data-testid="connector-steps"]')) == 1


def reload_until(driver: WebDriver, css: str, count: int) -> list[WebElement]:
    """Reload until the page has `count` elements matching `css` (written in the background)."""

    def found(d: WebDriver) -> list[WebElement] | Literal[False]:
        d.refresh()
        elements = d.find_elements(By.CSS_SELECTOR, css)
        return elements if len(elements) >= count else False

    return wait(driver).until(found)


def approve_oauth_client(gateway: GatewayProcess, resource: str, key: str) -> str:
    """A client registered, approved with `key` on the real consent page, and its code
    exchanged: its access token for `resource`."""

    async def flow() -> str:
        jar = aiohttp.CookieJar(unsafe=True)  # the gateway is at an IP address
        async with aiohttp.ClientSession(gateway.url, cookie_jar=jar) as http:
            client_id = await register(http, client_name=CLIENT_NAME)
            tokens = await tokens_for(http, client_id, key, resource)
            return str(tokens["access_token"])

    return asyncio.run(flow())


# --------------------------------------------------------------------------- tests


def test_sign_in_refuses_a_bad_token_and_lands_a_good_one_on_its_tenant(
    browser: WebDriver, gateway: GatewayProcess
) -> None:
    browser.get(gateway.url + "/console")
    field = by_label(browser, "Settings-API token")
    assert field.get_attribute("type") == "password"
    field.send_keys("not-a-jwt")
    click_and_load(browser, button(browser, "Sign in"))
    error = wait(browser).until(lambda d: d.find_element(By.CSS_SELECTOR, "[role=alert]"))
    assert "invalid" in error.text
    assert by_label(browser, "Settings-API token").is_displayed()

    wrong = issue_token("another-secret-" + "y" * 40, TENANT)
    by_label(browser, "Settings-API token").send_keys(wrong)
    click_and_load(browser, button(browser, "Sign in"))
    assert "invalid" in browser.find_element(By.CSS_SELECTOR, "[role=alert]").text

    sign_in(browser, gateway, jwt_for())
    assert browser.current_url == f"{gateway.url}/console/tenants/{TENANT}"
    assert button(browser, "Create").is_displayed()
    # the token is in no URL and not readable by script (HttpOnly)
    assert browser.execute_script("return document.cookie") == ""
    cookie = browser.get_cookie("mcpgw_console")
    assert cookie is not None and cookie["httpOnly"] and cookie["sameSite"] == "Strict"


def test_another_tenant_is_refused(browser: WebDriver, gateway: GatewayProcess) -> None:
    sign_in(browser, gateway, jwt_for())
    browser.get(f"{gateway.url}/console/tenants/globex")
    assert "does not grant tenant" in browser.find_element(By.CSS_SELECTOR, "[role=alert]").text


def test_integration_from_creation_to_rotation(
    browser: WebDriver, gateway: GatewayProcess, upstream: UpstreamThread
) -> None:
    new_integration(browser, gateway, upstream, "crm", "CRM")

    call_url = by_testid(browser, "call-url").text
    assert call_url == f"{gateway.url}/v1/tenants/{TENANT}/integrations/crm/mcp:call"
    assert by_testid(browser, "test-url").text.endswith("/crm/mcp:test")

    # choose tools and a description, then Save (the PATCH)
    for tool in ("search_contacts", "get_contact"):
        by_label(browser, tool).click()
    description = by_label(browser, "Description")
    description.clear()
    description.send_keys("CRM for the support team")
    click_and_load(browser, button(browser, "Save"))
    assert "Saved." in browser.page_source
    assert by_label(browser, "search_contacts").is_selected()
    assert not by_label(browser, "list_deals").is_selected()
    assert by_label(browser, "Description").get_attribute("value") == "CRM for the support team"
    stored = read_settings(gateway, "crm")
    assert stored["exposedToolIds"] == ["search_contacts", "get_contact"]

    # enable: the key once, with the client configurations and a working Copy key button
    key = enable(browser)
    assert key.startswith("mcpk_") and len(key) == 43
    cursor = json.loads(by_testid(browser, "cursor-config").text)
    (server,) = cursor["mcpServers"].values()
    assert server == {"url": call_url, "headers": {"Authorization": f"Bearer {key}"}}
    claude = by_testid(browser, "claude-config").text
    assert "mcp-remote" in claude and call_url in claude and key in claude
    assert_oauth_instructions(browser, call_url)
    button(browser, "Copy key").click()
    wait(browser).until(lambda d: "Copied." in d.page_source)
    assert clipboard_text(browser) == key
    assert key not in browser.current_url

    status, body = call_mcp(call_url, key, "tools/list")
    assert status == 200, body
    assert [t["name"] for t in body["result"]["tools"]] == ["search_contacts", "get_contact"]

    # reload: the raw key is gone, only its prefix shows
    browser.refresh()
    assert key not in browser.page_source
    assert by_testid(browser, "key-prefix").text == key[:12]
    assert_oauth_instructions(browser, call_url)  # without the key, on the page itself

    # rotate, confirmed in the browser's dialog: the old key dies, the new one works
    button(browser, "Rotate key").click()
    wait(browser).until(expected_conditions.alert_is_present()).accept()
    new_key = shown_key(browser)
    assert new_key != key and new_key.startswith("mcpk_")
    assert call_mcp(call_url, key, "tools/list")[0] == 401
    assert call_mcp(call_url, new_key, "tools/list")[0] == 200

    # the list shows the integration, linked, with its MCP status
    browser.get(f"{gateway.url}/console/tenants/{TENANT}")
    row = browser.find_element(By.CSS_SELECTOR, '[data-integration="crm"]')
    assert row.find_element(By.CSS_SELECTOR, '[data-testid="mcp-status"]').text == "enabled"
    click_and_load(browser, row.find_element(By.LINK_TEXT, "CRM"))
    wait(browser).until(expected_conditions.url_contains("/integrations/crm"))

    # disabling keeps the key but refuses it
    click_and_load(browser, button(browser, "Disable MCP"))
    wait(browser).until(lambda d: button(d, "Enable MCP"))
    assert call_mcp(call_url, new_key, "tools/list")[0] == 403


def test_rotation_asks_first_and_a_dismissed_dialog_rotates_nothing(
    browser: WebDriver, gateway: GatewayProcess, upstream: UpstreamThread
) -> None:
    key = enabled_integration(browser, gateway, upstream, "tickets", "Tickets")
    button(browser, "Rotate key").click()
    wait(browser).until(expected_conditions.alert_is_present()).dismiss()
    test_url = by_testid(browser, "test-url").text
    assert call_mcp(test_url, key, "tools/list")[0] == 200
    assert not browser.find_elements(By.CSS_SELECTOR, '[data-testid="api-key"]')


def key_row(driver: WebDriver, label: str) -> WebElement:
    for row in driver.find_elements(By.CSS_SELECTOR, '[data-testid="key-row"]'):
        if row.find_element(By.CSS_SELECTOR, '[data-testid="key-label"]').text == label:
            return row
    raise AssertionError(f"no key {label!r} in the Keys card")


def delete_key(driver: WebDriver, label: str) -> None:
    """Delete the key `label` from the Keys card, confirmed in the browser's dialog."""
    page = driver.find_element(By.TAG_NAME, "html")
    key_row(driver, label).find_element(By.TAG_NAME, "button").click()
    alert = wait(driver).until(expected_conditions.alert_is_present())
    assert f"Delete the key {label}" in alert.text
    alert.accept()
    wait(driver).until(lambda _: is_gone(page))
    wait(driver).until(lambda d: "Key deleted" in d.page_source)


def status_soon(url: str, key: str, expected: int, within_s: float) -> int:
    """The status of tools/list with `key`, polled until it is `expected` or `within_s` ends."""
    deadline = time.monotonic() + within_s
    while True:
        status = call_mcp(url, key, "tools/list")[0]
        if status == expected or time.monotonic() > deadline:
            return int(status)
        time.sleep(0.1)


def test_a_key_per_client_narrowed_to_a_tool_shown_once_then_deleted(
    browser: WebDriver, gateway: GatewayProcess, upstream: UpstreamThread
) -> None:
    exposed = ("search_contacts", "get_contact")
    default_key = enabled_integration(browser, gateway, upstream, "keys", "Keyed CRM", exposed)
    call_url = by_testid(browser, "call-url").text
    # the narrowing offers the exposed tools only
    offered = browser.find_elements(By.CSS_SELECTOR, "input[name=toolId]")
    assert [o.get_attribute("value") for o in offered] == ["search_contacts", "get_contact"]

    by_label(browser, "Label").send_keys("ci")
    browser.find_element(By.CSS_SELECTOR, "input[name=toolId][value=get_contact]").click()
    click_and_load(browser, button(browser, "Create key"))
    raw = shown_key(browser)
    assert raw.startswith("mcpk_") and raw != default_key
    assert "\u201cci\u201d: shown once" in by_testid(browser, "key-once").text
    (server,) = json.loads(by_testid(browser, "cursor-config").text)["mcpServers"].values()
    assert server["headers"] == {"Authorization": f"Bearer {raw}"}
    button(browser, "Copy key").click()
    wait(browser).until(lambda d: "Copied." in d.page_source)
    assert clipboard_text(browser) == raw

    status, body = call_mcp(call_url, raw, "tools/list")
    assert status == 200, body
    assert [t["name"] for t in body["result"]["tools"]] == ["get_contact"]

    browser.refresh()
    assert raw not in browser.page_source
    row = key_row(browser, "ci")
    assert row.find_element(By.CSS_SELECTOR, '[data-testid="key-row-prefix"]').text == raw[:12]
    assert row.find_element(By.CSS_SELECTOR, '[data-testid="key-tools"]').text == "get_contact"

    delete_key(browser, "ci")
    assert status_soon(call_url, raw, 401, within_s=1) == 401
    assert call_mcp(call_url, default_key, "tools/list")[0] == 200
    assert not [
        r
        for r in browser.find_elements(By.CSS_SELECTOR, '[data-testid="key-label"]')
        if r.text == "ci"
    ]


def test_rotation_with_a_grace_period_then_the_default_key_deleted(
    browser: WebDriver, gateway: GatewayProcess, upstream: UpstreamThread
) -> None:
    old_key = enabled_integration(browser, gateway, upstream, "grace", "Graceful CRM")
    call_url = by_testid(browser, "call-url").text

    grace = by_label(browser, "Grace period")
    grace.clear()
    grace.send_keys("3")
    button(browser, "Rotate key").click()
    wait(browser).until(expected_conditions.alert_is_present()).accept()
    new_key = shown_key(browser)
    assert "keeps working 3 more seconds" in browser.page_source
    assert call_mcp(call_url, old_key, "tools/list")[0] == 200  # within its grace
    assert call_mcp(call_url, new_key, "tools/list")[0] == 200
    assert status_soon(call_url, old_key, 401, within_s=30) == 401
    assert call_mcp(call_url, new_key, "tools/list")[0] == 200

    # the default key deleted: the page still renders and says how to get the next one
    browser.refresh()
    delete_key(browser, "default")
    assert "no default key: it was deleted" in by_testid(browser, "default-key").text
    assert not browser.find_elements(By.CSS_SELECTOR, '[data-testid="key-prefix"]')
    assert status_soon(call_url, new_key, 401, within_s=1) == 401
    browser.get(f"{gateway.url}/console/tenants/{TENANT}")
    assert browser.find_element(By.CSS_SELECTOR, '[data-integration="grace"]').is_displayed()


def test_simulator_fixtures_list_add_edit_delete_with_errors_in_place(
    browser: WebDriver, gateway: GatewayProcess, upstream: UpstreamThread
) -> None:
    new_integration(browser, gateway, upstream, "sim", "Simulated CRM")
    for tool in CRM_TOOLS:
        by_label(browser, tool).click()
    click_and_load(browser, button(browser, "Save"))
    assert "Saved." in browser.page_source
    key = enable(browser)
    test_url = by_testid(browser, "test-url").text

    def fixture_form() -> WebElement:
        section = browser.find_element(By.CSS_SELECTOR, 'details[data-tool="list_deals"]')
        if section.get_attribute("open") is None:
            section.find_element(By.TAG_NAME, "summary").click()
        return section

    def submit_fixture(text: str) -> None:
        field = by_label(browser, "Fixture for list_deals")
        browser.execute_script("arguments[0].value = arguments[1]", field, text)
        click_and_load(browser, button(fixture_form(), "Save fixture"))

    fixture_form()
    submit_fixture("{not json")
    error = wait(browser).until(lambda d: d.find_element(By.ID, "fixture-list_deals-error"))
    assert "not valid JSON" in error.text
    assert by_label(browser, "Fixture for list_deals").get_attribute("aria-invalid") == "true"

    submit_fixture(json.dumps({"rules": [{"match": {}, "result": {"content": "nope"}}]}))
    error = wait(browser).until(lambda d: d.find_element(By.ID, "fixture-list_deals-error"))
    assert "content" in error.text  # the API's validation, next to the field

    # isError: a result without the structuredContent its outputSchema would require
    scripted = {"content": [{"type": "text", "text": "scripted deals"}], "isError": True}
    submit_fixture(json.dumps({"rules": [{"match": {}, "result": scripted}]}))
    wait(browser).until(lambda d: "Fixture saved." in d.page_source)
    stored = by_label(browser, "Fixture for list_deals").get_attribute("value") or ""
    assert json.loads(stored)["rules"][0]["result"]["content"][0]["text"] == "scripted deals"
    status, body = call_mcp(test_url, key, "tools/call", {"name": "list_deals", "arguments": {}})
    assert status == 200 and body["result"]["content"][0]["text"] == "scripted deals"

    fixture_form()
    edited = {**scripted, "content": [{"type": "text", "text": "edited deals"}]}
    submit_fixture(json.dumps({"rules": [{"match": {}, "result": edited}]}))
    wait(browser).until(lambda d: "Fixture saved." in d.page_source)
    status, body = call_mcp(test_url, key, "tools/call", {"name": "list_deals", "arguments": {}})
    assert body["result"]["content"][0]["text"] == "edited deals"

    click_and_load(browser, button(fixture_form(), "Delete fixture"))
    wait(browser).until(lambda d: "Fixture deleted." in d.page_source)
    assert "edited deals" not in browser.page_source
    status, body = call_mcp(test_url, key, "tools/call", {"name": "list_deals", "arguments": {}})
    assert status == 200 and "edited deals" not in json.dumps(body)


def test_audit_lists_the_changes_newest_first(
    browser: WebDriver, gateway: GatewayProcess, upstream: UpstreamThread
) -> None:
    new_integration(browser, gateway, upstream, "audited", "Audited")
    enable(browser)
    browser.refresh()
    button(browser, "Rotate key").click()
    wait(browser).until(expected_conditions.alert_is_present()).accept()
    shown_key(browser)

    click_and_load(browser, browser.find_element(By.LINK_TEXT, "Audit"))
    wait(browser).until(expected_conditions.url_contains("/audit"))
    rows = browser.find_elements(By.CSS_SELECTOR, '[data-testid="audit-event"]')
    actions = [r.find_element(By.CSS_SELECTOR, '[data-testid="audit-action"]').text for r in rows]
    assert "rotate" in actions[0]
    assert "integration.created" in actions
    assert actions.index(actions[0]) < actions.index("integration.created")
    assert f"admin@{TENANT}" in rows[0].text
    assert "UTC" in rows[0].find_element(By.TAG_NAME, "time").text


def test_an_oauth_client_is_listed_and_revoke_ends_its_token(
    browser: WebDriver, gateway: GatewayProcess, upstream: UpstreamThread
) -> None:
    key = enabled_integration(browser, gateway, upstream, "oauthed", "OAuthed", SEARCH)
    call_url = by_testid(browser, "call-url").text
    browser.refresh()
    assert "No OAuth client holds a token" in browser.page_source

    access_token = approve_oauth_client(gateway, call_url, key)
    assert call_mcp(call_url, access_token, "tools/list")[0] == 200
    browser.refresh()
    (row,) = browser.find_elements(By.CSS_SELECTOR, '[data-testid="oauth-client"]')
    assert CLIENT_NAME in row.text
    assert "127.0.0.1:33418" in row.text  # the redirect host
    first, last = row.find_elements(By.TAG_NAME, "time")
    assert "UTC" in first.text and "UTC" in last.text

    # asks first: a dismissed dialog revokes nothing
    button(row, "Revoke").click()
    wait(browser).until(expected_conditions.alert_is_present()).dismiss()
    assert call_mcp(call_url, access_token, "tools/list")[0] == 200

    row = browser.find_element(By.CSS_SELECTOR, '[data-testid="oauth-client"]')
    button(row, "Revoke").click()
    wait(browser).until(expected_conditions.alert_is_present()).accept()
    wait(browser).until(lambda d: "OAuth client revoked" in d.page_source)
    assert not browser.find_elements(By.CSS_SELECTOR, '[data-testid="oauth-client"]')
    status, body = call_mcp(call_url, access_token, "tools/list")
    assert status == 401 and body["reason"] == "revoked"
    assert call_mcp(call_url, key, "tools/list")[0] == 200  # the key itself still works


def test_recent_tool_calls_newest_first_with_their_outcome(
    browser: WebDriver, gateway: GatewayProcess, upstream: UpstreamThread
) -> None:
    key = enabled_integration(browser, gateway, upstream, "logged", "Logged", SEARCH)
    call_url, test_url = by_testid(browser, "call-url").text, by_testid(browser, "test-url").text
    browser.refresh()
    assert "No tool calls yet." in browser.page_source

    search = {"name": "search_contacts", "arguments": {"query": "ada"}}
    assert call_mcp(call_url, key, "tools/call", search, run_id="run-7")[0] == 200
    hidden = {"name": "list_deals", "arguments": {}}
    _, body = call_mcp(test_url, key, "tools/call", hidden)
    assert "Unknown tool" in json.dumps(body)  # not exposed: refused, and logged as denied

    rows = reload_until(browser, '[data-testid="tool-call"]', 2)
    cells = [
        {
            name: row.find_elements(By.CSS_SELECTOR, f'[data-testid="call-{name}"]')
            for name in ("url-kind", "tool", "outcome", "run-id")
        }
        for row in rows
    ]
    texts = [{k: v[0].text if v else None for k, v in c.items()} for c in cells]
    assert texts == [
        {"url-kind": "test", "tool": "list_deals", "outcome": "denied", "run-id": None},
        {"url-kind": "call", "tool": "search_contacts", "outcome": "ok", "run-id": "run-7"},
    ]
    assert "ms" in rows[1].text and "UTC" in rows[1].find_element(By.TAG_NAME, "time").text


def test_recent_tool_calls_page_with_the_api_cursor(
    browser: WebDriver, gateway: GatewayProcess, upstream: UpstreamThread
) -> None:
    key = enabled_integration(browser, gateway, upstream, "paged", "Paged", SEARCH)
    test_url = by_testid(browser, "test-url").text
    for n in range(CALLS_PAGE + 1):
        call = {"name": "search_contacts", "arguments": {"query": f"q{n}"}}
        assert call_mcp(test_url, key, "tools/call", call, run_id=f"run-{n}")[0] == 200

    rows = reload_until(browser, '[data-testid="tool-call"]', CALLS_PAGE)
    assert len(rows) == CALLS_PAGE
    assert rows[0].find_element(By.CSS_SELECTOR, '[data-testid="call-run-id"]').text == (
        f"run-{CALLS_PAGE}"
    )
    click_and_load(browser, browser.find_element(By.LINK_TEXT, "Older calls"))
    (oldest,) = browser.find_elements(By.CSS_SELECTOR, '[data-testid="tool-call"]')
    assert oldest.find_element(By.CSS_SELECTOR, '[data-testid="call-run-id"]').text == "run-0"
    assert not browser.find_elements(By.LINK_TEXT, "Older calls")
    # a reload shows the same page (the cursor stays in the URL)
    browser.refresh()
    assert len(browser.find_elements(By.CSS_SELECTOR, '[data-testid="tool-call"]')) == 1
    click_and_load(browser, browser.find_element(By.LINK_TEXT, "Newest calls"))
    assert len(browser.find_elements(By.CSS_SELECTOR, '[data-testid="tool-call"]')) == CALLS_PAGE


def test_forms_without_the_session_csrf_token_change_nothing(
    browser: WebDriver, gateway: GatewayProcess
) -> None:
    sign_in(browser, gateway, jwt_for())
    browser.execute_script(
        "const create = document.getElementById('new-id').form;"
        "create.querySelector('input[name=csrf]').value = 'forged';"
        "document.getElementById('new-id').value = 'forged';"
        "document.getElementById('new-name').value = 'Forged';"
    )
    click_and_load(browser, button(browser, "Create"))
    assert "not from this console session" in browser.page_source
    browser.get(f"{gateway.url}/console/tenants/{TENANT}")
    assert not browser.find_elements(By.CSS_SELECTOR, '[data-integration="forged"]')


def test_narrow_screen_and_dark_theme(
    browser: WebDriver, gateway: GatewayProcess, upstream: UpstreamThread
) -> None:
    # enabled: the Keys card with a key, and the rotation's grace period
    enabled_integration(browser, gateway, upstream, "phone", "Phone")
    browser.set_window_size(360, 800)
    inner = browser.execute_script("return window.innerWidth")
    overflow = browser.execute_script(
        "return document.documentElement.scrollWidth - document.documentElement.clientWidth"
    )
    assert inner <= 360 and overflow == 0
    assert button(browser, "Save").is_displayed()
    assert button(browser, "Create key").is_displayed()
    assert by_label(browser, "Grace period").is_displayed()

    def background() -> str:
        return str(browser.execute_script("return getComputedStyle(document.body).backgroundColor"))

    light = background()
    emulate_color_scheme(browser, "dark")
    dark = background()
    assert light != dark
    channels = [int(c) for c in dark[dark.index("(") + 1 : dark.index(")")].split(",")[:3]]
    assert max(channels) < 64  # a dark background


def test_every_page_and_asset_carries_the_csp(gateway: GatewayProcess) -> None:
    pages = ["/console", "/console/nope", f"/console/tenants/{TENANT}"]
    with urllib.request.urlopen(gateway.url + "/console", timeout=20) as response:
        html = response.read().decode()
    assets = [part.split('"')[0] for part in html.split('="/console/static/')[1:]]
    assert len(assets) == 2
    for path in pages + [f"/console/static/{a}" for a in assets]:
        try:
            response = urllib.request.urlopen(gateway.url + path, timeout=20)
        except urllib.error.HTTPError as exc:
            response = exc
        csp = response.headers["Content-Security-Policy"]
        assert "frame-ancestors 'none'" in csp and "unsafe-inline" not in csp, path
        assert "script-src 'self'" in csp
        if "/static/" in path:
            assert "immutable" in response.headers["Cache-Control"]
        else:
            assert response.headers["Cache-Control"] == "no-store"
