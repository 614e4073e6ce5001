"""The testUrl simulator: argument validation, schema-driven results, determinism, fixtures."""

from __future__ import annotations

import ipaddress
import json
import os
import re
import subprocess
import sys
import uuid
from datetime import date, datetime
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator
from processes import loaded_after

from mcp_core.json_codec import may_hold_long_integer
from simulator import (
    MAX_LATENCY_MS,
    MAX_RULES,
    Fixture,
    Simulator,
    canonical_json,
    derive_seed,
    match_rule,
    parse_fixture,
)
from simulator import words as W
from simulator.formats import CHECKS, is_date_time
from simulator.regex import generate as regex_generate
from simulator.validation import compile_schema

ROOT = Path(__file__).resolve().parent.parent
SEARCH_INPUT = {
    "type": "object",
    "required": ["query"],
    "additionalProperties": False,
    "properties": {
        "query": {"type": "string", "minLength": 1},
        "limit": {"type": "integer", "minimum": 1, "maximum": 100},
        "filters": {
            "type": "object",
            "properties": {
                "tags": {"type": "array", "items": {"type": "string", "maxLength": 5}},
                "email": {"type": "string", "format": "email"},
            },
        },
    },
}


def tool(output: Any = None, name: str = "search", inputs: Any = None) -> dict[str, Any]:
    out: dict[str, Any] = {"name": name, "inputSchema": inputs or {"type": "object"}}
    if output is not None:
        out["outputSchema"] = output
    return out


def call(
    t: dict[str, Any], arguments: Any = None, simulator: Simulator | None = None, **kwargs: Any
) -> Any:
    params = {"tenant": "acme", "integration": "crm", "fixtures_version": 0, "seed": None}
    params.update(kwargs)
    return (simulator or Simulator()).simulate(
        t, arguments if arguments is not None else {}, **params
    )


def structured(t: dict[str, Any], arguments: Any = None, **kwargs: Any) -> Any:
    outcome = call(t, arguments, **kwargs)
    assert outcome.source == "generated", outcome.result
    result = outcome.result
    assert result["isError"] is False
    assert result["content"][0]["type"] == "text"
    assert json.loads(result["content"][0]["text"]) == result["structuredContent"]
    return result["structuredContent"]


def wrap(schema: dict[str, Any]) -> dict[str, Any]:
    """An object output schema with the schema under test as required property `v`."""
    return {"type": "object", "required": ["v"], "properties": {"v": schema}}


def assert_valid(schema: dict[str, Any], value: Any) -> None:
    # Stock jsonschema (what MCP clients use) and the simulator's own stricter formats.
    Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER).validate(value)
    compiled = compile_schema(schema, output=True)
    assert compiled.validator.is_valid(value), value


def samples(schema: dict[str, Any], count: int = 30) -> list[Any]:
    t = tool(wrap(schema))
    simulator = Simulator()
    values = []
    for index in range(count):
        value = structured(t, {"i": index}, simulator=simulator)
        assert_valid(wrap(schema), value)
        values.append(value["v"])
    return values


# ---- argument validation ---------------------------------------------------------------------


def test_invalid_arguments_name_every_offending_field() -> None:
    outcome = call(
        tool(inputs=SEARCH_INPUT),
        {"limit": 1000, "extra": True, "filters": {"tags": ["ok", "toolong"], "email": "nope"}},
    )
    assert outcome.source == "invalid-arguments"
    assert outcome.result["isError"] is True
    assert outcome.result["content"][0]["text"] == (
        'Invalid arguments for tool "search": extra: is not an allowed property; '
        "filters.email: must be a valid email; filters.tags[1]: must be at most 5 characters "
        "long; limit: must be at most 100; query: is required"
    )


def test_the_brief_example_message() -> None:
    outcome = call(tool(inputs=SEARCH_INPUT), {"limit": 101})
    assert outcome.result["content"][0]["text"] == (
        'Invalid arguments for tool "search": limit: must be at most 100; query: is required'
    )


def test_argument_errors_never_echo_the_value() -> None:
    secret = "sk-live-DO-NOT-ECHO-123456"
    schema = {
        "type": "object",
        "properties": {
            "token": {"type": "string", "pattern": "^[a-z]+$", "maxLength": 4},
            "n": {"type": "integer"},
        },
    }
    text = call(tool(inputs=schema), {"token": secret, "n": secret}).result["content"][0]["text"]
    assert secret not in text
    assert "token: must be at most 4 characters long" in text
    assert "token: must match the pattern ^[a-z]+$" in text
    assert "n: must be an integer" in text


