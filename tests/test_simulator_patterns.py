"""Tool schemas are the tenants': a `pattern` that backtracks exponentially must not stop the
gateway. Argument checks, output generation and fixture checks match patterns within a time
bound and answer with a clear refusal instead; ordinary patterns behave exactly as `re`'s.

The catastrophic cases run in a child process: without the bound they would hold the
interpreter (and this test run) for hours, so the child's timeout is what fails them."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from simulator import Simulator, budget, parse_fixture
from simulator.patterns import PatternTooSlow, search
from simulator.validation import compile_schema

ROOT = Path(__file__).resolve().parent.parent
EVIL = "^(a|a)*$"  # 2^n paths for n a's followed by a mismatch
VICTIM = "a" * 40 + "b"

_CHILD = r"""
import json, sys
from simulator import Simulator, budget, parse_fixture
EVIL, VICTIM = %r, %r
sim = Simulator()
def text(outcome):
    return outcome.source, outcome.result["content"][0]["text"]
out = {}
tool = {"name": "lookup", "inputSchema": {"type": "object", "properties": {
    "code": {"type": "string", "pattern": EVIL}}}}
out["input"] = text(sim.simulate(tool, {"code": VICTIM}, tenant="t", integration="i"))
out["again"] = text(sim.simulate(tool, {"code": VICTIM + "b"}, tenant="t", integration="i"))
# A `$ref` to the root of a schema that declares its dialect, and a `$schema` further down:
# jsonschema would pick its own classes there (and `re`), out of the bound's reach.
tree = {"name": "tree", "inputSchema": {"$schema": "http://json-schema.org/draft-07/schema#",
    "type": "object", "properties": {"code": {"type": "string", "pattern": EVIL},
                                     "child": {"$ref": "#"}}}}
out["recursive"] = text(sim.simulate(tree, {"child": {"code": VICTIM}}, tenant="t",
                                     integration="i"))
nested = {"name": "nested", "inputSchema": {"type": "object", "properties": {"code": {
    "$schema": "http://json-schema.org/draft-07/schema#", "type": "string", "pattern": EVIL}}}}
out["nested"] = text(sim.simulate(nested, {"code": VICTIM}, tenant="t", integration="i"))
keyed = {"name": "keyed", "inputSchema": {"type": "object", "patternProperties": {
    EVIL: {"type": "string"}}, "additionalProperties": False}}
out["names"] = text(sim.simulate(keyed, {VICTIM: "x"}, tenant="t", integration="i"))
# The generator takes the lookahead as zero-width and writes 30 a's and a b; checking that
# candidate explores 2^30 ways for the lookahead to fail.
made = {"name": "made", "outputSchema": {"type": "object", "required": ["id"],
    "properties": {"id": {"type": "string", "pattern": "^(?=(a|a)*c)a{30}b$"}}}}
out["output"] = text(sim.simulate(made, {}, tenant="t", integration="i"))
checked = {"name": "checked", "outputSchema": {"type": "object", "required": ["id"],
    "properties": {"id": {"type": "string", "pattern": EVIL}}}}
_, problems = parse_fixture({"rules": [{"match": {}, "result": {
    "content": [{"type": "text", "text": "ok"}],
    "structuredContent": {"id": VICTIM}}}]}, checked)
