"""Settings API handlers and the route table that also drives `/openapi.json`."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web

from settings_api.http import (
    SETTINGS,
    Handler,
    decode_cursor,
    encode_cursor,
    json_response,
    page_params,
    read_json,
)
from settings_api.jwt_auth import Principal
from settings_api.problems import FieldError, NotFound, ValidationFailed
from settings_api.schemas import ID_PATTERN, full_match, validate
from settings_api.service import NewKey, SettingsPatch, SettingsService
from settings_api.store import (
    AuditEvent,
    CallQuery,
    Config,
    Integration,
    KeyBinding,
    McpSettings,
    OAuthClientUse,
    SimulatorFixture,
    ToolCall,
)
from settings_api.tools import TOOL_NAME
from settings_api.use_cases.call_log import MAX_RUN_ID, NEWEST, URLS

SERVICE: web.AppKey[SettingsService] = web.AppKey("settings_service", SettingsService)
PRINCIPAL: web.RequestKey[Principal] = web.RequestKey("principal", Principal)
BASE = "/v1/tenants/{tenant}/integrations"
# The testUrl arguments one page of the call log carries at most (the rest: the next page).
MAX_PAGE_ARGUMENTS_CHARS = 4 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class Route:
    """One operation: how it is served and how OpenAPI describes it."""

    method: str
    path: str
    handler: Handler
    operation_id: str
    summary: str
    body: str | None = None
    body_required: bool = True
    responses: dict[int, str | None] = field(default_factory=dict)
    query: tuple[str, ...] = ()


# serialization -------------------------------------------------------------------------------
def integration_json(i: Integration) -> dict[str, Any]:
    return {
        "integrationId": i.integration_id,
        "name": i.name,
        "createdAt": i.created_at,
        "modifiedAt": i.modified_at,
    }


def config_json(c: Config) -> dict[str, Any]:
    # upstream header values are write-only: only their names are ever shown; so are the URL's
    # password and query values (mcp_core/redaction.py).
    return {
        "configId": c.config_id,
        "upstreamUrl": c.shown_url,
        "upstreamHeaderNames": c.upstream_header_names,
        "tools": c.tools,
        "createdAt": c.created_at,
        "syncedAt": c.synced_at,
    }


def mcp_urls(public_url: str, tenant: str, integration: str) -> tuple[str, str]:
    """(callUrl, testUrl) of an integration."""
    base = f"{public_url}/v1/tenants/{tenant}/integrations/{integration}"
    return f"{base}/mcp:call", f"{base}/mcp:test"


def settings_json(request: web.Request, s: McpSettings, api_key: str | None) -> dict[str, Any]:
    call_url, test_url = mcp_urls(request.app[SETTINGS].public_url, s.tenant_id, s.integration_id)
    return {
        "integrationId": s.integration_id,
        "enabled": s.enabled,
        "configId": s.config_id,
        "exposedToolIds": s.exposed_tool_ids,
        "description": s.description,
        "apiKeyId": s.api_key_id,
        "callUrl": call_url,
        "testUrl": test_url,
        "createdAt": s.created_at,
        "modifiedAt": s.modified_at,
        "keyPrefix": s.key_prefix,
        "apiKey": api_key,
    }


def key_json(k: KeyBinding) -> dict[str, Any]:
    # A default key in its rotation grace period expires when the grace ends.
    return {
        "apiKeyId": k.key_id,
        "label": k.label,
        "keyPrefix": k.key_prefix,
        "createdAt": k.created_at,
        "expiresAt": k.ends_at,
        "toolIds": k.tool_ids,
        "lastUsedAt": k.last_used_at,
    }


def fixture_json(f: SimulatorFixture, version: int) -> dict[str, Any]:
    return {
        "toolId": f.tool_id,
        "rules": f.rules,
        "fixturesVersion": version,
        "createdAt": f.created_at,
        "modifiedAt": f.modified_at,
    }


def audit_json(e: AuditEvent) -> dict[str, Any]:
    return {
        "eventId": e.event_id,
        "actor": e.actor,
        "action": e.action,
        "target": e.target,
        "at": e.at,
        "details": e.details,
    }


def oauth_client_json(c: OAuthClientUse) -> dict[str, Any]:
    # The redirect URIs' hosts say where the client's approvals went; the full URIs are the
    # client's own business.
    hosts = sorted({urlsplit(uri).netloc for uri in c.redirect_uris})
    return {
        "clientId": c.client_id,
        "clientName": c.client_name,
        "redirectHosts": hosts,
        "firstUsedAt": c.first_used_at,
        "lastUsedAt": c.last_used_at,
    }


def call_json(c: ToolCall) -> dict[str, Any]:
    # callUrl's arguments are the tenant's users' data: only their hash is kept. testUrl's
    # are the sandbox trajectory an eval harness asserts on.
    shown: dict[str, Any] = {
        "at": c.at,
        "url": c.url,
        "apiKeyId": c.api_key_id,
        "tool": c.tool,
        "outcome": c.outcome,
        "durationMs": c.duration_ms,
        "requestId": c.request_id,
        "runId": c.run_id,
        "argumentsSha256": c.arguments_sha256,
    }
    if c.url == "test":
        shown["arguments"] = json.loads(c.arguments) if c.arguments is not None else None
    return shown


def _page(items: list[Any], limit: int, render: Any, key: Any) -> dict[str, Any]:
    more = len(items) > limit
    items = items[:limit]
    return {
        "items": [render(i) for i in items],
        "nextCursor": encode_cursor(key(items[-1])) if more and items else None,
    }


# handlers ------------------------------------------------------------------------------------
def _ctx(request: web.Request) -> tuple[SettingsService, str, str]:
    principal: Principal = request[PRINCIPAL]
    return request.app[SERVICE], principal.subject, request.match_info["tenant"]


def _integration(request: web.Request) -> str:
    """The path's integration id; one that could never have been created does not exist."""
    integration = request.match_info["integration"]
    if not full_match(ID_PATTERN, integration):
        raise NotFound(f"integration {integration!r} does not exist")
    return integration


