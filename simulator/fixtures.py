"""Scripted answers: per tool, rules of argument match -> result | error, with latency.

Body: `{"rules": [{"match": {...}, "result": {CallToolResult}, "latencyMs": 0},
{"match": {...}, "error": {"code": int, "message": str, "data": any}}]}`.

Matching: a rule applies when every key of its `match` is present in the arguments with a
JSON-equal value (deep equality per listed top-level key: `{"filter": {"a": 1}}` matches only a
`filter` that is exactly `{"a": 1}`; 1 equals 1.0, true does not equal 1). `{}` (or no `match`)
matches every call: a default. The first matching rule wins.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from simulator import budget
from simulator.budget import OverBudget
from simulator.canonical import fingerprint, finite_json, json_equal
from simulator.lru import LRU
from simulator.validation import FieldProblem, argument_problems, compile_schema, format_path

MAX_RULES = 100
MAX_LATENCY_MS = 30_000
MAX_MESSAGE_CHARS = 2_000
_RULE_KEYS = ("match", "result", "error", "latencyMs")
_RESULT_KEYS = ("content", "structuredContent", "isError", "_meta")
_ERROR_KEYS = ("code", "message", "data")
# A digest of (outputSchema, structuredContent) found valid -> the steps checking it spent.
# A fixture is checked when it is written; the data plane parses the stored fixture again on
# every cache load, and finds the verdict here instead of validating again. Charging the
# remembered steps keeps the verdict of a whole fixture the same with or without the memo.
_VALID_STRUCTURED: LRU[bytes, int] = LRU(4096)
_BLOCK_FIELDS: dict[str, tuple[tuple[str, type], ...]] = {
    "text": (("text", str),),
    "image": (("data", str), ("mimeType", str)),
    "audio": (("data", str), ("mimeType", str)),
    "resource_link": (("uri", str), ("name", str)),
    "resource": (("resource", dict),),
}


@dataclass(frozen=True, slots=True)
class SimulatedError:
    """A JSON-RPC error to answer with instead of a result."""

    code: int
    message: str
    data: Any = None


@dataclass(frozen=True, slots=True)
class Rule:
    match: Mapping[str, Any]
    result_json: str | None  # the CallToolResult, as JSON (each answer gets a fresh copy)
    error: SimulatedError | None
    latency_ms: int = 0

    @property
    def result(self) -> dict[str, Any] | None:
        """A fresh copy of the scripted CallToolResult (None for an error rule)."""
        return None if self.result_json is None else json.loads(self.result_json)

    def matches(self, arguments: Any) -> bool:
        if not self.match:
            return True
        if not isinstance(arguments, Mapping):
            return False
        return all(
            key in arguments and json_equal(arguments[key], value)
            for key, value in self.match.items()
        )

    def matches_exactly(self, arguments: Any) -> bool:
        """The rule names every argument, and at least one (a default rule never does)."""
        return (
            bool(self.match)
            and isinstance(arguments, Mapping)
            and len(self.match) == len(arguments)
            and self.matches(arguments)
        )


@dataclass(frozen=True, slots=True)
class Fixture:
    rules: tuple[Rule, ...]
    body: Mapping[str, Any] = field(default_factory=dict)  # normalized, defaults filled in

    def as_body(self) -> dict[str, Any]:
        """The fixture as JSON (what a GET returns): defaults made explicit."""
        return json.loads(json.dumps(dict(self.body)))


def match_rule(fixture: Fixture | None, arguments: Any) -> Rule | None:
    """The first rule whose `match` is a subset of `arguments`, or None."""
    if fixture is None:
        return None
    for rule in fixture.rules:
        if rule.matches(arguments):
            return rule
    return None


def parse_fixture(body: Any, tool: Mapping[str, Any]) -> tuple[Fixture | None, list[FieldProblem]]:
    """Validate a fixture body for `tool`; returns (fixture, []) or (None, every problem).
    Checking every rule's structuredContent shares one step budget (simulator/budget.py)."""
    with budget.scope():
        return _parse_fixture(body, tool)


