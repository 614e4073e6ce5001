"""`GET /openapi.json` is valid OpenAPI 3.1 and describes what the live app really answers."""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Callable
from typing import Any

from aiohttp.test_utils import TestClient
from jsonschema import Draft202012Validator
from mcp_stub import StubUpstream, make_tools
from net import closed_url
from openapi_spec_validator import validate

from settings_api.routes import ROUTES
from settings_api.schemas import COMPONENTS

# Response objects whose every member must be documented (Tool stays open: upstream tools carry
# fields of their own; AuditEvent.details is free-form by design).
STRICT = (
    "Integration",
    "Config",
    "McpSettings",
    "AuditEvent",
    "Problem",
    "IntegrationPage",
    "ConfigPage",
    "AuditEventPage",
)


async def fetch_document(client: TestClient) -> dict[str, Any]:
    async with client.get("/openapi.json") as resp:
        assert resp.status == 200
        assert resp.content_type == "application/json"
        return await resp.json()


def strict_components(doc: dict[str, Any]) -> dict[str, Any]:
    components = copy.deepcopy(doc["components"])
    for name in STRICT:
        components["schemas"][name].setdefault("additionalProperties", False)
    return components


async def test_document_is_valid_openapi_31(client: TestClient) -> None:
    doc = await fetch_document(client)
    assert doc["openapi"].startswith("3.1")
    validate(doc)  # raises on any violation of the OpenAPI 3.1 schema
    assert doc["components"]["securitySchemes"]["bearerJwt"]["scheme"] == "bearer"
    async with client.get("/openapi.json") as resp:  # no JWT needed to read the contract
        assert resp.status == 200


async def test_document_lists_every_route_with_its_method(client: TestClient) -> None:
    doc = await fetch_document(client)
    documented = {(method.upper(), path) for path, ops in doc["paths"].items() for method in ops}
    served = {(r.method, r.path) for r in ROUTES}
    assert documented == served
    live = {
        (r.method, r.resource.canonical)
        for r in client.app.router.routes()
        if r.resource is not None and r.name and r.name.startswith("settings.")
    }
    assert live == documented  # what the app really routes, not just the table
    operation_ids = set()
    for route in ROUTES:
        operation = doc["paths"][route.path][route.method.lower()]
        assert operation["operationId"] == route.operation_id
        operation_ids.add(operation["operationId"])
        params = {(p["name"], p["in"]) for p in operation["parameters"]}
        for name in re.findall(r"\{(\w+)\}", route.path):
            assert (name, "path") in params
        # Every route needs a JWT, so every route documents 401 and 403.
        assert {"401", "403"} <= set(operation["responses"])
        if route.query:
            assert {("cursor", "query"), ("limit", "query")} <= params
    assert len(operation_ids) == len(ROUTES)
    for path in ("/v1/tenants/{tenant}/integrations", "/v1/tenants/{tenant}/audit"):
        assert path in doc["paths"]


async def test_request_bodies_are_the_schemas_the_handlers_validate_with(
    client: TestClient,
) -> None:
    doc = await fetch_document(client)
    with_body = [r for r in ROUTES if r.body]
    assert {r.operation_id for r in with_body} == {
        "putIntegration",
        "createConfig",
        "patchMcpSettings",
        "putSimulatorFixture",
        "rotateKey",
        "createApiKey",
    }
    for route in with_body:
        body = doc["paths"][route.path][route.method.lower()]["requestBody"]
        assert body["required"] is (route.operation_id != "rotateKey")  # its body is optional
        ref = body["content"]["application/json"]["schema"]["$ref"]
        name = ref.rsplit("/", 1)[-1]
        assert name == route.body
        assert doc["components"]["schemas"][name] == json.loads(json.dumps(COMPONENTS[name]))
        assert "422" in doc["paths"][route.path][route.method.lower()]["responses"]


class Checker:
    """Makes requests and checks each answer against the operation the document declares."""

    def __init__(self, client: TestClient, doc: dict[str, Any], headers: dict[str, str]) -> None:
        self.client = client
        self.doc = doc
        self.headers = headers
        self.components = strict_components(doc)
        self.seen: set[tuple[str, int]] = set()

    async def check(
        self,
        method: str,
        template: str,
        status: int,
        at: dict[str, str],
        *,
        headers: dict[str, str] | None = None,
        **kwargs: Any,
    ) -> Any:
        """Request `template` with path parameters `at`; validate the answer; return its body."""
        path = template
        for name, value in at.items():
            path = path.replace("{" + name + "}", value)
        async with self.client.request(
            method, path, headers=self.headers if headers is None else headers, **kwargs
        ) as resp:
            text = await resp.text()
            assert resp.status == status, (method, path, resp.status, text)
            content_type = resp.content_type
        operation = self.doc["paths"][template][method.lower()]
        declared = operation["responses"]
        assert str(status) in declared, (operation["operationId"], status)
        response = declared[str(status)]
        self.seen.add((operation["operationId"], status))
        if "content" not in response:
            assert text == ""
            return None
        assert content_type in response["content"], (content_type, response["content"])
        schema = response["content"][content_type]["schema"]
        body = json.loads(text)
        validator = Draft202012Validator({**schema, "components": self.components})
        errors = [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(body)]
        assert not errors, (operation["operationId"], status, errors, body)
        return body


