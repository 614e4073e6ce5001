"""The console's pages and form actions. Each one authenticates through the settings API
(console/visits.py) and works through its service, with the REST routes' schemas: a page
can do nothing the API would refuse."""

from __future__ import annotations

import datetime
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlencode

from aiohttp import web

from console.client_configs import (
    claude_desktop_config,
    connector_steps,
    cursor_config,
    mcp_remote_oauth_config,
)
from console.rendering import Renderer
from console.session import clear_token, csrf_token, set_token, token_of
from console.sign_in_links import SIGN_IN_LINKS
from console.visits import (
    FormData,
    Visit,
    field,
    field_message,
    integration_id,
    problem_messages,
    read_form,
    visit,
    visit_form,
)
from settings_api.app import authorize
from settings_api.http import SETTINGS, decode_cursor, encode_cursor
from settings_api.problems import FieldError, NotFound, Problem, Unauthorized, ValidationFailed
from settings_api.routes import calls_page, mcp_urls, oauth_clients_page
from settings_api.schemas import ID_PATTERN, full_match, validate
from settings_api.service import SettingsPatch
from settings_api.use_cases.api_keys import NewKey

__all__ = ["RENDERER", "ROUTES"]

RENDERER: web.AppKey[Renderer] = web.AppKey("console_renderer", Renderer)

PageHandler = Callable[[web.Request], Awaitable[web.StreamResponse]]
ActionHandler = Callable[[Visit, str, FormData], Awaitable[web.StreamResponse]]

_PAGE_SIZE = 50
_CALLS_PAGE_SIZE = 20
_MAX_CONFIGS_LISTED = 100
_NOT_REFILLED = frozenset({"csrf", "headerValue"})
_NOTICES = {
    "saved": "Saved.",
    "bound": "Config bound.",
    "config": "Config created and bound.",
    "disabled": "MCP disabled: both URLs refuse the key until it is enabled again.",
    "enabled": "MCP enabled with the existing key.",
    "fixture-saved": "Fixture saved.",
    "fixture-deleted": "Fixture deleted.",
    "created": "Integration created.",
    "revoked": "OAuth client revoked: its tokens no longer work, on any replica.",
    "key-deleted": "Key deleted: it no longer works, on any replica; the other keys do.",
}
_DEFAULT_KEY_HEADING = "API key"


def _renderer(request: web.Request) -> Renderer:
    return request.app[RENDERER]


def _see_other(location: str) -> web.Response:
    return web.Response(status=303, headers={"Location": location, "Cache-Control": "no-store"})


def _tenant_path(tenant: str) -> str:
    return f"/console/tenants/{tenant}"


def _integration_path(tenant: str, integration: str) -> str:
    return f"/console/tenants/{tenant}/integrations/{integration}"