def _config_id(request: web.Request) -> str:
    config_id = request.match_info["config_id"]
    if not full_match(ID_PATTERN, config_id):  # ids are UUIDs
        raise NotFound(f"config {config_id!r} does not exist")
    return config_id


async def put_integration(request: web.Request) -> web.Response:
    service, actor, tenant = _ctx(request)
    integration = request.match_info["integration"]
    body = validate("IntegrationPut", await read_json(request))
    if not full_match(ID_PATTERN, integration):
        raise ValidationFailed(
            [FieldError("integration", "must be 1-64 characters of A-Z, a-z, 0-9, '_' or '-'")]
        )
    found, created = await service.put_integration(actor, tenant, integration, body["name"])
    return json_response(integration_json(found), 201 if created else 200)


async def list_integrations(request: web.Request) -> web.Response:
    service, _, tenant = _ctx(request)
    cursor, limit = page_params(request)
    after = decode_cursor(cursor, str) if cursor else ""
    found = await service.list_integrations(tenant, after, limit + 1)
    return json_response(_page(found, limit, integration_json, lambda i: i.integration_id))


async def get_integration(request: web.Request) -> web.Response:
    service, _, tenant = _ctx(request)
    found = await service.get_integration(tenant, _integration(request))
    return json_response(integration_json(found))


async def delete_integration(request: web.Request) -> web.Response:
    service, actor, tenant = _ctx(request)
    await service.delete_integration(actor, tenant, _integration(request))
    return web.Response(status=204)


async def create_config(request: web.Request) -> web.Response:
    service, actor, tenant = _ctx(request)
    body = validate("ConfigCreate", await read_json(request))
    config = await service.create_config(
        actor,
        tenant,
        _integration(request),
        body.get("upstreamUrl"),
        body.get("upstreamHeaders") or {},
        body.get("tools"),
    )
    return json_response(config_json(config), 201)


async def list_configs(request: web.Request) -> web.Response:
    service, _, tenant = _ctx(request)
    cursor, limit = page_params(request)
    after = decode_cursor(cursor, str) if cursor else ""
    found = await service.list_configs(tenant, _integration(request), after, limit + 1)
    return json_response(_page(found, limit, config_json, lambda c: c.config_id))


async def get_config(request: web.Request) -> web.Response:
    service, _, tenant = _ctx(request)
    config = await service.get_config(tenant, _integration(request), _config_id(request))
    return json_response(config_json(config))


async def sync_tools(request: web.Request) -> web.Response:
    service, actor, tenant = _ctx(request)
    config = await service.sync_tools(actor, tenant, _integration(request), _config_id(request))
    return json_response(config_json(config))


async def get_mcp_settings(request: web.Request) -> web.Response:
    service, _, tenant = _ctx(request)
    found = await service.get_settings(tenant, _integration(request))
    return json_response(settings_json(request, found, None))