@pytest.mark.parametrize(
    ("schema", "value", "message"),
    [
        ({"type": ["string", "null"]}, 3, "must be a string or null"),
        ({"enum": ["a", "b"]}, "c", 'must be one of "a", "b"'),
        ({"const": 5}, 4, "must be 5"),
        ({"minimum": 1}, 0, "must be at least 1"),
        ({"exclusiveMinimum": 0}, 0, "must be greater than 0"),
        ({"exclusiveMaximum": 10}, 10, "must be less than 10"),
        ({"multipleOf": 5}, 7, "must be a multiple of 5"),
        ({"minLength": 2}, "a", "must be at least 2 characters long"),
        ({"type": "array", "minItems": 2}, [1], "must have at least 2 items"),
        ({"type": "array", "maxItems": 1}, [1, 2], "must have at most 1 item"),
        ({"type": "array", "uniqueItems": True}, [1, 1], "must not contain duplicate items"),
        ({"format": "date-time"}, "yesterday", "must be a valid date-time"),
        ({"format": "uuid"}, "123", "must be a valid uuid"),
        (
            {"anyOf": [{"type": "string"}, {"type": "integer"}]},
            1.5,
            "must be a string or an integer",
        ),
        ({"oneOf": [{"type": "integer"}, {"type": "number"}]}, 1, "matches more than one"),
        ({"not": {"type": "string"}}, "x", "must not match the disallowed schema"),
    ],
)
def test_argument_rule_messages(schema: dict[str, Any], value: Any, message: str) -> None:
    t = tool(inputs={"type": "object", "properties": {"x": schema}})
    text = call(t, {"x": value}).result["content"][0]["text"]
    assert f"x: {message}" in text


def test_valid_arguments_pass_and_decimal_multiples_are_multiples() -> None:
    schema = {
        "type": "object",
        "properties": {
            "price": {"type": "number", "multipleOf": 0.01},
            "when": {"type": "string", "format": "date"},
        },
    }
    assert call(tool(inputs=schema), {"price": 19.99, "when": "2025-02-28"}).source == "generated"
    assert (
        call(tool(inputs=schema), {"when": "2025-02-30"}).result["content"][0]["text"]
        == 'Invalid arguments for tool "search": when: must be a valid date'
    )


def test_non_object_arguments_are_reported_at_the_root() -> None:
    text = call(tool(inputs=SEARCH_INPUT), ["query"]).result["content"][0]["text"]
    assert text == 'Invalid arguments for tool "search": (arguments): must be an object'


def test_validators_are_cached_by_canonical_json() -> None:
    a = {"type": "object", "properties": {"q": {"type": "string"}}, "required": ["q"]}
    b = {"required": ["q"], "properties": {"q": {"type": "string"}}, "type": "object"}
    assert compile_schema(a) is compile_schema(b)
    assert compile_schema(a) is not compile_schema(a, output=True)


def test_broken_input_schema_is_a_clear_error() -> None:
    outcome = call(tool(inputs={"type": "object", "properties": {"x": {"type": "strng"}}}), {})
    assert outcome.source == "schema-problem"
    assert outcome.result["isError"] is True
    assert "inputSchema is not a valid JSON Schema" in outcome.result["content"][0]["text"]


