"""Deterministic, schema-driven tool results and scripted fixtures for the testUrl.

Pure: schema + arguments + rules in, result out. No I/O, and neither `gateway` nor
`settings_api` is imported here (they import this).
"""

from simulator.canonical import canonical_json, derive_seed
from simulator.engine import Outcome, Simulator
from simulator.fixtures import (
    MAX_LATENCY_MS,
    MAX_RULES,
    Fixture,
    Rule,
    SimulatedError,
    match_rule,
    parse_fixture,
)
from simulator.generator import GenerationError, Generator
from simulator.validation import FieldProblem

__all__ = [
    "MAX_LATENCY_MS",
    "MAX_RULES",
    "FieldProblem",
    "Fixture",
    "GenerationError",
    "Generator",
    "Outcome",
    "Rule",
    "SimulatedError",
    "Simulator",
    "canonical_json",
    "derive_seed",
    "match_rule",
    "parse_fixture",
]