def page(handler: PageHandler) -> PageHandler:
    """`handler` with the settings API's refusals shown as pages, in words: a token that no
    longer signs in goes back to the sign-in form."""

    async def shown(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except Unauthorized as problem:
            response = _sign_in_page(request, f"Sign in again: invalid session ({problem.detail}).")
            clear_token(response)
            return response
        except Problem as problem:
            headers = {k: v for k, v in problem.headers.items() if k != "WWW-Authenticate"}
            return _renderer(request).page(
                "error.html",
                status=problem.status,
                headers=headers,
                title=problem.title,
                detail=problem.detail,
                tenant=request.match_info.get("tenant"),
            )

    return shown


# --------------------------------------------------------------------------- sign-in


def _sign_in_page(
    request: web.Request, error: str | None = None, status: int = 401, tenant_error: str = ""
) -> web.Response:
    return _renderer(request).page(
        "sign_in.html",
        status=status if error or tenant_error else 200,
        error=error,
        tenant_error=tenant_error,
    )


async def sign_in_form(request: web.Request) -> web.StreamResponse:
    """GET /console: the sign-in form."""
    return _sign_in_page(request)


async def sign_in(request: web.Request) -> web.StreamResponse:
    """POST /console/sign-in: check the token with the settings API, keep it in the cookie."""
    form = await read_form(request)
    token, tenant = field(form, "token").strip(), field(form, "tenant").strip()
    if not token:
        return _sign_in_page(request, "Sign-in failed: enter a settings-API token.", 400)
    try:
        principal, _ = await authorize(request, token, tenant or None)
    except Unauthorized as problem:
        return _sign_in_page(request, f"Sign-in failed: invalid token ({problem.detail}).")
    if not tenant:
        if principal.tenants is None or len(principal.tenants) != 1:
            return _sign_in_page(
                request,
                status=400,
                tenant_error="This token grants several tenants: enter the one to open.",
            )
        (tenant,) = principal.tenants
    response = _see_other(_tenant_path(tenant))
    set_token(request, response, token)
    return response


async def sign_in_link(request: web.Request) -> web.StreamResponse:
    """GET /console/sign-in/{code}: a one-time link from `mcp-gateway demo`."""
    links = request.app.get(SIGN_IN_LINKS)
    token = links.redeem(request.match_info["code"]) if links is not None else None
    if token is None:
        return _sign_in_page(
            request, "This sign-in link is invalid: it was used already or it expired.", 400
        )
    principal, _ = await authorize(request, token, None)
    tenant = next(iter(principal.tenants or ()), None)
    response = _see_other(_tenant_path(tenant) if tenant else "/console")
    set_token(request, response, token)
    return response


async def sign_out(request: web.Request) -> web.StreamResponse:
    """POST /console/sign-out: forget the token (only with the session's CSRF token)."""
    form = await read_form(request)
    token = token_of(request)
    response = _see_other("/console")
    if token is not None and field(form, "csrf") == csrf_token(request, token):
        clear_token(response)
    return response


# --------------------------------------------------------------------------- integrations


async def integrations(request: web.Request) -> web.StreamResponse:
    """GET /console/tenants/{tenant}: the integrations with their MCP state."""
    found = await visit(request)
    return await _integrations_page(found)


async def _integrations_page(
    found: Visit, status: int = 200, errors: dict[str, str] | None = None, values: Any = None
) -> web.Response:
    request = found.request
    cursor = request.query.get("after")
    after = decode_cursor(cursor, str) if cursor else ""
    items = await found.service.list_integrations(found.tenant, after, _PAGE_SIZE + 1)
    more = len(items) > _PAGE_SIZE
    items = items[:_PAGE_SIZE]
    rows = []
    for item in items:
        settings = await found.service.get_settings(found.tenant, item.integration_id)
        rows.append((item, settings))
    return _renderer(request).page(
        "integrations.html",
        status=status,
        headers=found.limit_headers,
        visit=found,
        tenant=found.tenant,
        rows=rows,
        next_cursor=encode_cursor(items[-1].integration_id) if more and items else None,
        errors=errors or {},
        values=values or {},
        notice=_NOTICES.get(request.query.get("done", "")),
    )


async def create_integration(request: web.Request) -> web.StreamResponse:
    """POST /console/tenants/{tenant}/integrations: a new integration (never a rename)."""
    found, form = await visit_form(request)
    integration, name = field(form, "integrationId").strip(), field(form, "name").strip()
    errors: dict[str, str] = {}
    if not full_match(ID_PATTERN, integration):
        errors["integrationId"] = "must be 1-64 characters of A-Z, a-z, 0-9, '_' or '-'"
    try:
        validate("IntegrationPut", {"name": name})
    except ValidationFailed as problem:
        errors["name"] = "; ".join(e.message for e in problem.field_errors)
    if not errors:
        try:
            await found.service.get_integration(found.tenant, integration)
            errors["integrationId"] = f"integration {integration!r} exists already"
        except NotFound:
            _, created = await found.service.put_integration(
                found.actor, found.tenant, integration, name
            )
            if created:
                return _see_other(_integration_path(found.tenant, integration) + "?done=created")
            errors["integrationId"] = f"integration {integration!r} exists already"
    values = {"integrationId": integration, "name": name}
    return await _integrations_page(found, 422, errors, values)


# --------------------------------------------------------------------------- one integration


async def integration(request: web.Request) -> web.StreamResponse:
    """GET …/integrations/{integration}: URLs, key, config, tools, fixtures, clients, calls."""
    found = await visit(request)
    notice = _NOTICES.get(request.query.get("done", ""))
    return await _integration_page(found, integration_id(request), notice=notice)


async def _integration_page(
    found: Visit,
    integration: str,
    *,
    status: int = 200,
    api_key: str | None = None,
    errors: dict[str, list[str]] | None = None,
    values: dict[str, str] | None = None,
    notice: str | None = None,
    confirm_rotation: bool = False,
    confirm_revoke: str | None = None,
    confirm_delete_key: str | None = None,
    key_heading: str = _DEFAULT_KEY_HEADING,
    key_tools: list[str] | None = None,
) -> web.Response:
    service, tenant = found.service, found.tenant
    query = found.request.query
    item = await service.get_integration(tenant, integration)
    settings = await service.get_settings(tenant, integration)
    keys = await service.list_keys(tenant, integration)
    configs = await service.list_configs(tenant, integration, "", _MAX_CONFIGS_LISTED)
    bound = next((c for c in configs if c.config_id == settings.config_id), None)
    if bound is None and settings.config_id is not None:
        bound = await service.get_config(tenant, integration, settings.config_id)
        configs.append(bound)
    fixtures = {
        f.tool_id: json.dumps({"rules": f.rules}, indent=2)
        for f in await service.list_fixtures(tenant, integration)
    }
    call_url, test_url = mcp_urls(found.request.app[SETTINGS].public_url, tenant, integration)
    clients = None
    if api_key is not None:
        clients = {
            "cursor": json.dumps(cursor_config(integration, call_url, api_key), indent=2),
            "claude": json.dumps(claude_desktop_config(integration, call_url, api_key), indent=2),
        }
    oauth = json.dumps(mcp_remote_oauth_config(integration, call_url), indent=2)
    oauth_clients = await oauth_clients_page(
        service, tenant, integration, query.get("clients"), _PAGE_SIZE
    )
    calls = await calls_page(service, tenant, integration, query.get("calls"), _CALLS_PAGE_SIZE)
    page_path = _integration_path(tenant, integration)
    # The pages of the lists being read are part of what a reload should show again.
    paging = {k: query[k] for k in ("clients", "calls") if query.get(k)}
    canonical = page_path + (f"?{urlencode(paging)}" if paging else "")
    return _renderer(found.request).page(
        "integration.html",
        status=status,
        headers=found.limit_headers,
        visit=found,
        tenant=tenant,
        integration=item,
        settings=settings,
        configs=configs,
        bound=bound,
        fixtures=fixtures,
        call_url=call_url,
        test_url=test_url,
        api_key=api_key,
        clients=clients,
        connector_steps=connector_steps(call_url),
        oauth_config=oauth,
        oauth_clients=oauth_clients,
        calls=calls,
        calls_paged=bool(query.get("calls")),
        errors=errors or {},
        values=values or {},
        notice=notice,
        page_path=page_path,
        canonical=canonical,
        confirm_rotation=confirm_rotation,
        confirm_revoke=confirm_revoke,
        confirm_delete_key=confirm_delete_key,
        keys=keys,
        has_keys=bool(keys),
        now=int(time.time() * 1000),
        key_heading=key_heading,
        key_tools_checked=key_tools or [],
    )


def _action(form_name: str, fields: tuple[str, ...] = ()) -> Callable[[ActionHandler], PageHandler]:
    """A form action on one integration: a refused change is shown next to its form (422
    with the page), an accepted one redirects to the page (or renders it, with a new key).
    An invalid value of one of `fields` is shown next to that field instead."""

    def wrap(handler: ActionHandler) -> PageHandler:
        async def run(request: web.Request) -> web.StreamResponse:
            found, form = await visit_form(request)
            integration = integration_id(request)
            name = form_name.format(**request.match_info)
            try:
                return await handler(found, integration, form)
            except Unauthorized:
                raise
            except Problem as problem:
                # What the user typed goes back into the form, except secrets.
                values = {
                    k: v for k, v in form.items() if isinstance(v, str) and k not in _NOT_REFILLED
                }
                return await _integration_page(
                    found,
                    integration,
                    status=problem.status,
                    errors=_errors_by_place(name, fields, problem),
                    values={f"{name}.{k}": v for k, v in values.items()},
                    key_tools=_texts(form, "toolId") if name == "key" else None,
                )

        return page(run)

    return wrap


def _errors_by_place(name: str, fields: tuple[str, ...], problem: Problem) -> dict[str, list[str]]:
    """The problem's messages keyed by the form, or by `form.field` for one of `fields`."""
    if not isinstance(problem, ValidationFailed) or not fields:
        return {name: problem_messages(problem)}
    errors: dict[str, list[str]] = {}
    for error in problem.field_errors:
        place = f"{name}.{error.field}" if error.field in fields else name
        errors.setdefault(place, []).append(
            error.message if error.field in fields else field_message(error)
        )
    return errors


def _texts(form: FormData, name: str) -> list[str]:
    return [v for v in form.getall(name, []) if isinstance(v, str)]


def _done(found: Visit, integration: str, what: str) -> web.Response:
    return _see_other(f"{_integration_path(found.tenant, integration)}?done={what}")


async def _patch(found: Visit, integration: str, body: dict[str, Any]) -> tuple[Any, str | None]:
    body = validate("McpSettingsPatch", body)
    patch = SettingsPatch(
        enabled=body.get("enabled"),
        config_id=body.get("configId"),
        exposed_tool_ids=body.get("exposedToolIds"),
        description=body.get("description"),
    )
    return await found.service.patch_settings(found.actor, found.tenant, integration, patch)


@_action("config")
async def create_config(found: Visit, integration: str, form: FormData) -> web.StreamResponse:
    """Create a config from an upstream URL (its catalog read now) and bind it."""
    body: dict[str, Any] = {"upstreamUrl": field(form, "upstreamUrl").strip()}
    header_name, header_value = field(form, "headerName").strip(), field(form, "headerValue")
    if header_name:
        body["upstreamHeaders"] = {header_name: header_value}
    body = validate("ConfigCreate", body)
    config = await found.service.create_config(
        found.actor,
        found.tenant,
        integration,
        body["upstreamUrl"],
        body.get("upstreamHeaders") or {},
        None,
    )
    await _patch(found, integration, {"configId": config.config_id})
    return _done(found, integration, "config")


@_action("bind")
async def bind_config(found: Visit, integration: str, form: FormData) -> web.StreamResponse:
    await _patch(found, integration, {"configId": field(form, "configId")})
    return _done(found, integration, "bound")


@_action("tools")
async def save_tools(found: Visit, integration: str, form: FormData) -> web.StreamResponse:
    tools = _texts(form, "tool")
    description = field(form, "description").replace("\r\n", "\n")
    await _patch(found, integration, {"exposedToolIds": tools, "description": description})
    return _done(found, integration, "saved")


@_action("state")
async def set_enabled(found: Visit, integration: str, form: FormData) -> web.StreamResponse:
    enabled = field(form, "enabled") == "true"
    _, api_key = await _patch(found, integration, {"enabled": enabled})
    if api_key is None:
        return _done(found, integration, "enabled" if enabled else "disabled")
    return await _integration_page(found, integration, api_key=api_key)


def _grace_seconds(form: FormData) -> int:
    """The rotation's grace period (0 when left empty), as the API's `RotateKey` takes it."""
    text = field(form, "gracePeriodSeconds").strip() or "0"
    if not text.isascii() or not text.isdigit() or len(text) > 6:
        raise ValidationFailed(
            [FieldError("gracePeriodSeconds", "must be a whole number of seconds, 0-86400")]
        )
    body = validate("RotateKey", {"gracePeriodSeconds": int(text)})
    return int(body["gracePeriodSeconds"])


@_action("rotate", ("gracePeriodSeconds",))
async def rotate_key(found: Visit, integration: str, form: FormData) -> web.StreamResponse:
    """Rotate only once confirmed (the script asks; without it, a confirmation page)."""
    grace_s = _grace_seconds(form)
    if field(form, "confirmed") != "1":
        values = {"rotate.gracePeriodSeconds": str(grace_s)}
        return await _integration_page(found, integration, confirm_rotation=True, values=values)
    _, api_key = await found.service.rotate_key(found.actor, found.tenant, integration, grace_s)
    notice = f"The previous default key keeps working {grace_s} more seconds." if grace_s else None
    return await _integration_page(found, integration, api_key=api_key, notice=notice)


def _expires_at(form: FormData) -> int | None:
    """The form's expiry (a datetime-local value, read as UTC) in epoch ms; None: never."""
    text = field(form, "expiresAt").strip()
    if not text:
        return None
    try:
        moment = datetime.datetime.fromisoformat(text)
    except ValueError:
        moment = None
    if moment is None or len(text) > 40:
        raise ValidationFailed(
            [FieldError("expiresAt", "must be a date and time, e.g. 2030-01-31T18:00 (UTC)")]
        )
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.UTC)
    return int(moment.timestamp() * 1000)