def test_remote_refs_are_never_fetched(monkeypatch: pytest.MonkeyPatch) -> None:
    import urllib.request

    def no_network(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the simulator must not touch the network")

    monkeypatch.setattr(urllib.request, "urlopen", no_network)
    remote = {
        "type": "object",
        "required": ["x"],
        "properties": {"x": {"$ref": "https://example.com/s.json"}},
    }
    outcome = call(tool(inputs=remote), {"x": 1})
    assert outcome.source == "schema-problem"
    outcome = call(tool(output=remote), {})
    assert outcome.result["isError"] is True


# ---- generation: one test per keyword ----------------------------------------------------------


def test_type_string_integer_number_boolean_null() -> None:
    assert all(isinstance(v, str) for v in samples({"type": "string"}))
    assert all(isinstance(v, int) and not isinstance(v, bool) for v in samples({"type": "integer"}))
    assert all(
        isinstance(v, int | float) and not isinstance(v, bool) for v in samples({"type": "number"})
    )
    assert {v for v in samples({"type": "boolean"}, 20)} == {True, False}
    assert samples({"type": "null"}, 3) == [None, None, None]


def test_type_unions_produce_each_member() -> None:
    values = samples({"type": ["string", "integer", "null"]}, 80)
    kinds = {type(v).__name__ for v in values}
    assert kinds == {"str", "int", "NoneType"}


def test_properties_required_and_additional_properties_false() -> None:
    schema = {
        "type": "object",
        "additionalProperties": False,
        "required": ["a"],
        "properties": {"a": {"type": "integer"}, "b": {"type": "string"}},
    }
    values = samples(schema, 40)
    assert all("a" in v and set(v) <= {"a", "b"} for v in values)
    assert any("b" in v for v in values) and any("b" not in v for v in values)


def test_additional_properties_schema_and_min_properties() -> None:
    schema = {
        "type": "object",
        "additionalProperties": {"type": "integer", "minimum": 7},
        "minProperties": 3,
    }
    for value in samples(schema):
        assert len(value) >= 3 and all(isinstance(x, int) and x >= 7 for x in value.values())


def test_pattern_properties_and_property_names() -> None:
    schema = {
        "type": "object",
        "minProperties": 2,
        "additionalProperties": False,
        "patternProperties": {"^x_[a-z]{2}$": {"type": "boolean"}},
    }
    for value in samples(schema):
        assert len(value) >= 2 and all(re.fullmatch("x_[a-z]{2}", k) for k in value)
    named = {
        "type": "object",
        "minProperties": 1,
        "propertyNames": {"pattern": "^[A-Z]{3}$"},
        "additionalProperties": {"type": "null"},
    }
    for value in samples(named):
        assert all(re.fullmatch("[A-Z]{3}", k) for k in value)


def test_items_min_items_max_items() -> None:
    schema = {"type": "array", "items": {"type": "integer"}, "minItems": 2, "maxItems": 4}
    values = samples(schema)
    assert all(2 <= len(v) <= 4 and all(isinstance(x, int) for x in v) for v in values)
    assert len({len(v) for v in values}) > 1


def test_prefix_items() -> None:
    schema = {
        "type": "array",
        "prefixItems": [{"type": "string"}, {"type": "integer"}],
        "items": False,
        "minItems": 2,
    }
    for value in samples(schema):
        assert len(value) == 2 and isinstance(value[0], str) and isinstance(value[1], int)


def test_unique_items() -> None:
    schema = {"type": "array", "items": {"enum": [1, 2, 3, 4]}, "minItems": 4, "uniqueItems": True}
    for value in samples(schema):
        assert sorted(value) == [1, 2, 3, 4]


def test_enum_and_const() -> None:
    assert set(samples({"enum": ["red", "green", 3, None]}, 60)) == {"red", "green", 3, None}
    assert samples({"const": {"k": [1, 2]}}, 3) == [{"k": [1, 2]}] * 3


def test_minimum_maximum() -> None:
    assert all(-3 <= v <= 3 for v in samples({"type": "integer", "minimum": -3, "maximum": 3}))
    assert all(1e6 <= v for v in samples({"type": "number", "minimum": 1e6}))


def test_exclusive_minimum_and_maximum() -> None:
    values = samples({"type": "number", "exclusiveMinimum": 1, "exclusiveMaximum": 1.001})
    assert all(1 < v < 1.001 for v in values)
    assert samples({"type": "integer", "exclusiveMinimum": 4, "exclusiveMaximum": 6}, 5) == [5] * 5


def test_multiple_of() -> None:
    assert all(
        v % 6 == 0 and 7 <= v <= 40
        for v in samples({"type": "integer", "minimum": 7, "maximum": 40, "multipleOf": 6})
    )
    for value in samples({"type": "number", "minimum": 0, "maximum": 100, "multipleOf": 0.01}):
        assert round(value * 100) == pytest.approx(value * 100)
    assert all(v % 3 == 0 for v in samples({"type": "integer", "multipleOf": 1.5}))


def test_min_length_max_length() -> None:
    assert all(len(v) == 50 for v in samples({"type": "string", "minLength": 50, "maxLength": 50}))
    assert all(
        1 <= len(v) <= 3 for v in samples({"type": "string", "minLength": 1, "maxLength": 3})
    )


@pytest.mark.parametrize(
    "pattern",
    [
        r"^[a-z]{3,10}$",
        r"^doc_[0-9a-f]{8}$",
        r"^\d{3}-\d{4}$",
        r"^(?:foo|bar)+baz$",
        r"^[^\s@]+@[^\s@]+\.[a-z]{2,}$",
        r"\bcat\b",
        r"^(?=.*\d)[a-z\d]{8}$",
        r"^(a|b)\1$",
        r"^[A-Za-z0-9_.\-]{1,128}$",
        r"^https?://[^\s\x00]+$",
        r"(?i)^[A-F]{4}$",
        "^[\u03b1-\u03c9]{2}$",  # Greek letters only: no ASCII member to prefer
    ],
)
def test_pattern_values_match(pattern: str) -> None:
    for value in samples({"type": "string", "pattern": pattern}, 20):
        assert re.search(pattern, value)


def test_pattern_with_length_bounds() -> None:
    for value in samples({"type": "string", "pattern": "[a-z]+", "minLength": 20, "maxLength": 25}):
        assert 20 <= len(value) <= 25 and re.search("[a-z]+", value)
    # An unanchored pattern is padded to reach minLength.
    for value in samples({"type": "string", "pattern": "abc", "minLength": 12}):
        assert "abc" in value and len(value) >= 12


@pytest.mark.parametrize("fmt", sorted(CHECKS))
def test_format_values(fmt: str) -> None:
    for value in samples({"type": "string", "format": fmt}, 20):
        assert CHECKS[fmt](value), value
        if fmt == "uuid":
            assert uuid.UUID(value).version == 4
        elif fmt == "ipv4":
            ipaddress.IPv4Address(value)
        elif fmt == "ipv6":
            ipaddress.IPv6Address(value)
        elif fmt == "date":
            date.fromisoformat(value)
        elif fmt == "date-time":
            datetime.fromisoformat(value.replace("Z", "+00:00"))


def test_one_of_matches_exactly_one() -> None:
    schema = {"oneOf": [{"type": "integer"}, {"type": "number", "minimum": 5}]}
    validators = [compile_schema(b).validator for b in schema["oneOf"]]
    for value in samples(schema, 40):
        assert sum(v.is_valid(value) for v in validators) == 1


def test_any_of_and_all_of() -> None:
    values = samples({"anyOf": [{"type": "string", "maxLength": 3}, {"type": "boolean"}]}, 40)
    assert any(isinstance(v, str) for v in values) and any(isinstance(v, bool) for v in values)
    schema = {
        "allOf": [
            {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]},
            {"properties": {"b": {"const": "x"}}, "required": ["b"]},
            {"properties": {"a": {"minimum": 10, "maximum": 12}}},
        ]
    }
    for value in samples(schema):
        assert value["b"] == "x" and 10 <= value["a"] <= 12