async def patch_mcp_settings(request: web.Request) -> web.Response:
    service, actor, tenant = _ctx(request)
    body = validate("McpSettingsPatch", await read_json(request))
    patch = SettingsPatch(
        enabled=body.get("enabled"),
        config_id=body.get("configId"),
        exposed_tool_ids=body.get("exposedToolIds"),
        description=body.get("description"),
    )
    found, raw_key = await service.patch_settings(actor, tenant, _integration(request), patch)
    return json_response(settings_json(request, found, raw_key))


async def rotate_key(request: web.Request) -> web.Response:
    service, actor, tenant = _ctx(request)
    integration = _integration(request)
    grace_s = 0
    if request.body_exists:  # the body is optional: no body, no grace
        body = _whole_numbers(validate("RotateKey", await read_json(request)))
        grace_s = body.get("gracePeriodSeconds", 0)
    found, raw_key = await service.rotate_key(actor, tenant, integration, grace_s)
    return json_response(settings_json(request, found, raw_key))


async def create_key(request: web.Request) -> web.Response:
    service, actor, tenant = _ctx(request)
    integration = _integration(request)
    body = _whole_numbers(validate("ApiKeyCreate", await read_json(request)))
    new = NewKey(body["label"], body.get("expiresAt"), body.get("toolIds"))
    key, raw = await service.create_key(actor, tenant, integration, new)
    return json_response({**key_json(key), "apiKey": raw}, 201)


async def list_keys(request: web.Request) -> web.Response:
    service, _, tenant = _ctx(request)
    found = await service.list_keys(tenant, _integration(request))
    return json_response({"keys": [key_json(k) for k in found]})


async def delete_key(request: web.Request) -> web.Response:
    service, actor, tenant = _ctx(request)
    integration = _integration(request)
    key_id = request.match_info["api_key_id"]
    if not full_match(ID_PATTERN, key_id):  # ids are UUIDs
        raise NotFound(f"API key {key_id!r} does not exist")
    await service.delete_key(actor, tenant, integration, key_id)
    return web.Response(status=204)


def _whole_numbers(body: dict[str, Any]) -> dict[str, Any]:
    """`body` when its numbers are integers as written: JSON Schema's `integer` also takes
    5.0, which these fields do not."""
    errors = [
        FieldError(name, "must be of type integer")
        for name, value in body.items()
        if isinstance(value, float)
    ]
    if errors:
        raise ValidationFailed(errors)
    return body


def _tool_id(request: web.Request) -> str:
    tool_id = request.match_info["tool_id"]
    if not TOOL_NAME.fullmatch(tool_id):
        raise NotFound(f"tool {tool_id!r} does not exist")
    return tool_id


async def put_fixture(request: web.Request) -> web.Response:
    service, actor, tenant = _ctx(request)
    integration, tool_id = _integration(request), _tool_id(request)
    body = validate("SimulatorFixturePut", await read_json(request))
    fixture, version, created = await service.put_fixture(actor, tenant, integration, tool_id, body)
    return json_response(fixture_json(fixture, version), 201 if created else 200)


async def get_fixture(request: web.Request) -> web.Response:
    service, _, tenant = _ctx(request)
    fixture, version = await service.get_fixture(tenant, _integration(request), _tool_id(request))
    return json_response(fixture_json(fixture, version))


async def delete_fixture(request: web.Request) -> web.Response:
    service, actor, tenant = _ctx(request)
    await service.delete_fixture(actor, tenant, _integration(request), _tool_id(request))
    return web.Response(status=204)


async def oauth_clients_page(
    service: SettingsService, tenant: str, integration: str, cursor: str | None, limit: int
) -> dict[str, Any]:
    """A page of the OAuth clients holding tokens, as the API answers it (the console too)."""
    after = decode_cursor(cursor, str) if cursor else ""
    found = await service.list_oauth_clients(tenant, integration, after, limit + 1)
    return _page(found, limit, oauth_client_json, lambda c: c.client_id)


async def list_oauth_clients(request: web.Request) -> web.Response:
    service, _, tenant = _ctx(request)
    cursor, limit = page_params(request)
    return json_response(
        await oauth_clients_page(service, tenant, _integration(request), cursor, limit)
    )


async def revoke_oauth_client(request: web.Request) -> web.Response:
    service, actor, tenant = _ctx(request)
    client_id = request.match_info["client_id"]
    await service.revoke_oauth_client(actor, tenant, _integration(request), client_id)
    return web.Response(status=204)


