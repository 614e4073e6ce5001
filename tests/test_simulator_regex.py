"""Pattern strings (simulator/regex.py, rstr's xeger underneath): deterministic in every
process, matching, within length bounds, and bounded in cost for hostile patterns."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from simulator import Simulator, budget
from simulator.budget import OverBudget
from simulator.canonical import Seeded
from simulator.regex import generate

ROOT = Path(__file__).resolve().parent.parent
# Negated classes and \W: xeger builds those alphabets in set order.
SET_ORDERED = [
    r"^[^\s@]+@[^\s@]+\.[a-z]{2,}$",
    r"\W{5}",
    r"^[^a-z]{6}$",
    r".{8}",
    r"^(?:foo|bar|baz)+$",
    r"^(?=.*\d)[a-z\d]{8}$",
    r"[^\d]{4}x",
]
_CHILD = """
import json, sys
from simulator.canonical import Seeded
from simulator.regex import generate
print(json.dumps([[generate(p, Seeded(bytes([i]) * 16), 0, 40) for i in range(10)]
                  for p in json.loads(sys.argv[1])]))
"""


def seeds(count: int = 10) -> list[Seeded]:
    return [Seeded(bytes([i]) * 16) for i in range(count)]


def test_the_same_seed_gives_the_same_string_whatever_the_hash_seed() -> None:
    outputs = set()
    for hash_seed in ("0", "1", "12345"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed, "PYTHONPATH": str(ROOT)}
        done = subprocess.run(
            [sys.executable, "-c", _CHILD, json.dumps(SET_ORDERED)],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        outputs.add(done.stdout)
    assert len(outputs) == 1
    for pattern, values in zip(SET_ORDERED, json.loads(outputs.pop()), strict=True):
        assert all(v is not None and re.search(pattern, v) for v in values), pattern
        assert len(set(values)) > 1, pattern  # seeds do make a difference


@pytest.mark.parametrize("pattern", [r"^[^a-z]{6}$", r"^[^0-9]+$", r"\W{4}", r"^.{5}$", r"^\s?x$"])
def test_negations_and_dot_give_printable_characters(pattern: str) -> None:
    for s in seeds():
        value = generate(pattern, s)
        assert value is not None and re.search(pattern, value)
        assert value.isprintable(), repr(value)


@pytest.mark.parametrize(
    ("pattern", "low", "high"),
    [
        (r"^[a-z]{2,40}$", 30, 31),
        (r"^(?:foo|bar)+$", 3, 3),
        (r"^(?:foo|bar)+$", 40, 45),
        (r"^[a-z]+$", 150, 160),
        (r"^doc_[0-9a-f]{1,20}$", 10, 10),
        (r"^[a-z]*$", 0, 0),
    ],
)
def test_length_bounds_are_met_by_choosing_repeat_counts(pattern: str, low: int, high: int) -> None:
    for s in seeds():
        value = generate(pattern, s, low, high)
        assert value is not None and re.search(pattern, value) and low <= len(value) <= high


@pytest.mark.parametrize(
    "pattern",
    [
        r"^(?=.*\d)(?=.*[A-Z])[a-zA-Z\d]{10}$",  # lookaheads are not text
        r"^(?!admin$)[a-z]{5}$",
        r"^[a-z]{3}(?<!abc)$",
        r"x(?=[(])",  # an unanchored lookahead: written as text, it still matches
        r"^[(?=]{3}$",  # "(?=" inside a class is no lookahead
    ],
)
def test_lookarounds(pattern: str) -> None:
    for s in seeds():
        value = generate(pattern, s)
        assert value is not None and re.search(pattern, value), (pattern, value)


@pytest.mark.parametrize(
    "pattern", [r"(?(1)a|b)", r"(?>ab)+c", r"a++b", r"[^\x00-\U0010ffff]", r"(", r"^[A-Z]{2}$"]
)
def test_what_cannot_be_generated_is_none(pattern: str) -> None:
    # Conditionals, atomic groups and possessive repeats are not written by xeger; an empty
    # class and an invalid pattern have no string; "^[A-Z]{2}$" cannot reach minLength 5.
    assert generate(pattern, Seeded(b"s" * 16), 5) is None


@pytest.mark.parametrize(
    "pattern",
    [
        r"^a{1000000}$",
        r"^[a-z]{10001}$",
        r"((a{100}){100}){100}",
        r"(?:(?:x*)*)*y{20000}",
        r"^(?:abcdefghij){5000}$",
        r"^[\x00-\U0010ffff]{200}$",  # xeger lists a class's members for each character
    ],
)
def test_hostile_repeats_are_refused_quickly_without_building_the_string(pattern: str) -> None:
    started = time.perf_counter()
    assert generate(pattern, Seeded(b"s" * 16)) is None
    assert time.perf_counter() - started < 2.0  # bounded by counted work, not by this margin


def test_generation_spends_the_calls_step_budget() -> None:
    with budget.scope(steps=500), pytest.raises(OverBudget):
        generate(r"^[a-z]{2000}$", Seeded(b"s" * 16))
    with budget.scope(steps=500):
        assert generate(r"^[a-z]{20}$", Seeded(b"s" * 16)) is not None


def test_a_hostile_output_pattern_gets_a_clear_tool_error() -> None:
    tool = {
        "name": "t",
        "inputSchema": {"type": "object"},
        "outputSchema": {
            "type": "object",
            "required": ["id"],
            "properties": {"id": {"type": "string", "pattern": r"^a{1000000}$"}},
        },
    }
    outcome = Simulator().simulate(tool, {}, tenant="t", integration="i")
    assert outcome.result["isError"] is True
    assert "no string matching pattern" in outcome.result["content"][0]["text"]