def test_refs_and_defs() -> None:
    output = {
        "type": "object",
        "required": ["hit"],
        "properties": {"hit": {"$ref": "#/$defs/h"}},
        "$defs": {
            "h": {
                "type": "object",
                "required": ["id"],
                "properties": {"id": {"type": "string", "pattern": "^h[0-9]{3}$"}},
            }
        },
    }
    for index in range(10):
        value = structured(tool(output), {"i": index})
        assert re.fullmatch("h[0-9]{3}", value["hit"]["id"])


def test_recursive_ref_is_bounded() -> None:
    output = {
        "$ref": "#/$defs/node",
        "$defs": {
            "node": {
                "type": "object",
                "required": ["name", "children"],
                "properties": {
                    "name": {"type": "string"},
                    "children": {"type": "array", "items": {"$ref": "#/$defs/node"}},
                },
            }
        },
    }

    def depth(node: dict[str, Any]) -> int:
        return 1 + max((depth(c) for c in node["children"]), default=0)

    for index in range(20):
        value = structured(tool(output), {"i": index})
        assert_valid(output, value)
        assert depth(value) <= 6


def test_draft_07_schemas_are_understood() -> None:
    output = {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "type": "object",
        "required": ["pair", "ref"],
        "properties": {
            "pair": {
                "type": "array",
                "items": [{"type": "string"}, {"type": "integer"}],
                "additionalItems": False,
                "minItems": 2,
            },
            "ref": {"$ref": "#/definitions/d"},
        },
        "definitions": {"d": {"type": "string", "format": "date"}},
    }
    for index in range(10):
        value = structured(tool(output), {"i": index})
        assert isinstance(value["pair"][0], str) and isinstance(value["pair"][1], int)
        assert CHECKS["date"](value["ref"])


def test_if_then_else_and_not() -> None:
    schema = {
        "type": "object",
        "required": ["kind", "n"],
        "properties": {"kind": {"enum": ["small", "big"]}, "n": {"type": "integer"}},
        "if": {"properties": {"kind": {"const": "small"}}},
        "then": {"properties": {"n": {"maximum": 9}}},
        "else": {"properties": {"n": {"minimum": 1000}}},
    }
    for value in samples(schema):
        assert (value["n"] <= 9) if value["kind"] == "small" else (value["n"] >= 1000)
    assert all(v != "x" for v in samples({"enum": ["x", "y"], "not": {"const": "x"}}, 10))


# ---- unsatisfiable schemas -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("schema", "where"),
    [
        (wrap({"type": "string", "minLength": 5, "maxLength": 3}), "/properties/v"),
        (wrap({"allOf": [{"type": "string"}, {"type": "integer"}]}), "/properties/v"),
        (wrap({"oneOf": [{"type": "integer"}, {"type": "integer"}]}), "/properties/v/oneOf"),
        (wrap({"type": "integer", "minimum": 3, "maximum": 2}), "/properties/v"),
        (
            wrap({"type": "array", "items": {"enum": [1, 2]}, "minItems": 3, "uniqueItems": True}),
            "/properties/v",
        ),
        (wrap({"type": "string", "pattern": "^[A-Z]{2}$", "minLength": 5}), "/properties/v"),
    ],
)
def test_unsatisfiable_output_schema_is_a_clear_error(schema: dict[str, Any], where: str) -> None:
    outcome = call(tool(schema))
    assert outcome.source == "schema-problem"
    assert outcome.result["isError"] is True and "structuredContent" not in outcome.result
    text = outcome.result["content"][0]["text"]
    assert text.startswith(
        'The simulator cannot answer tool "search": its outputSchema cannot be satisfied at '
    )
    assert where in text


def test_output_schema_that_is_not_an_object() -> None:
    outcome = call(tool({"type": "array"}))
    assert outcome.result["isError"] is True
    assert "does not describe an object" in outcome.result["content"][0]["text"]


# ---- plausible values ------------------------------------------------------------------------

_TEXT_FIELDS = (
    "id",
    "contactId",
    "email",
    "name",
    "firstName",
    "lastName",
    "createdAt",
    "updatedAt",
    "birthDate",
    "city",
    "country",
    "phone",
    "currency",
    "title",
    "description",
    "status",
    "website",
    "url",
    "company",
)
_PEOPLE_FIELDS = {
    **{key: {"type": "string"} for key in _TEXT_FIELDS},
    "price": {"type": "number"},
    "total": {"type": "number"},
    "count": {"type": "integer"},
    "quantity": {"type": "integer"},
}
PEOPLE = {"type": "object", "required": list(_PEOPLE_FIELDS), "properties": _PEOPLE_FIELDS}


def test_values_look_like_what_their_names_say() -> None:
    cities = {c[0] for c in W.CITIES}
    countries = {c[1] for c in W.CITIES}
    for index in range(25):
        v = structured(tool(PEOPLE), {"i": index})
        assert CHECKS["email"](v["email"]) and v["email"].endswith(W.DOMAINS)
        assert v["firstName"] in W.FIRST_NAMES and v["lastName"] in W.LAST_NAMES
        # One persona per object: the name, first/last name and e-mail agree.
        assert v["name"] == f"{v['firstName']} {v['lastName']}"
        assert v["firstName"].lower() in v["email"] or v["lastName"].lower() in v["email"]
        assert is_date_time(v["createdAt"]) and is_date_time(v["updatedAt"])
        assert CHECKS["date"](v["birthDate"])
        assert v["city"] in cities and v["country"] in countries
        assert re.fullmatch(r"\+1 555-01\d\d", v["phone"])
        assert 1 <= v["price"] <= 500 and round(v["price"], 2) == v["price"]
        assert v["currency"] in W.CURRENCIES
        assert v["title"] in W.TITLE_TOPICS and v["description"] in W.SENTENCES
        assert v["status"] in W.STATUSES
        assert 0 <= v["count"] <= 50 and 0 <= v["quantity"] <= 50
        assert v["website"].startswith("https://") and CHECKS["uri"](v["url"])
        assert CHECKS["uuid"](v["id"]) and v["contactId"].startswith("cont_")
        assert v["company"] in W.COMPANIES