out["fixture"] = [list(p) for p in problems]
print(json.dumps(out))
"""


def test_catastrophic_patterns_are_refused_instead_of_stopping_the_process() -> None:
    done = subprocess.run(
        [sys.executable, "-c", _CHILD % (EVIL, VICTIM)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    out = json.loads(done.stdout)
    source, message = out["nested"]
    assert source == "schema-problem"
    assert "declares a $schema below its root" in message
    for case in ("input", "again", "names", "recursive"):
        source, message = out[case]
        assert source == "schema-problem", (case, message)
        assert "in its inputSchema, the pattern '^(a|a)*$' takes longer than" in message, case
    source, message = out["output"]
    assert source == "schema-problem"
    assert "in its outputSchema, the pattern '^(?=(a|a)*c)a{30}b$' takes longer" in message
    ((field, problem),) = out["fixture"]
    assert field == "rules[0].result.structuredContent"
    assert problem.startswith("cannot be checked against the tool's outputSchema: the pattern")


@pytest.mark.parametrize(
    ("pattern", "text"),
    [
        ("^[a-z]+$", "hello"),
        ("^[a-z]+$", "hello\n"),
        ("^[a-z]+$", "Hello"),
        ("b", "abc"),
        (r"^\d{3}-\d{4}$", "555-1234"),
        (r"^\d{3}-\d{4}$", "555-12345"),
        (r"\bcat\b", "a cat!"),
        ("^(?=.*[A-Z])(?=.*\\d).{8,}$", "Passw0rdX"),
        ("^(?=.*[A-Z])(?=.*\\d).{8,}$", "password"),
        ("(a)\\1", "xaax"),
        ("^é+$", "ééé"),
        (r"^\w+$", "naïve"),
        ("^$", ""),
        ("[", "x"),
    ],
)
def test_ordinary_patterns_match_as_re_does(pattern: str, text: str) -> None:
    try:
        expected = re.search(pattern, text) is not None
    except re.error:
        with pytest.raises(PatternTooSlow, match="cannot be matched"):
            search(pattern, text)
        return
    assert search(pattern, text) is expected


def test_a_slow_pattern_is_refused_for_the_rest_of_its_call_only() -> None:
    with budget.scope():  # one call
        with pytest.raises(PatternTooSlow, match="takes longer than") as first:
            search("^(b|b)*$", "b" * 40 + "c")
        with pytest.raises(PatternTooSlow) as second:
            search("^(b|b)*$", "bbb")  # harmless text: refused without trying again
        assert str(second.value) == str(first.value)
    with budget.scope():  # the next call (any tenant's): its own input decides
        assert search("^(b|b)*$", "bbb")
    assert search("^(b|b)*$", "bbb")


def test_all_of_one_calls_pattern_matches_share_one_time_bound() -> None:
    # Polynomial backtracking just under the per-match timeout, on many property names:
    # without a bound per call, each name would cost the loop again.
    tool = {
        "name": "t",
        "inputSchema": {"type": "object", "patternProperties": {EVIL: {"type": "string"}}},
    }
    names = {"a" * 15 + f"b{n}": "v" for n in range(200)}  # about 10 ms each
    started = time.monotonic()
    outcome = Simulator().simulate(tool, names, tenant="t", integration="i")
    assert time.monotonic() - started < 1.0
    assert outcome.source == "schema-problem"


def test_unevaluated_properties_with_pattern_properties_are_not_checked() -> None:
    # jsonschema matches those patterns with `re` itself, out of the time bound's reach.
    schema = {
        "type": "object",
        "patternProperties": {"^x-": {"type": "string"}},
        "unevaluatedProperties": False,
    }
    compiled = compile_schema(schema)
    assert compiled.validator is None
    assert "unevaluatedProperties with patternProperties" in (compiled.problem or "")
    outcome = Simulator().simulate(
        {"name": "t", "inputSchema": schema}, {"x-a": "1"}, tenant="t", integration="i"
    )
    assert outcome.source == "schema-problem"
    # Either alone is still checked.
    assert compile_schema({"type": "object", "unevaluatedProperties": False}).validator
    assert compile_schema({"type": "object", "patternProperties": {"^x-": {}}}).validator


def test_pattern_properties_and_patterns_still_validate() -> None:
    tool = {
        "name": "t",
        "inputSchema": {
            "type": "object",
            "additionalProperties": False,
            "patternProperties": {"^x-": {"type": "integer"}},
            "properties": {"code": {"type": "string", "pattern": "^[A-Z]{3}$"}},
        },
    }
    sim = Simulator()
    ok = sim.simulate(tool, {"code": "ABC", "x-n": 1}, tenant="t", integration="i")
    assert ok.source == "generated"
    bad = sim.simulate(tool, {"code": "abc", "x-n": "one", "y": 1}, tenant="t", integration="i")
    assert bad.source == "invalid-arguments"
    text = bad.result["content"][0]["text"]
    assert "code: must match the pattern ^[A-Z]{3}$" in text
    assert "x-n: must be an integer" in text
    assert "y: is not an allowed property" in text
    fixture, problems = parse_fixture(
        {"rules": [{"match": {}, "result": {"content": [{"type": "text", "text": "ok"}]}}]}, tool
    )
    assert fixture is not None and problems == []