async def list_audit(request: web.Request) -> web.Response:
    service, _, tenant = _ctx(request)
    cursor, limit = page_params(request)
    before = decode_cursor(cursor, int) if cursor else 2**62
    found = await service.list_audit(tenant, before, limit + 1)
    return json_response(_page(found, limit, audit_json, lambda e: e.seq))


async def calls_page(
    service: SettingsService,
    tenant: str,
    integration: str,
    cursor: str | None,
    limit: int,
    url: str | None = None,
    run_id: str | None = None,
) -> dict[str, Any]:
    """A page of the tool-call log, as the API answers it (the console shows the same)."""
    page = CallQuery(_call_cursor(cursor) if cursor else NEWEST, limit + 1, url, run_id)
    found = await service.list_calls(tenant, integration, page)
    shown = _page(found, _fitting(found, limit), call_json, lambda c: f"{c.at}.{c.seq}")
    return {"calls": shown["items"], "nextCursor": shown["nextCursor"]}


async def list_calls(request: web.Request) -> web.Response:
    service, _, tenant = _ctx(request)
    cursor, limit = page_params(request)
    url, run_id = _call_filter(request)
    integration = _integration(request)
    return json_response(await calls_page(service, tenant, integration, cursor, limit, url, run_id))


def _fitting(calls: list[ToolCall], limit: int) -> int:
    """How many of `calls` (at most `limit`, at least one) fit in one page's arguments budget:
    testUrl arguments may be large, and a page of them must stay bounded."""
    total = 0
    for count, call in enumerate(calls[:limit]):
        total += len(call.arguments or "")
        if total > MAX_PAGE_ARGUMENTS_CHARS and count > 0:
            return count
    return limit


def _call_cursor(cursor: str) -> tuple[int, int]:
    at, _, seq = decode_cursor(cursor, str).partition(".")
    if not (at.isascii() and at.isdigit() and seq.isascii() and seq.isdigit()):
        raise ValidationFailed([FieldError("cursor", "is not a cursor this API returned")])
    return int(at), int(seq)


def _call_filter(request: web.Request) -> tuple[str | None, str | None]:
    """The `url` and `runId` filters, validated."""
    url, run_id = request.query.get("url"), request.query.get("runId")
    errors = []
    if url is not None and url not in URLS:
        errors.append(FieldError("url", "must be 'call' or 'test'"))
    if run_id is not None and (not 1 <= len(run_id) <= MAX_RUN_ID or any(c < " " for c in run_id)):
        errors.append(
            FieldError("runId", f"must be 1-{MAX_RUN_ID} characters, no control characters")
        )
    if errors:
        raise ValidationFailed(errors)
    return url, run_id


# 429: the token's rate limit, or too many failed authentications from the address.
_ERRORS = {
    400: "Problem",
    401: "Problem",
    403: "Problem",
    404: "Problem",
    429: "Problem",
    503: "Problem",
}
_WRITE_ERRORS = {**_ERRORS, 409: "Problem", 413: "Problem", 415: "Problem", 422: "Problem"}
_PAGE = ("cursor", "limit")
_INTEGRATION = BASE + "/{integration}"