def test_name_hints_yield_to_the_schema() -> None:
    # The name says e-mail / date-time / country, the schema says otherwise: the schema wins.
    schema = {
        "type": "object",
        "required": ["email", "createdAt", "country"],
        "properties": {
            "email": {"type": "string", "maxLength": 4},
            "createdAt": {"type": "integer", "minimum": 1_600_000_000_000},
            "country": {"type": "string", "pattern": "^[A-Z]{2}$"},
        },
    }
    codes = {c[2] for c in W.CITIES}
    for index in range(10):
        v = structured(tool(schema), {"i": index})
        assert len(v["email"]) <= 4 and v["createdAt"] >= 1_600_000_000_000
        assert v["country"] in codes


def test_text_result_without_output_schema_reads_like_the_tool() -> None:
    text = call(tool(name="search_contacts"), {"query": "acme", "limit": 3}).result
    assert set(text) == {"content", "isError"} and text["isError"] is False
    body = text["content"][0]["text"]
    assert "search_contacts" in body and 'query="acme"' in body and "limit=3" in body
    assert body.startswith(("Found", "No contacts"))
    created = call(tool(name="create_ticket"), {"title": "Printer on fire"}).result
    assert created["content"][0]["text"].startswith("Created ticket ")
    assert 'title="Printer on fire"' in created["content"][0]["text"]


# ---- determinism -----------------------------------------------------------------------------

CONTACT = {
    "type": "object",
    "required": ["id", "email", "name", "createdAt", "score", "tags"],
    "properties": {
        "id": {"type": "string", "format": "uuid"},
        "email": {"type": "string", "format": "email"},
        "name": {"type": "string"},
        "createdAt": {"type": "string", "format": "date-time"},
        "score": {"type": "number", "minimum": 0, "maximum": 1},
        "tags": {"type": "array", "items": {"type": "string"}, "uniqueItems": True},
        "nickname": {"type": ["string", "null"]},
    },
}

_DETERMINISM_SCRIPT = """
import json
from simulator import Simulator, parse_fixture
tools = json.loads(%r)
out = []
for name, t in tools.items():
    for args in ({"query": "acme"}, {"query": "acme", "limit": 5}, {"limit": 500}):
        for seed in (None, "run-2"):
            o = Simulator().simulate(t, args, tenant="acme", integration="crm",
                                     fixtures_version=3, seed=seed)
            out.append(json.dumps(o.result, ensure_ascii=False, separators=(",", ":")))
print("\\n".join(out))
"""


def _run_isolated(hash_seed: str, tools: dict[str, Any]) -> bytes:
    env = {**os.environ, "PYTHONHASHSEED": hash_seed, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-c", _DETERMINISM_SCRIPT % json.dumps(tools)],
        env=env,
        cwd=ROOT,
        capture_output=True,
        check=True,
        timeout=60,
    ).stdout


def test_results_are_byte_identical_across_processes_and_hash_seeds() -> None:
    tools = {
        "contact": tool(CONTACT, name="get_contact", inputs=SEARCH_INPUT),
        "text": tool(name="search_contacts", inputs=SEARCH_INPUT),
    }
    first, second = _run_isolated("1", tools), _run_isolated("2", tools)
    assert first == second and len(first.splitlines()) == 12
    here = []
    for t in tools.values():
        for args in ({"query": "acme"}, {"query": "acme", "limit": 5}, {"limit": 500}):
            for seed in (None, "run-2"):
                o = call(t, args, fixtures_version=3, seed=seed)
                here.append(json.dumps(o.result, ensure_ascii=False, separators=(",", ":")))
    assert first.decode().splitlines() == here


def test_same_call_same_bytes_and_answers_are_private_copies() -> None:
    simulator = Simulator()
    first = call(tool(CONTACT), {"q": 1}, simulator=simulator).result
    first["structuredContent"]["email"] = "changed"
    again = call(tool(CONTACT), {"q": 1}, simulator=simulator).result
    fresh = call(tool(CONTACT), {"q": 1}).result
    assert again == fresh and again["structuredContent"]["email"] != "changed"


def test_different_arguments_mostly_give_different_results() -> None:
    simulator = Simulator()
    results = {
        json.dumps(call(tool(CONTACT), {"query": f"q{i}"}, simulator=simulator).result)
        for i in range(50)
    }
    texts = {
        json.dumps(call(tool(name="list_orders"), {"page": i}, simulator=simulator).result)
        for i in range(50)
    }
    assert len(results) >= 48 and len(texts) >= 48