@_action("key", ("label", "expiresAt", "toolIds"))
async def create_key(found: Visit, integration: str, form: FormData) -> web.StreamResponse:
    """A labelled key (POST …/mcp/keys): shown once, like the default key."""
    tools = _texts(form, "toolId")
    body: dict[str, Any] = {"label": field(form, "label").strip(), "expiresAt": _expires_at(form)}
    body = validate("ApiKeyCreate", {**body, "toolIds": tools or None})
    new = NewKey(body["label"], body.get("expiresAt"), body.get("toolIds"))
    key, api_key = await found.service.create_key(found.actor, found.tenant, integration, new)
    heading = f"API key \u201c{key.label}\u201d"
    return await _integration_page(found, integration, api_key=api_key, key_heading=heading)


@_action("delete-key")
async def delete_key(found: Visit, integration: str, form: FormData) -> web.StreamResponse:
    """Delete a key only once confirmed (as a rotation)."""
    key_id = field(form, "apiKeyId")
    if not full_match(ID_PATTERN, key_id):  # ids are UUIDs
        raise NotFound(f"API key {key_id!r} does not exist")
    if field(form, "confirmed") != "1":
        return await _integration_page(found, integration, confirm_delete_key=key_id)
    await found.service.delete_key(found.actor, found.tenant, integration, key_id)
    return _done(found, integration, "key-deleted")