def _parse_fixture(body: Any, tool: Mapping[str, Any]) -> tuple[Fixture | None, list[FieldProblem]]:
    problems: list[FieldProblem] = []
    if not isinstance(body, Mapping):
        return None, [FieldProblem("(body)", "must be an object")]
    for key in body:
        if key != "rules":
            problems.append(FieldProblem(format_path([key], "(body)"), "is not a known field"))
    rules_value = body.get("rules")
    if not isinstance(rules_value, list):
        problems.append(
            FieldProblem(
                "rules",
                "is required and must be an array" if rules_value is None else "must be an array",
            )
        )
        return None, problems
    if len(rules_value) > MAX_RULES:
        problems.append(FieldProblem("rules", f"must have at most {MAX_RULES} rules"))
    output_schema = tool.get("outputSchema")
    rules = []
    normalized = []
    for index, raw in enumerate(rules_value[:MAX_RULES]):
        rule = _parse_rule(raw, f"rules[{index}]", output_schema, problems)
        if rule is not None:
            rules.append(rule)
            normalized.append(_rule_body(rule))
    if problems:
        return None, problems
    return Fixture(tuple(rules), MappingProxyType({"rules": normalized})), []


def _rule_body(rule: Rule) -> dict[str, Any]:
    out: dict[str, Any] = {"match": dict(rule.match)}
    if rule.result_json is not None:
        out["result"] = json.loads(rule.result_json)
    if rule.error is not None:
        out["error"] = {"code": rule.error.code, "message": rule.error.message}
        if rule.error.data is not None:
            out["error"]["data"] = rule.error.data
    out["latencyMs"] = rule.latency_ms
    return out


def _parse_rule(
    raw: Any, where: str, output_schema: Any, problems: list[FieldProblem]
) -> Rule | None:
    if not isinstance(raw, Mapping):
        problems.append(FieldProblem(where, "must be an object"))
        return None
    before = len(problems)
    for key in raw:
        if key not in _RULE_KEYS:
            problems.append(
                FieldProblem(
                    f"{where}.{key}"
                    if isinstance(key, str) and key.isidentifier()
                    else f"{where}[{json.dumps(key)}]",
                    "is not a known field",
                )
            )
    match = raw.get("match", {})
    if match is None:
        match = {}
    if not isinstance(match, Mapping):
        problems.append(FieldProblem(f"{where}.match", "must be an object"))
    elif not finite_json(match):
        problems.append(FieldProblem(f"{where}.match", "contains a number JSON cannot carry"))
    latency = raw.get("latencyMs", 0)
    if latency is None:
        latency = 0
    if isinstance(latency, float) and latency.is_integer():
        latency = int(latency)
    if isinstance(latency, bool) or not isinstance(latency, int):
        problems.append(FieldProblem(f"{where}.latencyMs", "must be an integer"))
    elif not 0 <= latency <= MAX_LATENCY_MS:
        problems.append(
            FieldProblem(f"{where}.latencyMs", f"must be between 0 and {MAX_LATENCY_MS}")
        )
    has_result, has_error = raw.get("result") is not None, raw.get("error") is not None
    if has_result == has_error:
        problems.append(FieldProblem(where, "must have exactly one of result or error"))
    result_json = error = None
    if has_result:
        result_json = _parse_result(raw["result"], f"{where}.result", output_schema, problems)
    if has_error:
        error = _parse_error(raw["error"], f"{where}.error", problems)
    if len(problems) > before:
        return None
    return Rule(MappingProxyType(json.loads(json.dumps(dict(match)))), result_json, error, latency)


def _parse_result(
    result: Any, where: str, output_schema: Any, problems: list[FieldProblem]
) -> str | None:
    if not isinstance(result, Mapping):
        problems.append(FieldProblem(where, "must be a CallToolResult object"))
        return None
    before = len(problems)
    for key in result:
        if key not in _RESULT_KEYS:
            problems.append(FieldProblem(f"{where}.{key}", "is not a CallToolResult field"))
    content = result.get("content")
    if not isinstance(content, list):
        problems.append(
            FieldProblem(
                f"{where}.content",
                "is required and must be an array of content blocks"
                if content is None
                else "must be an array of content blocks",
            )
        )
    else:
        for index, block in enumerate(content):
            _check_block(block, f"{where}.content[{index}]", problems)
    is_error = result.get("isError", False)
    if not isinstance(is_error, bool):
        problems.append(FieldProblem(f"{where}.isError", "must be a boolean"))
    if "_meta" in result and not isinstance(result["_meta"], Mapping):
        problems.append(FieldProblem(f"{where}._meta", "must be an object"))
    structured = result.get("structuredContent")
    if "structuredContent" in result and not isinstance(structured, Mapping):
        problems.append(FieldProblem(f"{where}.structuredContent", "must be an object"))
    elif isinstance(output_schema, Mapping):
        if structured is None and is_error is not True:
            problems.append(
                FieldProblem(
                    f"{where}.structuredContent",
                    "is required: the tool declares an outputSchema (or set isError: true)",
                )
            )
        elif structured is not None:
            _check_structured(structured, f"{where}.structuredContent", output_schema, problems)
    if not finite_json(result):
        problems.append(
            FieldProblem(where, "contains a number JSON cannot carry (NaN or Infinity)")
        )
    if len(problems) > before:
        return None
    return json.dumps(result, ensure_ascii=False, separators=(",", ":"))


