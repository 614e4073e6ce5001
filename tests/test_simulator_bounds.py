"""Every tenant is hostile to every other (issue #18): what one tenant's schema and input may
cost the simulator is bounded (steps, bytes, items: counted, never timed), the event loop that
serves every tenant stays free meanwhile, and no tenant's input changes another's answer."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from conftest import Api, make_settings
from mcp_helpers import modern_headers, modern_message

import simulator.fixtures
from gateway.server import build_app
from gateway.state import GATEWAY
from settings_api.config import ConfigError
from simulator import Simulator, parse_fixture

# The store is not what these tests are about: one backend is enough.
pytestmark = [pytest.mark.slow, pytest.mark.backends("sqlite")]

ROOT = Path(__file__).resolve().parent.parent
ROWS = [{"id": i, "name": f"row {i}"} for i in range(3000)]  # objects: jsonschema cannot sort
UNIQUE_ROWS = {
    "type": "object",
    "properties": {"rows": {"type": "array", "uniqueItems": True, "items": {"type": "object"}}},
}
BULK_TOOL = {"name": "import_rows", "inputSchema": UNIQUE_ROWS, "outputSchema": UNIQUE_ROWS}
# 1,000 strings of 10,000 characters: a 20 MB answer once written twice (structured + text).
HUGE_OUTPUT = {
    "type": "object",
    "required": ["items"],
    "properties": {
        "items": {
            "type": "array",
            "minItems": 1000,
            "items": {"type": "string", "minLength": 10000},
        }
    },
}
EVIL = "^(a|a)*$"


@pytest.fixture
async def key(api: Any) -> str:
    return await api.enabled_key([BULK_TOOL])


async def call_tool(
    client: TestClient,
    key: str,
    arguments: dict[str, Any],
    tool: str = "import_rows",
    tenant: str = "acme",
) -> Any:
    message = modern_message("tools/call", {"name": tool, "arguments": arguments})
    async with client.post(
        f"/v1/tenants/{tenant}/integrations/crm/mcp:test",
        json=message,
        headers=modern_headers(message, key),
    ) as resp:
        assert resp.status == 200
        return (await resp.json())["result"]


def text_of(outcome: Any) -> str:
    return outcome.result["content"][0]["text"]


def problems_of(outcome: Any) -> list[tuple[str, str]]:
    """The (field, message) pairs an invalid-arguments answer lists ([] for any other)."""
    if outcome.source != "invalid-arguments":
        return []
    listed = text_of(outcome).split(": ", 1)[1]
    return [(field, message) for field, message in (p.split(": ", 1) for p in listed.split("; "))]


# ---- quadratic validation -------------------------------------------------------------------


async def test_thousands_of_unique_objects_are_checked_quickly_while_healthz_answers(
    client: TestClient, key: str
) -> None:
    started = time.monotonic()
    call = asyncio.create_task(call_tool(client, key, {"rows": ROWS}))
    await asyncio.sleep(0.02)
    async with client.get("/healthz") as resp:
        assert resp.status == 200
    healthz_s = time.monotonic() - started
    result = await call
    call_s = time.monotonic() - started
    assert result.get("isError") is not True, result
    # Generous bounds (2 shared cores): pairwise comparison took 11 s here.
    assert call_s < 2.0 and healthz_s < 1.0, (call_s, healthz_s)
    duplicated = await call_tool(client, key, {"rows": [*ROWS, {"name": "row 7", "id": 7.0}]})
    assert duplicated["isError"] is True
    assert "rows: must not contain duplicate items" in duplicated["content"][0]["text"]


@pytest.mark.parametrize(
    ("items", "unique"),
    [
        ([1, 1.0], False),
        ([1, True], True),
        ([0, False], True),
        (["1", 1], True),
        ([{"a": 1, "b": [1, 2]}, {"b": [1, 2.0], "a": 1.0}], False),
        ([[1, 2], [2, 1]], True),
        ([{"a": None}, {"a": False}], True),
        ([None, None], False),
        ([{}, []], True),
    ],
)
def test_unique_items_and_enum_follow_json_equality(items: list[Any], unique: bool) -> None:
    sim = Simulator()
    tool = {
        "name": "t",
        "inputSchema": {
            "type": "object",
            "properties": {
                "xs": {"type": "array", "uniqueItems": True},
                "first": {"enum": [items[0]]},
            },
        },
    }
    outcome = sim.simulate(tool, {"xs": items, "first": items[1]}, tenant="t", integration="i")
    problems = problems_of(outcome)
    assert (
        ("xs", "must not contain duplicate items") not in problems
        if unique
        else ("xs", "must not contain duplicate items") in problems
    )
    # `enum` equality is the same as uniqueItems': equal items match each other's enum.
    assert any(field == "first" for field, _ in problems) is unique


def test_a_large_enum_over_many_items_is_checked_in_linear_time() -> None:
    allowed = [{"code": f"C{i}", "rank": i} for i in range(5000)]
    tool = {
        "name": "t",
        "inputSchema": {
            "type": "object",
            "properties": {"picks": {"type": "array", "items": {"enum": allowed}}},
        },
    }
    picks = [{"rank": i, "code": f"C{i}"} for i in range(2000, 5000)]
    started = time.monotonic()
    problems = problems_of(
        Simulator().simulate(
            tool, {"picks": [*picks, {"code": "nope"}]}, tenant="t", integration="i"
        )
    )
    assert problems == [
        (
            "picks[3000]",
            'must be one of {"code":"C0","rank":0}, '
            '{"code":"C1","rank":1}, {"code":"C2","rank":2}, '
            '{"code":"C3","rank":3}, {"code":"C4","rank":4}, '
            '{"code":"C5","rank":5}, {"code":"C6","rank":6}, '
            '{"code":"C7","rank":7}, {"code":"C8","rank":8}, '
            '{"code":"C9","rank":9}, …',
        )
    ]
    assert time.monotonic() - started < 2.0  # comparing with each allowed value: 10 million


def test_error_messages_that_copy_a_large_argument_are_counted() -> None:
    # jsonschema writes the value into each branch's message: 1,000 branches against a 200 KB
    # argument built 200 MB of messages (3 s) before the answer was a plain "must be a string".
    branches = [{"type": "string", "title": str(i)} for i in range(1000)]
    tool = {"name": "t", "inputSchema": {"type": "object", "anyOf": branches}}
    rows = {"rows": [{"id": i, "name": "x" * 20} for i in range(5000)]}
    answers = set()
    for tenant in ("a", "b"):
        started = time.monotonic()
        outcome = Simulator().simulate(tool, rows, tenant=tenant, integration="i")
        # Generous: the step budget's answer is what the test pins; compiling included.
        assert time.monotonic() - started < 2.5
        answers.add(text_of(outcome))
    (answer,) = answers
    assert "takes more than 100000 validation steps" in answer


_EXPONENTIAL = r"""
import json, sys
from simulator import Simulator, parse_fixture
# Each level validates the next one twice: 2^30 evaluations without a step budget.
node = {"type": "object", "properties": {"c": {"allOf": [{"$ref": "#/$defs/n"},
                                                         {"$ref": "#/$defs/n"}]}}}