@_action("revoke")
async def revoke_client(found: Visit, integration: str, form: FormData) -> web.StreamResponse:
    """Revoke an OAuth client's tokens only once confirmed (as a rotation)."""
    client_id = field(form, "clientId")
    if field(form, "confirmed") != "1":
        return await _integration_page(found, integration, confirm_revoke=client_id)
    await found.service.revoke_oauth_client(found.actor, found.tenant, integration, client_id)
    return _done(found, integration, "revoked")


@_action("fixture-{tool}")
async def put_fixture(found: Visit, integration: str, form: FormData) -> web.StreamResponse:
    tool = found.request.match_info["tool"]
    try:
        body = json.loads(field(form, "rules"))
    except ValueError as exc:
        raise ValidationFailed([FieldError("", f"not valid JSON: {exc}")]) from None
    body = validate("SimulatorFixturePut", body)
    await found.service.put_fixture(found.actor, found.tenant, integration, tool, body)
    return _done(found, integration, "fixture-saved")


@_action("fixture-{tool}")
async def delete_fixture(found: Visit, integration: str, form: FormData) -> web.StreamResponse:
    tool = found.request.match_info["tool"]
    await found.service.delete_fixture(found.actor, found.tenant, integration, tool)
    return _done(found, integration, "fixture-deleted")