def test_seed_tenant_integration_and_fixture_version_change_the_result() -> None:
    base = json.dumps(call(tool(CONTACT), {"q": 1}).result)
    assert json.dumps(call(tool(CONTACT), {"q": 1}, seed=None).result) == base
    for change in (
        {"seed": "a"},
        {"tenant": "other"},
        {"integration": "erp"},
        {"fixtures_version": 1},
    ):
        assert json.dumps(call(tool(CONTACT), {"q": 1}, **change).result) != base
    assert json.dumps(call(tool(CONTACT), {"q": 1}, seed="a").result) == json.dumps(
        call(tool(CONTACT), {"q": 1}, seed="a").result
    )


def test_argument_spelling_does_not_matter() -> None:
    a = call(tool(CONTACT), {"limit": 5, "query": "x", "f": {"b": 1, "a": 2.0}}).result
    b = call(tool(CONTACT), {"query": "x", "f": {"a": 2, "b": 1.0}, "limit": 5.0}).result
    assert json.dumps(a) == json.dumps(b)
    t = tool(name="search_contacts")
    assert json.dumps(call(t, {"b": 1, "a": 2}).result) == json.dumps(
        call(t, {"a": 2, "b": 1}).result
    )


def test_seed_derivation_is_the_documented_sha256() -> None:
    import hashlib

    args = canonical_json({"b": [1, 2.0], "a": "é"})
    assert args == '{"a":"\\u00e9","b":[1,2]}'
    expected = hashlib.sha256(b"t\x00i\x00tool\x00" + args.encode() + b"\x007\x00").digest()
    assert derive_seed("t", "i", "tool", args, 7, None) == expected


def test_schema_key_order_changes_key_order_only() -> None:
    forward = {
        "type": "object",
        "required": ["a", "b", "c"],
        "properties": {
            "a": {"type": "string"},
            "b": {"type": "integer"},
            "c": {"type": "string", "format": "email"},
        },
    }
    backward = {
        "properties": dict(reversed(list(forward["properties"].items()))),
        "required": ["c", "b", "a"],
        "type": "object",
    }
    simulator = Simulator()
    one = call(tool(forward), {"x": 1}, simulator=simulator).result["structuredContent"]
    two = call(tool(backward), {"x": 1}, simulator=simulator).result["structuredContent"]
    assert one == two and list(one) == ["a", "b", "c"] and list(two) == ["c", "b", "a"]


def test_adding_a_property_keeps_the_others_values() -> None:
    grown = json.loads(json.dumps(CONTACT))
    grown["properties"]["extra"] = {"type": "string"}
    grown["required"].append("extra")
    old = structured(tool(CONTACT), {"q": 1})
    new = structured(tool(grown), {"q": 1})
    assert {k: new[k] for k in old} == old


# ---- fixtures ----------------------------------------------------------------------------------

PRICED = tool(
    {
        "type": "object",
        "required": ["price"],
        "properties": {"price": {"type": "number", "minimum": 0}},
    },
    name="quote",
    inputs={
        "type": "object",
        "properties": {
            "sku": {"type": "string"},
            "qty": {"type": "integer", "minimum": 1},
            "opts": {"type": "object"},
        },
    },
)


def ok_result(price: float = 1.5) -> dict[str, Any]:
    return {
        "content": [{"type": "text", "text": f"price {price}"}],
        "structuredContent": {"price": price},
    }


def parsed(body: Any, t: dict[str, Any] = PRICED) -> Fixture:
    fixture, problems = parse_fixture(body, t)
    assert problems == [] and fixture is not None
    return fixture


def test_fixture_defaults_are_filled_in() -> None:
    fixture = parsed({"rules": [{"result": ok_result()}]})
    rule = fixture.rules[0]
    assert dict(rule.match) == {} and rule.latency_ms == 0 and rule.error is None
    assert fixture.as_body() == {"rules": [{"match": {}, "result": ok_result(), "latencyMs": 0}]}


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ([], [("(body)", "must be an object")]),
        ({}, [("rules", "is required and must be an array")]),
        ({"rules": {}}, [("rules", "must be an array")]),
        ({"rules": [], "extra": 1}, [("extra", "is not a known field")]),
        ({"rules": [3]}, [("rules[0]", "must be an object")]),
        ({"rules": [{"match": {}}]}, [("rules[0]", "must have exactly one of result or error")]),
        (
            {"rules": [{"result": ok_result(), "error": {"code": 1, "message": "x"}}]},
            [("rules[0]", "must have exactly one of result or error")],
        ),
        (
            {"rules": [{"match": [], "result": ok_result()}]},
            [("rules[0].match", "must be an object")],
        ),
        (
            {"rules": [{"result": ok_result(), "latencyMs": -1}]},
            [("rules[0].latencyMs", f"must be between 0 and {MAX_LATENCY_MS}")],
        ),
        (
            {"rules": [{"result": ok_result(), "latencyMs": MAX_LATENCY_MS + 1}]},
            [("rules[0].latencyMs", f"must be between 0 and {MAX_LATENCY_MS}")],
        ),
        (
            {"rules": [{"result": ok_result(), "latencyMs": "5"}]},
            [("rules[0].latencyMs", "must be an integer")],
        ),
        (
            {"rules": [{"result": ok_result(), "latencyMs": True}]},
            [("rules[0].latencyMs", "must be an integer")],
        ),
        (
            {"rules": [{"result": ok_result(), "delay": 5}]},
            [("rules[0].delay", "is not a known field")],
        ),
        (
            {"rules": [{"result": {"structuredContent": {"price": 1}}}]},
            [("rules[0].result.content", "is required and must be an array of content blocks")],
        ),
        (
            {"rules": [{"result": {**ok_result(), "content": [{"text": "x"}, {"type": "text"}]}}]},
            [
                ("rules[0].result.content[0].type", "is required and must be a string"),
                (
                    "rules[0].result.content[1].text",
                    "is required for a text block and must be a string",
                ),
            ],
        ),
        (
            {"rules": [{"result": {**ok_result(), "isError": "no"}}]},
            [("rules[0].result.isError", "must be a boolean")],
        ),
        (
            {"rules": [{"result": {**ok_result(), "structured_content": {}}}]},
            [("rules[0].result.structured_content", "is not a CallToolResult field")],
        ),
        (
            {"rules": [{"error": {"code": "x", "message": ""}}]},
            [
                ("rules[0].error.code", "is required and must be an integer"),
                ("rules[0].error.message", "is required and must be a non-empty string"),
            ],
        ),
    ],
)
def test_fixture_parse_errors_name_the_field(body: Any, expected: list[tuple[str, str]]) -> None:
    fixture, problems = parse_fixture(body, PRICED)
    assert fixture is None
    assert [tuple(p) for p in problems] == expected