async def test_live_responses_validate_against_the_document(
    client: TestClient, auth: Callable[..., dict[str, str]], aiohttp_server: Any
) -> None:
    doc = await fetch_document(client)
    c = Checker(client, doc, auth("acme"))
    base = "/v1/tenants/{tenant}/integrations"
    one = base + "/{integration}"
    audit = "/v1/tenants/{tenant}/audit"
    p = {"tenant": "acme", "integration": "crm"}

    await c.check("PUT", one, 201, p, json={"name": "CRM"})
    await c.check("PUT", one, 200, p, json={"name": "Sales CRM"})
    await c.check("PUT", one, 201, {**p, "integration": "zz"}, json={"name": "Z"})
    await c.check("PUT", one, 422, p, json={"name": 5})
    page = await c.check("GET", base, 200, p, params={"limit": "1"})
    assert isinstance(page["nextCursor"], str)
    await c.check("GET", base, 200, p, params={"cursor": page["nextCursor"]})
    await c.check("GET", base, 422, p, params={"limit": "0"})
    await c.check("GET", one, 200, p)

    stub = StubUpstream(tools=make_tools(3), page_size=2)
    url = str((await aiohttp_server(stub.app())).make_url("/mcp"))
    inline = await c.check(
        "POST",
        one + "/configs",
        201,
        p,
        json={"tools": [{"name": "search_contacts", "inputSchema": {"type": "object"}}]},
    )
    synced = await c.check(
        "POST",
        one + "/configs",
        201,
        p,
        json={"upstreamUrl": url, "upstreamHeaders": {"Authorization": "Bearer x-1234"}},
    )
    await c.check("POST", one + "/configs", 502, p, json={"upstreamUrl": closed_url()})
    await c.check("POST", one + "/configs", 422, p, json={"tools": "x"})
    await c.check("GET", one + "/configs", 200, p)
    cp = {**p, "config_id": synced["configId"]}
    await c.check("GET", one + "/configs/{config_id}", 200, cp)
    await c.check("POST", one + "/configs/{config_id}:syncTools", 200, cp)
    await c.check(
        "POST", one + "/configs/{config_id}:syncTools", 409, {**p, "config_id": inline["configId"]}
    )
    await c.check("GET", one + "/configs/{config_id}", 404, {**p, "config_id": "nope"})

    await c.check("GET", one + "/mcp", 200, p)
    enabled = await c.check(
        "PATCH",
        one + "/mcp",
        200,
        p,
        json={
            "enabled": True,
            "configId": synced["configId"],
            "exposedToolIds": ["tool_0"],
            "description": "CRM tools",
        },
    )
    assert enabled["apiKey"]
    await c.check("PATCH", one + "/mcp", 422, p, json={"exposedToolIds": ["nope"]})
    await c.check("PATCH", one + "/mcp", 422, p, json={"enabled": "yes", "x": 1})
    await c.check(
        "PATCH",
        one + "/mcp",
        400,
        p,
        data=b"{",
        headers={**c.headers, "Content-Type": "application/json"},
    )
    await c.check(
        "PATCH",
        one + "/mcp",
        415,
        p,
        data=b"{}",
        headers={**c.headers, "Content-Type": "text/plain"},
    )
    await c.check("POST", one + "/mcp:rotateKey", 200, p)

    events = await c.check("GET", audit, 200, p, params={"limit": "2"})
    await c.check("GET", audit, 200, p, params={"cursor": events["nextCursor"]})
    await c.check("GET", audit, 422, p, params={"cursor": "garbage"})

    await c.check("GET", one, 404, {**p, "integration": "nope"})
    await c.check("GET", base, 401, p, headers={})
    await c.check("GET", base, 403, p, headers=auth("other"))
    await c.check("DELETE", one, 204, p)
    await c.check("DELETE", one, 404, p)

    statuses = {status for _, status in c.seen}
    assert {200, 201, 204, 400, 401, 403, 404, 409, 415, 422, 502} <= statuses