# --------------------------------------------------------------------------- audit


async def audit(request: web.Request) -> web.StreamResponse:
    """GET /console/tenants/{tenant}/audit: recent events, newest first."""
    found = await visit(request)
    cursor = request.query.get("before")
    before = decode_cursor(cursor, int) if cursor else 2**62
    events = await found.service.list_audit(found.tenant, before, _PAGE_SIZE + 1)
    more = len(events) > _PAGE_SIZE
    events = events[:_PAGE_SIZE]
    return _renderer(request).page(
        "audit.html",
        headers=found.limit_headers,
        visit=found,
        tenant=found.tenant,
        events=events,
        next_cursor=encode_cursor(events[-1].seq) if more and events else None,
    )


async def not_found(request: web.Request) -> web.StreamResponse:
    """Any other /console path: a page, with the console's headers, not the API's JSON."""
    return _renderer(request).page(
        "error.html",
        status=404,
        title="Not found",
        detail="There is no such console page.",
        tenant=None,
    )


_I = "/console/tenants/{tenant}/integrations/{integration}"
ROUTES: tuple[tuple[str, str, PageHandler, str], ...] = (
    ("GET", "/console", page(sign_in_form), "sign_in_form"),
    ("POST", "/console/sign-in", page(sign_in), "sign_in"),
    ("GET", "/console/sign-in/{code}", page(sign_in_link), "sign_in_link"),
    ("POST", "/console/sign-out", page(sign_out), "sign_out"),
    ("GET", "/console/tenants/{tenant}", page(integrations), "integrations"),
    ("POST", "/console/tenants/{tenant}/integrations", page(create_integration), "create"),
    ("GET", "/console/tenants/{tenant}/audit", page(audit), "audit"),
    ("GET", _I, page(integration), "integration"),
    ("POST", _I + "/configs", create_config, "create_config"),
    ("POST", _I + "/bind", bind_config, "bind_config"),
    ("POST", _I + "/tools", save_tools, "save_tools"),
    ("POST", _I + "/state", set_enabled, "set_enabled"),
    ("POST", _I + "/rotate", rotate_key, "rotate_key"),
    ("POST", _I + "/keys", create_key, "create_key"),
    ("POST", _I + "/keys/delete", delete_key, "delete_key"),
    ("POST", _I + "/oauth-clients/revoke", revoke_client, "revoke_client"),
    ("POST", _I + "/fixtures/{tool}", put_fixture, "put_fixture"),
    ("POST", _I + "/fixtures/{tool}/delete", delete_fixture, "delete_fixture"),
    ("GET", "/console/{tail:.*}", page(not_found), "not_found"),
)