def _check_block(block: Any, where: str, problems: list[FieldProblem]) -> None:
    if not isinstance(block, Mapping):
        problems.append(FieldProblem(where, "must be a content block object"))
        return
    kind = block.get("type")
    if not isinstance(kind, str) or not kind:
        problems.append(FieldProblem(f"{where}.type", "is required and must be a string"))
        return
    for name, expected in _BLOCK_FIELDS.get(kind, ()):
        if not isinstance(block.get(name), expected):
            problems.append(
                FieldProblem(
                    f"{where}.{name}",
                    f"is required for a {kind} block and must be "
                    f"{'a string' if expected is str else 'an object'}",
                )
            )


def _check_structured(
    structured: Any, where: str, output_schema: Any, problems: list[FieldProblem]
) -> None:
    compiled = compile_schema(output_schema, output=False)
    if compiled.validator is None:
        problems.append(
            FieldProblem(where, f"cannot be checked: the tool's outputSchema {compiled.problem}")
        )
        return
    # Not canonical_json: 1.0 and 1 differ to a draft-04 "integer".
    key = fingerprint(
        json.dumps([output_schema, structured], sort_keys=True, separators=(",", ":"))
    )
    scope = budget.current()
    before = scope.steps if scope is not None else 0
    try:
        spent = _VALID_STRUCTURED.get(key)
        if spent is not None:
            budget.spend(spent)
            return
        found = argument_problems(compiled.validator, structured)
    except OverBudget as exc:
        problems.append(
            FieldProblem(where, f"cannot be checked against the tool's outputSchema: {exc}")
        )
        return
    except Exception:  # an unresolvable $ref in the tool's schema
        problems.append(
            FieldProblem(
                where, "cannot be checked against the tool's outputSchema (it has a non-local $ref)"
            )
        )
        return
    if not found:
        _VALID_STRUCTURED.put(key, before - scope.steps if scope is not None else 0)
    for problem in found:
        field_path = (
            where
            if problem.field == "(arguments)"
            else (
                f"{where}{problem.field}"
                if problem.field.startswith("[")
                else f"{where}.{problem.field}"
            )
        )
        problems.append(FieldProblem(field_path, problem.message))


def _parse_error(error: Any, where: str, problems: list[FieldProblem]) -> SimulatedError | None:
    if not isinstance(error, Mapping):
        problems.append(FieldProblem(where, "must be an object with code and message"))
        return None
    before = len(problems)
    for key in error:
        if key not in _ERROR_KEYS:
            problems.append(FieldProblem(f"{where}.{key}", "is not a known field"))
    code = error.get("code")
    if isinstance(code, float) and code.is_integer():
        code = int(code)
    if isinstance(code, bool) or not isinstance(code, int):
        problems.append(FieldProblem(f"{where}.code", "is required and must be an integer"))
    elif not -(2**31) <= code < 2**31:
        problems.append(FieldProblem(f"{where}.code", "must fit in 32 bits"))
    message = error.get("message")
    if not isinstance(message, str) or not message:
        problems.append(
            FieldProblem(f"{where}.message", "is required and must be a non-empty string")
        )
    elif len(message) > MAX_MESSAGE_CHARS:
        problems.append(
            FieldProblem(f"{where}.message", f"must be at most {MAX_MESSAGE_CHARS} characters")
        )
    if not finite_json(error.get("data")):
        problems.append(FieldProblem(f"{where}.data", "contains a number JSON cannot carry"))
    if len(problems) > before:
        return None
    assert isinstance(code, int) and isinstance(message, str)
    return SimulatedError(code, message, json.loads(json.dumps(error.get("data"))))