schema = {"$defs": {"n": node}, "$ref": "#/$defs/n"}
value = {}
for _ in range(30):
    value = {"c": value}
sim = Simulator()
out = []
for tenant in ("a", "b"):
    outcome = sim.simulate({"name": "deep", "inputSchema": schema}, value, tenant=tenant,
                           integration="i")
    out.append([outcome.source, outcome.result["content"][0]["text"]])
print(json.dumps(out))
"""


def test_a_schema_that_costs_exponential_work_is_refused_by_a_counted_budget() -> None:
    # In a child process: without the budget this would run for hours.
    done = subprocess.run(
        [sys.executable, "-c", _EXPONENTIAL],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    first, second = json.loads(done.stdout)
    assert first == second  # counted, not timed: the same verdict for everyone
    assert first[0] == "schema-problem"
    assert "takes more than 100000 validation steps" in first[1]


# ---- fixtures: checked once, when written ----------------------------------------------------


async def test_a_fixture_is_checked_when_written_and_not_again_on_cache_reloads(
    api: Any, client: TestClient, key: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    checks: list[Any] = []
    real = simulator.fixtures.argument_problems

    def counting(validator: Any, value: Any) -> Any:
        checks.append(value)
        return real(validator, value)

    monkeypatch.setattr(simulator.fixtures, "argument_problems", counting)
    fixture = {
        "rules": [
            {
                "match": {},
                "result": {
                    "content": [{"type": "text", "text": "imported"}],
                    "structuredContent": {"rows": ROWS},
                },
            }
        ]
    }
    started = time.monotonic()
    await api.call("PUT", "/crm/mcp/simulator/fixtures/import_rows", 201, json=fixture)
    assert time.monotonic() - started < 2.0  # pairwise comparison: 11 s
    assert len(checks) == 1
    resolver = client.app[GATEWAY].resolver
    for _ in range(2):
        resolver.flush()  # the next call loads the integration (and its fixtures) again
        result = await call_tool(client, key, {})
        assert result["content"] == [{"type": "text", "text": "imported"}]
    assert len(checks) == 1, "a cache reload checked the stored fixture again"


async def test_a_fixture_that_costs_too_much_to_check_is_a_clear_422(api: Any, key: str) -> None:
    many = {
        "rules": [
            {
                "match": {"n": i},
                "result": {
                    "content": [{"type": "text", "text": "x"}],
                    "structuredContent": {"rows": [{"id": j} for j in range(2000)]},
                },
            }
            for i in range(30)
        ]
    }
    started = time.monotonic()
    _, body = await api.call("PUT", "/crm/mcp/simulator/fixtures/import_rows", 422, json=many)
    assert time.monotonic() - started < 5.0
    fields = {error["field"]: error["message"] for error in body["errors"]}
    message = next(iter(fields.values()))
    assert "more than 100000 validation steps" in message, body


# ---- output amplification, and answers that depend on history --------------------------------


def test_an_answer_above_the_output_budget_is_the_same_tool_error_for_every_call() -> None:
    sim = Simulator()
    answers = []
    for tenant, integration in (("acme", "crm"), ("acme", "erp"), ("umbrella", "crm")):
        tool = {"name": "dump", "inputSchema": {"type": "object"}, "outputSchema": HUGE_OUTPUT}
        for _ in range(2):
            started = time.monotonic()
            outcome = sim.simulate(tool, {"q": "x"}, tenant=tenant, integration=integration)
            assert time.monotonic() - started < 2.0  # loaded CI machines; the answer is pinned
            assert outcome.result["isError"] is True
            answers.append(text_of(outcome))
    assert len(set(answers)) == 1
    assert "the simulator's output budget of 1048576 bytes" in answers[0]


def test_generated_answers_never_exceed_the_output_budget() -> None:
    schema = {
        "type": "object",
        "required": ["notes"],
        "properties": {
            "notes": {"type": "array", "minItems": 3, "items": {"type": "string", "minLength": 300}}
        },
    }
    sim = Simulator(max_result_bytes=2048)
    sources = set()
    for n in range(30):
        outcome = sim.simulate(
            {"name": "n", "outputSchema": schema}, {"n": n}, tenant="t", integration="i"
        )
        size = len(json.dumps(outcome.result, ensure_ascii=False, separators=(",", ":")).encode())
        assert size <= 2048
        sources.add(outcome.source)
        if outcome.source == "schema-problem":
            assert "output budget of 2048 bytes" in text_of(outcome)
    assert sources == {"generated", "schema-problem"}  # 3 to 5 items: some fit, some do not


async def test_the_output_budget_is_configured_by_environment(
    tmp_path: Path, aiohttp_client: Any, database_url: str, auth: Any
) -> None:
    small = make_settings(tmp_path, database_url, MCPGW_SIMULATOR_MAX_RESULT_BYTES="4096")
    client = await aiohttp_client(build_app(small))
    setup = Api(client, auth("acme"))
    tool = {
        "name": "dump",
        "inputSchema": {"type": "object"},
        "outputSchema": {
            "type": "object",
            "required": ["blob"],
            "properties": {"blob": {"type": "string", "minLength": 3000}},
        },
    }
    result = await call_tool(client, await setup.enabled_key([tool]), {}, tool="dump")
    assert result["isError"] is True
    assert "output budget of 4096 bytes" in result["content"][0]["text"]


@pytest.mark.parametrize("value", ["lots", "1.5", "100", "-1"])
def test_a_bad_output_budget_is_reported(tmp_path: Path, database_url: str, value: str) -> None:
    with pytest.raises(ConfigError, match="MCPGW_SIMULATOR_MAX_RESULT_BYTES"):
        make_settings(tmp_path, database_url, MCPGW_SIMULATOR_MAX_RESULT_BYTES=value)


def test_whether_a_large_array_is_served_does_not_depend_on_the_seed() -> None:
    # minItems at the cap: the array's length is drawn at random, never above the cap.
    schema = {
        "type": "object",
        "required": ["ids"],
        "properties": {"ids": {"type": "array", "minItems": 1000, "items": {"type": "integer"}}},
    }
    sim = Simulator()
    for seed in range(12):
        outcome = sim.simulate(
            {"name": "ids", "outputSchema": schema}, {}, tenant="t", integration="i", seed=str(seed)
        )
        assert outcome.source == "generated", text_of(outcome)
        assert len(outcome.result["structuredContent"]["ids"]) == 1000


# ---- slow patterns: one tenant's input never changes another's result -------------------------


def test_one_tenants_catastrophic_pattern_input_does_not_change_another_tenants_result() -> None:
    sim = Simulator()  # one per process: shared by every tenant
    schema = {"type": "object", "properties": {"code": {"type": "string", "pattern": EVIL}}}
    hostile = sim.simulate(
        {"name": "a_tool", "inputSchema": schema},
        {"code": "a" * 40 + "b"},
        tenant="tenant-a",
        integration="crm",
    )
    assert hostile.source == "schema-problem"
    assert "takes longer than 50 ms to match" in text_of(hostile)
    victim = sim.simulate(
        {"name": "b_tool", "inputSchema": schema},
        {"code": "aaaa"},
        tenant="tenant-b",
        integration="crm",
    )
    assert victim.source == "generated", text_of(victim)
    refused = sim.simulate(
        {"name": "b_tool", "inputSchema": schema},
        {"code": "aaab"},
        tenant="tenant-b",
        integration="crm",
    )
    assert refused.source == "invalid-arguments"
    assert "code: must match the pattern ^(a|a)*$" in text_of(refused)


def test_a_draft_04_schema_with_a_large_enum_of_objects_is_compiled_quickly() -> None:
    # Draft-04's meta-schema asks `enum` values to be unique: checked pairwise, 3,000 objects
    # took 7 s before the tool could be answered at all.
    allowed = [{"code": f"C{i}"} for i in range(3000)]
    tool: dict[str, Any] = {
        "name": "t",
        "inputSchema": {
            "$schema": "http://json-schema.org/draft-04/schema#",
            "type": "object",
            "properties": {"pick": {"enum": allowed}},
        },
    }
    started = time.monotonic()
    outcome = Simulator().simulate(tool, {"pick": {"code": "C2999"}}, tenant="t", integration="i")
    assert time.monotonic() - started < 3.5  # half the pairwise check's 7 s, for loaded machines
    assert outcome.source == "generated"
    broken = {**tool, "inputSchema": {**tool["inputSchema"], "required": "pick"}}
    refused = Simulator().simulate(broken, {}, tenant="t", integration="i")
    assert "is not a valid JSON Schema ('type' rule broken at /required)" in text_of(refused)


def test_whether_a_fixture_fits_the_budget_does_not_depend_on_what_was_compiled_before() -> None:
    # Checking this draft-04 schema itself costs 20,000 steps, once per process (cached), and
    # checking the fixture 90,000: counting the first would refuse the fixture only the first
    # time it is checked.
    schema = {
        "$schema": "http://json-schema.org/draft-04/schema#",
        "title": f"compiled fresh by {__name__}",
        "type": "object",
        "properties": {
            "kind": {"enum": [{"k": i} for i in range(20000)]},
            "rows": {"type": "array", "uniqueItems": True, "items": {"type": "object"}},
        },
    }
    tool = {"name": "t", "outputSchema": schema}
    structured = {"rows": [{"i": i} for i in range(45000)]}
    body = {"rules": [{"result": {"content": [], "structuredContent": structured}}]}
    first = parse_fixture(body, tool)
    second = parse_fixture(body, tool)
    assert first[1] == second[1] == []


def test_a_pattern_timeout_is_not_remembered_for_the_next_identical_call(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A timeout is the clock's verdict (a busy replica may give it to an ordinary pattern):
    # the same call asked again gets a fresh match, not the remembered refusal.
    import simulator.patterns

    sim = Simulator()
    tool = {
        "name": "t",
        "inputSchema": {
            "type": "object",
            "properties": {"code": {"type": "string", "pattern": "^[a-z]+$"}},
        },
    }
    monkeypatch.setattr(simulator.patterns, "MATCH_TIMEOUT_S", 0.0)  # every match times out
    busy = sim.simulate(tool, {"code": "abc"}, tenant="t", integration="i")
    assert busy.source == "schema-problem"
    monkeypatch.undo()
    calm = sim.simulate(tool, {"code": "abc"}, tenant="t", integration="i")
    assert calm.source == "generated", text_of(calm)


# Each level validates the next one twice: 2^depth evaluations, refused at the step budget.
_NODE = {
    "type": "object",
    "properties": {"c": {"allOf": [{"$ref": "#/$defs/n"}, {"$ref": "#/$defs/n"}]}},
}
DEEP_TOOL = {"name": "deep", "inputSchema": {"$defs": {"n": _NODE}, "$ref": "#/$defs/n"}}


def nested(depth: int, leaf: dict[str, Any]) -> dict[str, Any]:
    value = leaf
    for _ in range(depth):
        value = {"c": value}
    return value


async def test_one_tenants_expensive_calls_do_not_hold_every_simulator_thread(
    client: TestClient, auth: Any
) -> None:
    keys = {}
    for tenant, tool in (("acme", DEEP_TOOL), ("umbrella", BULK_TOOL)):
        keys[tenant] = await Api(client, auth(tenant), tenant).enabled_key([tool])
    hostile = [
        asyncio.create_task(
            call_tool(client, keys["acme"], nested(30, {"n": n}), tool="deep", tenant="acme")
        )
        for n in range(3)  # each spends the whole step budget
    ]
    await asyncio.sleep(0.05)
    started = time.monotonic()
    quiet = await call_tool(client, keys["umbrella"], {"rows": ROWS[:3]}, tenant="umbrella")
    quiet_s = time.monotonic() - started
    answers = await asyncio.gather(*hostile)
    hostile_s = time.monotonic() - started
    assert quiet.get("isError") is not True
    assert all("validation steps" in a["content"][0]["text"] for a in answers)
    # Behind the three, the quiet call would wait for all of them (over 1 s here).
    assert quiet_s < 0.6 < hostile_s, (quiet_s, hostile_s)
