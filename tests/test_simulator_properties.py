"""Property tests: for many random schemas built from the supported keywords, every generated
result validates against its outputSchema and the same call always gives the same bytes."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from simulator import Simulator, canonical_json
from simulator.canonical import Seeded
from simulator.formats import CHECKS
from simulator.regex import generate as regex_generate
from simulator.validation import compile_schema

pytestmark = pytest.mark.slow

PROPERTY_NAMES = (
    "id",
    "userId",
    "email",
    "name",
    "firstName",
    "lastName",
    "createdAt",
    "updatedAt",
    "date",
    "city",
    "country",
    "phone",
    "price",
    "amount",
    "total",
    "currency",
    "title",
    "description",
    "status",
    "count",
    "quantity",
    "url",
    "website",
    "tags",
    "items",
    "value",
    "x",
    "data",
    "score",
    "age",
    "notes",
)
# (pattern, shortest and longest match), for choosing satisfiable length bounds.
PATTERNS = (
    (r"^[a-z]{3,10}$", 3, 10),
    (r"^doc_[0-9a-f]{8}$", 12, 12),
    (r"^\d{3}-\d{4}$", 8, 8),
    (r"^[A-Z]{2}$", 2, 2),
    (r"^(?:foo|bar)+$", 3, 60),
    (r"[a-z]+", 1, 200),
    (r"^[\w.-]+@[a-z]+\.(com|org)$", 7, 80),
    (r"^(?=.*\d)[a-z\d]{8}$", 8, 8),
    (r"^[^\s]{0,20}$", 0, 20),
    (r"abc", 3, 200),
)
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-1000, 1000),
    st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False),
    st.text(max_size=8),
)


@st.composite
def integer_schemas(draw: Any) -> dict[str, Any]:
    low = draw(st.integers(-10_000, 10_000))
    width = draw(st.integers(0, 5_000))
    schema: dict[str, Any] = {"type": "integer"}
    if draw(st.booleans()):
        schema["minimum"] = low
    if draw(st.booleans()):
        schema["maximum"] = low + width
    if draw(st.booleans()):
        step = draw(st.sampled_from([1, 2, 3, 5, 10, 1.5]))
        schema["multipleOf"] = step
        if "maximum" in schema:
            schema["maximum"] = low + max(width, 30)
    if draw(st.booleans()) and "minimum" in schema:
        schema["exclusiveMinimum"] = schema.pop("minimum")
        if "maximum" in schema:
            schema["maximum"] = max(schema["maximum"], low + 40)
    return schema


@st.composite
def number_schemas(draw: Any) -> dict[str, Any]:
    low = draw(st.floats(-1e6, 1e6, allow_nan=False))
    width = draw(st.sampled_from([0.001, 0.5, 1.0, 10.0, 1e3, 1e5]))
    schema: dict[str, Any] = {"type": "number"}
    bounds = draw(st.sampled_from(["none", "min", "max", "both", "exclusive", "mixed"]))
    if bounds in ("min", "both"):
        schema["minimum"] = low
    if bounds in ("max", "both", "mixed"):
        schema["maximum"] = low + width
    if bounds in ("exclusive", "mixed"):
        schema["exclusiveMinimum"] = low
    if bounds == "exclusive":
        schema["exclusiveMaximum"] = low + width
    if draw(st.booleans()):
        step = draw(st.sampled_from([0.5, 0.25, 0.1, 0.01, 2, 5]))
        schema["multipleOf"] = step
        if "maximum" in schema or "exclusiveMaximum" in schema:
            key = "maximum" if "maximum" in schema else "exclusiveMaximum"
            schema[key] = low + max(width, 20 * step)
    return schema


@st.composite
def string_schemas(draw: Any) -> dict[str, Any]:
    choice = draw(st.sampled_from(["plain", "lengths", "pattern", "format"]))
    schema: dict[str, Any] = {"type": "string"}
    if choice == "lengths":
        low = draw(st.integers(0, 60))
        schema["minLength"] = low
        if draw(st.booleans()):
            schema["maxLength"] = low + draw(st.integers(0, 20))
    elif choice == "pattern":
        pattern, shortest, longest = draw(st.sampled_from(PATTERNS))
        schema["pattern"] = pattern
        if draw(st.booleans()):
            low = draw(st.integers(0, shortest))
            schema["minLength"] = low
            if draw(st.booleans()):
                schema["maxLength"] = draw(st.integers(max(low, shortest), longest))
    elif choice == "format":
        schema["format"] = draw(st.sampled_from(sorted(CHECKS)))
    return schema


def distinct(values: list[Any]) -> list[Any]:
    seen: dict[str, Any] = {}
    for value in values:
        seen.setdefault(canonical_json(value), value)
    return list(seen.values())


LEAVES = st.one_of(
    integer_schemas(),
    number_schemas(),
    string_schemas(),
    st.just({"type": "boolean"}),
    st.just({"type": "null"}),
    st.just({}),
    st.lists(SCALARS, min_size=1, max_size=5).map(lambda v: {"enum": distinct(v)}),
    st.one_of(SCALARS, st.lists(SCALARS, max_size=3)).map(lambda v: {"const": v}),
    st.lists(
        st.sampled_from(["string", "integer", "number", "boolean", "null"]),
        min_size=1,
        max_size=3,
        unique=True,
    ).map(lambda t: {"type": t}),
)
# Items for uniqueItems arrays: value spaces large enough for a few distinct items.
ROOMY = st.one_of(
    st.just({"type": "string"}),
    st.just({"type": "integer"}),
    st.just({"type": "string", "format": "uuid"}),
    st.just({"type": "integer", "minimum": 0, "maximum": 1000}),
)


@st.composite
def objects(draw: Any, children: Any) -> dict[str, Any]:
    names = draw(st.lists(st.sampled_from(PROPERTY_NAMES), max_size=5, unique=True))
    props = {name: draw(children) for name in names}
    schema: dict[str, Any] = {"type": "object", "properties": props}
    if names:
        schema["required"] = draw(st.lists(st.sampled_from(names), unique=True))
    extra = draw(st.sampled_from(["absent", "false", "schema"]))
    if extra == "false":
        schema["additionalProperties"] = False
    elif extra == "schema":
        schema["additionalProperties"] = draw(LEAVES)
    if draw(st.booleans()):
        most = len(names) if extra == "false" else len(names) + 3
        schema["minProperties"] = draw(st.integers(0, most))
    if draw(st.booleans()):
        schema["maxProperties"] = max(
            len(schema.get("required", [])), schema.get("minProperties", 0)
        ) + draw(st.integers(0, 3))
    return schema


@st.composite
def arrays(draw: Any, children: Any) -> dict[str, Any]:
    kind = draw(st.sampled_from(["items", "prefix", "unique"]))
    schema: dict[str, Any] = {"type": "array"}
    low = draw(st.integers(0, 3))
    if kind == "items":
        schema["items"] = draw(children)
    elif kind == "prefix":
        schema["prefixItems"] = draw(st.lists(children, min_size=1, max_size=3))
        schema["items"] = draw(st.one_of(st.just(False), children))
        low = min(low, len(schema["prefixItems"]))
    else:
        schema["items"] = draw(ROOMY)
        schema["uniqueItems"] = True
    schema["minItems"] = low
    if draw(st.booleans()):
        schema["maxItems"] = low + draw(st.integers(0, 4))
    return schema


@st.composite
def alternatives(draw: Any, children: Any) -> dict[str, Any]:
    kind = draw(st.sampled_from(["anyOf", "oneOf", "allOf-objects", "allOf-range"]))
    if kind == "anyOf":
        return {"anyOf": draw(st.lists(children, min_size=1, max_size=3))}
    if kind == "oneOf":
        # Branches of different types: exactly one can match any value.
        types = draw(
            st.lists(
                st.sampled_from(["string", "integer", "boolean", "null", "object", "array"]),
                min_size=1,
                max_size=3,
                unique=True,
            )
        )
        return {
            "oneOf": [
                {"type": t}
                if t not in ("string", "integer")
                else draw(string_schemas() if t == "string" else integer_schemas())
                for t in types
            ]
        }
    if kind == "allOf-objects":
        a, b = draw(st.lists(st.sampled_from(PROPERTY_NAMES), min_size=2, max_size=2, unique=True))
        return {
            "allOf": [
                {"type": "object", "properties": {a: draw(children)}, "required": [a]},
                {"properties": {b: draw(children)}, "required": [b]},
            ]
        }
    low = draw(st.integers(-100, 100))
    return {
        "allOf": [{"type": "integer", "minimum": low}, {"maximum": low + draw(st.integers(0, 50))}]
    }


NODES = st.recursive(
    LEAVES,
    lambda children: st.one_of(objects(children), arrays(children), alternatives(children)),
    max_leaves=12,
)
ROOTS = objects(NODES)


@st.composite
def output_schemas(draw: Any) -> dict[str, Any]:
    root = draw(ROOTS)
    # Some sub-schemas move to $defs and are referenced from where they were.
    if draw(st.booleans()) and root["properties"]:
        name = draw(st.sampled_from(sorted(root["properties"])))
        root["$defs"] = {"shared": root["properties"][name]}
        root["properties"][name] = {"$ref": "#/$defs/shared"}
    if draw(st.booleans()):
        root.setdefault("$defs", {})["tree"] = {
            "type": "object",
            "required": ["label"],
            "properties": {
                "label": {"type": "string"},
                "children": {"type": "array", "items": {"$ref": "#/$defs/tree"}},
            },
        }
        root["properties"]["tree"] = {"$ref": "#/$defs/tree"}
    return root


ARGUMENTS = st.dictionaries(
    st.sampled_from(["query", "limit", "page", "id", "q"]),
    st.one_of(st.text(max_size=10), st.integers(-5, 500)),
    max_size=3,
)


def stock_validator(schema: dict[str, Any]) -> Any:
    return Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)


@settings(
    max_examples=400,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(schema=output_schemas(), arguments=ARGUMENTS, seed=st.one_of(st.none(), st.text(max_size=5)))
def test_every_generated_result_validates_and_repeats_byte_for_byte(
    schema: dict[str, Any], arguments: dict[str, Any], seed: str | None
) -> None:
    tool = {"name": "random_tool", "inputSchema": {"type": "object"}, "outputSchema": schema}
    outcome = Simulator().simulate(tool, arguments, tenant="t", integration="i", seed=seed)
    assert outcome.source == "generated", outcome.result["content"][0]["text"]
    value = outcome.result["structuredContent"]
    stock_validator(schema).validate(value)
    assert compile_schema(schema, output=True).validator.is_valid(value)
    assert json.loads(outcome.result["content"][0]["text"]) == value
    again = Simulator().simulate(
        json.loads(json.dumps(tool)),
        dict(reversed(arguments.items())),
        tenant="t",
        integration="i",
        seed=seed,
    )
    assert json.dumps(again.result, ensure_ascii=False) == json.dumps(
        outcome.result, ensure_ascii=False
    )


JSON_VALUES = st.recursive(
    SCALARS,
    lambda children: st.one_of(
        st.lists(children, max_size=3), st.dictionaries(st.text(max_size=4), children, max_size=3)
    ),
    max_leaves=8,
)


@settings(
    max_examples=150, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)
@given(schema=ROOTS, arguments=JSON_VALUES)
def test_any_arguments_get_an_answer_never_an_exception(
    schema: dict[str, Any], arguments: Any
) -> None:
    tool = {"name": "t", "inputSchema": schema}
    outcome = Simulator().simulate(tool, arguments, tenant="t", integration="i")
    valid = stock_validator(schema).is_valid({} if arguments is None else arguments)
    if valid:
        assert outcome.source == "generated"
        assert "random" not in outcome.result  # a text result
    else:
        assert outcome.source == "invalid-arguments" and outcome.result["isError"] is True
        assert outcome.result["content"][0]["text"].startswith('Invalid arguments for tool "t": ')


@settings(max_examples=200, deadline=None, database=None)
@given(pattern=st.sampled_from(PATTERNS), seed=st.binary(min_size=16, max_size=16), data=st.data())
def test_pattern_strings_match_within_bounds(
    pattern: tuple[str, int, int], seed: bytes, data: Any
) -> None:
    regex, shortest, longest = pattern
    low = data.draw(st.integers(0, shortest))
    high = data.draw(st.integers(max(low, shortest), longest))
    value = regex_generate(regex, Seeded(seed), low, high)
    assert value is not None and re.search(regex, value) and low <= len(value) <= high


@given(value=JSON_VALUES)
def test_canonical_json_ignores_key_order(value: Any) -> None:
    def shuffle(v: Any) -> Any:
        if isinstance(v, dict):
            return {k: shuffle(v[k]) for k in reversed(list(v))}
        if isinstance(v, list):
            return [shuffle(x) for x in v]
        return v

    assert canonical_json(shuffle(value)) == canonical_json(value)
    assert canonical_json(value).isascii()