def test_fixture_structured_content_must_match_the_output_schema() -> None:
    rules = [
        {"result": ok_result()},
        {"result": ok_result()},
        {"result": {"content": [], "structuredContent": {"price": -3}}},
        {"result": {"content": [{"type": "text", "text": "no structure"}]}},
        {"result": {"content": [], "structuredContent": {}}},
        {"result": {"content": [{"type": "text", "text": "boom"}], "isError": True}},
    ]
    fixture, problems = parse_fixture({"rules": rules}, PRICED)
    assert fixture is None
    assert [tuple(p) for p in problems] == [
        ("rules[2].result.structuredContent.price", "must be at least 0"),
        (
            "rules[3].result.structuredContent",
            "is required: the tool declares an outputSchema (or set isError: true)",
        ),
        ("rules[4].result.structuredContent.price", "is required"),
    ]


def test_fixture_rule_count_is_bounded() -> None:
    body = {"rules": [{"result": ok_result()}] * (MAX_RULES + 1)}
    _, problems = parse_fixture(body, PRICED)
    assert ("rules", f"must have at most {MAX_RULES} rules") in [tuple(p) for p in problems]
    assert parse_fixture({"rules": [{"result": ok_result()}] * MAX_RULES}, PRICED)[1] == []


def test_match_is_a_subset_with_deep_equality_per_key() -> None:
    fixture = parsed(
        {
            "rules": [
                {"match": {"sku": "A", "opts": {"gift": True}}, "result": ok_result(1)},
                {"match": {"qty": 2}, "result": ok_result(2)},
                {"match": {}, "result": ok_result(3)},
            ]
        }
    )

    def price(arguments: dict[str, Any]) -> Any:
        rule = match_rule(fixture, arguments)
        assert rule is not None and rule.result is not None
        return rule.result["structuredContent"]["price"]

    assert price({"sku": "A", "opts": {"gift": True}, "qty": 9}) == 1
    # Nested objects compare whole: a superset of the listed object does not match.
    assert price({"sku": "A", "opts": {"gift": True, "wrap": 1}}) == 3
    assert price({"sku": "B", "qty": 2.0}) == 2  # 2 == 2.0
    assert price({"qty": True}) == 3  # true is not 1 or 2
    assert price({}) == 3  # the default


def test_first_matching_rule_wins_and_no_match_is_none() -> None:
    fixture = parsed(
        {
            "rules": [
                {"match": {"sku": "A"}, "result": ok_result(1)},
                {"match": {"sku": "A"}, "result": ok_result(2)},
            ]
        }
    )
    rule = match_rule(fixture, {"sku": "A"})
    assert rule is fixture.rules[0]
    assert match_rule(fixture, {"sku": "Z"}) is None
    assert match_rule(None, {"sku": "A"}) is None


def test_error_rule_with_latency() -> None:
    fixture = parsed(
        {
            "rules": [
                {
                    "match": {"sku": "X"},
                    "latencyMs": 250,
                    "error": {"code": -32001, "message": "rate limited", "data": {"retry": 2}},
                }
            ]
        }
    )
    outcome = call(PRICED, {"sku": "X"}, fixture=fixture)
    assert outcome.result is None and outcome.latency_ms == 250 and outcome.source == "fixture"
    assert (outcome.error.code, outcome.error.message, outcome.error.data) == (
        -32001,
        "rate limited",
        {"retry": 2},
    )


def test_fixture_results_win_for_valid_calls_and_are_copies() -> None:
    fixture = parsed(
        {"rules": [{"match": {"sku": "A"}, "result": ok_result(9.5), "latencyMs": 30}]}
    )
    outcome = call(PRICED, {"sku": "A", "qty": 2}, fixture=fixture)
    assert outcome.result == ok_result(9.5) and outcome.latency_ms == 30
    outcome.result["structuredContent"]["price"] = 0
    assert call(PRICED, {"sku": "A"}, fixture=fixture).result == ok_result(9.5)
    assert call(PRICED, {"sku": "B"}, fixture=fixture).source == "generated"


