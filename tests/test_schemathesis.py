"""Schemathesis against `GET /openapi.json` of the live app: every operation, positive and
negative examples, with a valid JWT for tenant `acme`. No answer may be a 5xx, and every answer
must conform to the document: a documented status code, content type, and body schema.

The app runs on 127.0.0.1 (a real socket) in a background thread with its own event loop, on
SQLite; tenant `acme` has an integration `crm` with a config (bound, enabled, exposing a tool),
and path parameters are steered towards those ids half of the time, so that operations reach
their success paths and not only 404s."""

from __future__ import annotations

import asyncio
import re
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import schemathesis
from conftest import JWT_SECRET, make_settings
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from net import closed_url
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from gateway.server import build_app
from settings_api.jwt_auth import issue_token
from settings_api.routes import ROUTES, Route

pytestmark = pytest.mark.slow

EXAMPLES = 25


def no_server_error(ctx: Any, response: Any, case: Any) -> bool | None:
    """No 5xx, except the documented 502 `upstream-failed`: the seeded config's upstream does
    not answer (and a generated upstreamUrl rarely does), which is the upstream's failure."""
    if response.status_code == 502:
        problem = response.json()
        assert problem["type"].endswith("/upstream-failed"), problem
        return None
    return not_a_server_error(ctx, response, case)


CHECKS = [
    no_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
TOOLS = [
    {
        "name": "create_contact",
        "inputSchema": {"type": "object"},
        "outputSchema": {"type": "object", "properties": {"id": {"type": "string"}}},
    },
    {"name": "search_contacts", "inputSchema": {"type": "object"}},
]


class LiveServer:
    """The app on a free port of 127.0.0.1, served by a thread's own event loop."""

    def __init__(self, tmp: Path) -> None:
        self.settings = make_settings(
            tmp,
            f"sqlite:///{tmp / 'schemathesis.db'}",
            MCPGW_REQUEST_LIMIT_BURST="100000",
            MCPGW_REQUEST_LIMIT_RPS="100000",
            # Hundreds of examples on one token: reach the
            # operations, not the settings API's rate limit.
            MCPGW_SETTINGS_RATE_LIMIT_BURST="100000",
            MCPGW_SETTINGS_RATE_LIMIT_RPS="100000",
        )
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.runner: Any = None
        self.url = ""

    def start(self) -> None:
        from aiohttp import web

        self.thread.start()

        async def up() -> str:
            self.runner = web.AppRunner(build_app(self.settings))
            await self.runner.setup()
            site = web.TCPSite(self.runner, "127.0.0.1", 0)
            await site.start()
            port = self.runner.addresses[0][1]
            return f"http://127.0.0.1:{port}"

        self.url = asyncio.run_coroutine_threadsafe(up(), self.loop).result(30)

    def stop(self) -> None:
        if self.runner is not None:
            asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    server = LiveServer(tmp_path_factory.mktemp("schemathesis"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


HEADERS = {"Authorization": f"Bearer {issue_token(JWT_SECRET, 'acme', ttl_s=3600)}"}
IDS: dict[str, str] = {
    "tenant": "acme",
    "integration": "crm",
    "tool_id": "create_contact",
    "client_id": "mcpc_holds_nothing",  # revoking it answers the documented 404
}


def seed(url: str) -> None:
    """acme/crm with a config (inline tools, an upstream nobody answers, a secret header), bound
    and enabled, and a simulator fixture; acme/scratch for DELETE to delete. Idempotent: the
    examples of an operation may have deleted or changed any of it."""
    base = f"{url}/v1/tenants/acme/integrations"
    with requests.Session() as http:
        http.headers.update(HEADERS)
        for integration in ("crm", "scratch"):
            answer = http.put(f"{base}/{integration}", json={"name": integration}, timeout=10)
            assert answer.status_code in (200, 201), answer.text
        if (
            http.get(f"{base}/crm/configs/{IDS.get('config_id', 'none')}", timeout=10).status_code
            != 200
        ):
            answer = http.post(
                f"{base}/crm/configs",
                timeout=10,
                json={
                    "tools": TOOLS,
                    "upstreamUrl": closed_url(),
                    "upstreamHeaders": {"Authorization": "Bearer schemathesis-upstream-secret"},
                },
            )
            assert answer.status_code == 201, answer.text
            IDS["config_id"] = answer.json()["configId"]
        answer = http.patch(
            f"{base}/crm/mcp",
            timeout=10,
            json={
                "enabled": True,
                "configId": IDS["config_id"],
                "exposedToolIds": ["create_contact"],
            },
        )
        assert answer.status_code == 200, answer.text
        answer = http.put(
            f"{base}/crm/mcp/simulator/fixtures/create_contact",
            timeout=10,
            json={
                "rules": [
                    {"match": {}, "result": {"content": [], "structuredContent": {"id": "c-1"}}}
                ]
            },
        )
        assert answer.status_code in (200, 201), answer.text
        # A labelled key for the key routes (examples may have deleted the previous one).
        listed = http.get(f"{base}/crm/mcp/keys", timeout=10).json()["keys"]
        labelled = [k for k in listed if k["label"] != "default"]
        if not labelled:
            answer = http.post(f"{base}/crm/mcp/keys", json={"label": "schemathesis"}, timeout=10)
            assert answer.status_code == 201, answer.text
            labelled = [answer.json()]
        IDS["api_key_id"] = labelled[0]["apiKeyId"]


@pytest.fixture(scope="module")
def api_schema(live: LiveServer) -> Any:
    """The document exactly as the live app serves it."""
    return schemathesis.openapi.from_url(f"{live.url}/openapi.json")


def test_the_live_document_lists_every_route(api_schema: Any) -> None:
    served = {(r.method, r.path) for r in ROUTES}
    found = {
        (operation.method.upper(), operation.path)
        for result in api_schema.get_all_operations()
        if (operation := result.ok()) is not None
    }
    assert found == served


@pytest.mark.parametrize(
    "mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=lambda mode: mode.value
)
@pytest.mark.parametrize("route", ROUTES, ids=lambda route: route.operation_id)
def test_settings_api_conforms_to_its_openapi_document(
    api_schema: Any, live: LiveServer, route: Route, mode: GenerationMode
) -> None:
    operation = api_schema[route.path][route.method]
    # Half the examples use the ids that exist, so operations reach their success paths too
    # (tenant acme is the only one the JWT grants).
    seed(live.url)
    known = {name: IDS[name] for name in re.findall(r"\{(\w+)\}", route.path)}
    if route.method == "DELETE" and route.path.endswith("{integration}"):
        known["integration"] = "scratch"
    cases = st.one_of(
        operation.as_strategy(mode), operation.as_strategy(mode, path_parameters=known)
    )

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=cases)
    def run(case: Any) -> None:
        case.call_and_validate(base_url=live.url, headers=HEADERS, checks=CHECKS)

    run()