ROUTES: tuple[Route, ...] = (
    Route(
        "GET",
        BASE,
        list_integrations,
        "listIntegrations",
        "List integrations",
        responses={200: "IntegrationPage", 422: "Problem", **_ERRORS},
        query=_PAGE,
    ),
    Route(
        "PUT",
        _INTEGRATION,
        put_integration,
        "putIntegration",
        "Create or rename an integration",
        body="IntegrationPut",
        responses={200: "Integration", 201: "Integration", **_WRITE_ERRORS},
    ),
    Route(
        "GET",
        _INTEGRATION,
        get_integration,
        "getIntegration",
        "Read an integration",
        responses={200: "Integration", **_ERRORS},
    ),
    Route(
        "DELETE",
        _INTEGRATION,
        delete_integration,
        "deleteIntegration",
        "Delete an integration and revoke its key",
        responses={204: None, **_ERRORS},
    ),
    Route(
        "POST",
        _INTEGRATION + "/configs",
        create_config,
        "createConfig",
        "Create a config (inline tools, or read from the upstream)",
        body="ConfigCreate",
        # 429: the tenant's catalog reads in flight are at MCPGW_UPSTREAM_MAX_INFLIGHT.
        responses={201: "Config", 429: "Problem", 502: "Problem", **_WRITE_ERRORS},
    ),
    Route(
        "GET",
        _INTEGRATION + "/configs",
        list_configs,
        "listConfigs",
        "List configs",
        responses={200: "ConfigPage", 422: "Problem", **_ERRORS},
        query=_PAGE,
    ),
    Route(
        "GET",
        _INTEGRATION + "/configs/{config_id}",
        get_config,
        "getConfig",
        "Read a config",
        responses={200: "Config", **_ERRORS},
    ),
    Route(
        "POST",
        _INTEGRATION + "/configs/{config_id}:syncTools",
        sync_tools,
        "syncTools",
        "Re-read the upstream tool catalog",
        # 500 secrets-unreadable: MCPGW_SECRET_KEY cannot decrypt the config's header values.
        responses={
            200: "Config",
            409: "Problem",
            422: "Problem",
            429: "Problem",
            500: "Problem",
            502: "Problem",
            **_ERRORS,
        },
    ),
    Route(
        "GET",
        _INTEGRATION + "/mcp",
        get_mcp_settings,
        "getMcpSettings",
        "Read the MCP settings",
        responses={200: "McpSettings", **_ERRORS},
    ),
    Route(
        "PATCH",
        _INTEGRATION + "/mcp",
        patch_mcp_settings,
        "patchMcpSettings",
        "Change the MCP settings (absent or null fields are kept)",
        body="McpSettingsPatch",
        responses={200: "McpSettings", **_WRITE_ERRORS},
    ),
    Route(
        "POST",
        _INTEGRATION + "/mcp:rotateKey",
        rotate_key,
        "rotateKey",
        "Mint a new default API key; the old one stops now or after gracePeriodSeconds",
        body="RotateKey",
        body_required=False,
        responses={200: "McpSettings", **_WRITE_ERRORS},
    ),
    Route(
        "POST",
        _INTEGRATION + "/mcp/keys",
        create_key,
        "createApiKey",
        "Mint a labelled API key (optional expiry and tool narrowing)",
        body="ApiKeyCreate",
        responses={201: "ApiKeyCreated", **_WRITE_ERRORS},
    ),
    Route(
        "GET",
        _INTEGRATION + "/mcp/keys",
        list_keys,
        "listApiKeys",
        "The integration's API keys, the default one included (never the raw keys)",
        responses={200: "ApiKeyList", **_ERRORS},
    ),
    Route(
        "DELETE",
        _INTEGRATION + "/mcp/keys/{api_key_id}",
        delete_key,
        "deleteApiKey",
        "Delete an API key: it and the OAuth tokens it approved stop on every replica",
        responses={204: None, **_ERRORS},
    ),
    Route(
        "GET",
        _INTEGRATION + "/mcp/calls",
        list_calls,
        "listToolCalls",
        "The integration's tools/call log, newest first",
        responses={200: "ToolCallPage", 422: "Problem", **_ERRORS},
        query=(*_PAGE, "url", "runId"),
    ),
    Route(
        "PUT",
        _INTEGRATION + "/mcp/simulator/fixtures/{tool_id}",
        put_fixture,
        "putSimulatorFixture",
        "Script the simulator's answers for a tool (testUrl)",
        body="SimulatorFixturePut",
        responses={200: "SimulatorFixture", 201: "SimulatorFixture", **_WRITE_ERRORS},
    ),
    Route(
        "GET",
        _INTEGRATION + "/mcp/simulator/fixtures/{tool_id}",
        get_fixture,
        "getSimulatorFixture",
        "Read a tool's simulator fixture",
        responses={200: "SimulatorFixture", **_ERRORS},
    ),
    Route(
        "DELETE",
        _INTEGRATION + "/mcp/simulator/fixtures/{tool_id}",
        delete_fixture,
        "deleteSimulatorFixture",
        "Remove a tool's simulator fixture",
        responses={204: None, **_ERRORS},
    ),
    Route(
        "GET",
        _INTEGRATION + "/mcp/oauth/clients",
        list_oauth_clients,
        "listOAuthClients",
        "The OAuth clients holding tokens for the integration (approved with its key)",
        responses={200: "OAuthClientPage", 422: "Problem", **_ERRORS},
        query=_PAGE,
    ),
    Route(
        "DELETE",
        _INTEGRATION + "/mcp/oauth/clients/{client_id}",
        revoke_oauth_client,
        "revokeOAuthClient",
        "Revoke every token an OAuth client holds for the integration (clientId URL-encoded)",
        responses={204: None, 503: "Problem", **_ERRORS},
    ),
    Route(
        "GET",
        "/v1/tenants/{tenant}/audit",
        list_audit,
        "listAudit",
        "The tenant's audit events, newest first",
        responses={200: "AuditEventPage", 422: "Problem", **_ERRORS},
        query=_PAGE,
    ),
)