def test_partial_and_default_rules_cannot_hide_a_bad_call() -> None:
    fixture = parsed(
        {"rules": [{"match": {"sku": "A"}, "result": ok_result(1)}, {"result": ok_result(2)}]}
    )
    outcome = call(PRICED, {"sku": "A", "qty": 0}, fixture=fixture)
    assert outcome.source == "invalid-arguments"
    assert "qty: must be at least 1" in outcome.result["content"][0]["text"]
    assert call(PRICED, {"qty": 1}, fixture=fixture).result == ok_result(2)
    strict = tool(inputs={"type": "object", "required": ["sku"]})
    default_only = parsed({"rules": [{"result": {"content": []}}]}, strict)
    assert call(strict, {}, fixture=default_only).source == "invalid-arguments"


def test_a_rule_naming_every_argument_answers_even_an_invalid_call() -> None:
    fixture = parsed({"rules": [{"match": {"qty": 0}, "result": ok_result(7)}]})
    assert call(PRICED, {"qty": 0}, fixture=fixture).result == ok_result(7)


# ---- purity ----------------------------------------------------------------------------------


def test_simulator_is_pure() -> None:
    loaded = loaded_after(
        "import simulator, simulator.engine",
        ("gateway", "settings_api", "aiohttp", "asyncpg", "redis", "socket"),
    )
    assert {m.split(".")[0] for m in loaded} == set()
    source = "\n".join(p.read_text() for p in (ROOT / "simulator").glob("*.py"))
    for forbidden in (
        r"\bopen\(",
        r"import socket",
        r"urllib\.request",
        r"(?<![`\w.])hash\(",
        r"import (gateway|settings_api)",
        r"from (gateway|settings_api)",
    ):
        assert not re.search(forbidden, source), forbidden


def test_regex_generator_respects_bounds_or_says_none() -> None:
    from simulator.canonical import Seeded

    assert regex_generate("^[A-Z]{2}$", Seeded(b"s" * 16), 5) is None
    value = regex_generate("^[a-z]{2,40}$", Seeded(b"s" * 16), 30, 31)
    assert value is not None and 30 <= len(value) <= 31


def test_a_fixture_applies_even_after_the_call_was_generated_and_cached() -> None:
    simulator = Simulator()
    assert call(PRICED, {"sku": "A"}, simulator=simulator).source == "generated"
    fixture = parsed({"rules": [{"match": {"sku": "A"}, "result": ok_result(4)}]})
    assert call(PRICED, {"sku": "A"}, simulator=simulator, fixture=fixture).result == ok_result(4)
    assert call(PRICED, {"sku": "A"}, simulator=simulator).source == "generated"


def test_remembered_seeds_match_fresh_ones_and_keep_json_equal_values_together() -> None:
    """The seed memo (keyed by orjson text) gives what a fresh simulator gives: JSON-equal
    arguments (1 and 1.0, any key order) share a result; NaN is not taken for null."""
    t = tool({"type": "object", "properties": {"n": {"type": "integer"}}}, inputs={})
    warm = Simulator()
    for arguments in (
        {"a": 1, "b": [1.0, "x"]},
        {"b": [1, "x"], "a": 1.0},
        {"a": None},
        {"a": float("nan")},
        {"big": 2**70},
        {"a": None},
        {"long": "x" * 2000},
        {"long": "x" * 2000},
    ):
        assert call(t, arguments, warm) == call(t, arguments, Simulator())
    assert call(t, {"a": 1, "b": [1.0, "x"]}, warm) == call(t, {"b": [1, "x"], "a": 1.0}, warm)
    assert call(t, {"a": None}, warm) != call(t, {"a": float("nan")}, warm)


def test_repeated_calls_of_one_tool_object_answer_as_a_fresh_simulator() -> None:
    """The same tool object called again (how the gateway calls it) is answered from one memo:
    still a private copy, still keyed by tenant, integration, fixtures version, seed and
    arguments, and never in place of a fixture."""
    warm = Simulator()
    for t, arguments in ((PRICED, {"sku": "A"}), (PRICED, {"qty": 0}), (tool(CONTACT), {})):
        first = call(t, arguments, warm)
        first.result["content"].append("changed")
        for change in (
            {},
            {"seed": "a"},
            {"tenant": "other"},
            {"integration": "erp"},
            {"fixtures_version": 1},
        ):
            again, fresh = call(t, arguments, warm, **change), call(t, arguments, **change)
            assert again == fresh and "changed" not in again.result["content"]
    assert call(PRICED, {"qty": 0}, warm).source == "invalid-arguments"
    fixture = parsed({"rules": [{"match": {"sku": "A"}, "result": ok_result(4)}]})
    assert call(PRICED, {"sku": "A"}, warm, fixture=fixture).result == ok_result(4)
    assert call(PRICED, {"sku": "A"}, warm).source == "generated"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", False),
        ('{"id": 123456789012345678}', False),  # 18 digits: orjson reads it exactly
        ('{"id": 1234567890123456789}', True),  # 19
        ('{"id": 12345678901234567890123}', True),
        ('{"a": "1234567890123456789"}', True),  # in a string: harmless, but the test is cheap
        ('{"a": 123456789, "b": 0123456789}', False),  # runs apart do not add up
        ("٠١٢٣٤٥٦٧٨٩٠١٢٣٤٥٦٧٨٩", False),  # not ASCII digits: never a JSON number
    ],
)
def test_long_integer_runs_are_found_in_text_and_bytes(text: str, expected: bool) -> None:
    assert may_hold_long_integer(text) is expected
    assert may_hold_long_integer(text.encode()) is expected
