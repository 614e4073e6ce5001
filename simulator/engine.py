"""The simulator: a tool call in, a deterministic answer out.

Order of decisions for one call:

1. A fixture rule whose `match` names every argument with its exact value answers as scripted,
   even when the arguments break the inputSchema: the tenant asked for that very call.
2. Otherwise the arguments are validated against the tool's `inputSchema`; a failure is a
   CallToolResult with `isError: true` naming every offending field. A partial or default rule
   cannot hide a bad call.
3. Otherwise the first matching rule (partial match or default) answers as scripted.
4. Otherwise a result is generated: with an `outputSchema`, `structuredContent` validated
   against it plus a text block with the same JSON; without one, text that reads like the
   tool's output. Generation is a pure function of (tenant, integration, tool, canonical
   arguments, fixtures version, seed header) and of the schemas.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from mcp_core.json_codec import may_hold_long_integer
from mcp_core.results import structured_result, text_only_result
from simulator import budget
from simulator.budget import OverBudget
from simulator.canonical import (
    Seeded,
    canonical_json,
    derive_seed,
    fingerprint,
    ordered_json,
    result_json,
)
from simulator.fixtures import Fixture, Rule, SimulatedError, match_rule
from simulator.generator import GenerationError, Generator, TooLarge, over_budget
from simulator.lru import LRU
from simulator.patterns import PatternTooSlow
from simulator.text import text_result
from simulator.validation import (
    FieldProblem,
    argument_problems,
    compile_schema,
    invalid_arguments_text,
    without_dialect,
)

DEFAULT_INPUT_SCHEMA: Mapping[str, Any] = {"type": "object"}
# The largest CallToolResult the simulator writes, as UTF-8 JSON (structuredContent and its
# text copy together): a schema asking for more is answered with a tool error naming it.
DEFAULT_MAX_RESULT_BYTES = 1024 * 1024
MAX_CACHED_RESULT_CHARS = 16 * 1024  # larger results are regenerated (same bytes) when asked


@dataclass(frozen=True, slots=True)
class Outcome:
    """Either `result` (a CallToolResult object, the caller's own copy) or `error` (answer with
    a JSON-RPC error); `latency_ms` to wait before answering (scripted by a fixture)."""

    result: dict[str, Any] | None = None
    error: SimulatedError | None = None
    latency_ms: int = 0
    source: str = "generated"  # fixture | invalid-arguments | schema-problem | generated


class _ToolPlan:
    """What one tool's schemas compile to (cached per schema fingerprint)."""

    __slots__ = (
        "fingerprint",
        "generator",
        "input_problem",
        "input_validator",
        "output_problem",
        "output_validator",
    )

    def __init__(self, tool: Mapping[str, Any], key: bytes) -> None:
        self.fingerprint = key
        input_schema = tool.get("inputSchema", DEFAULT_INPUT_SCHEMA)
        compiled = compile_schema(input_schema)
        self.input_validator = compiled.validator
        self.input_problem = (
            None if compiled.problem is None else f"its inputSchema {compiled.problem}"
        )
        self.output_validator = None
        self.output_problem: str | None = None
        self.generator: Generator | None = None
        if "outputSchema" in tool and tool["outputSchema"] is not None:
            output_schema = tool["outputSchema"]
            compiled = compile_schema(output_schema, output=True)
            if compiled.problem is not None:
                self.output_problem = f"its outputSchema {compiled.problem}"
            elif not (isinstance(output_schema, Mapping) and _may_be_object(output_schema)):
                self.output_problem = "its outputSchema does not describe an object"
            else:
                self.output_validator = compiled.validator
                # A private copy: nothing the caller does to `tool` later can reach it.
                own = without_dialect(json.loads(json.dumps(output_schema)))
                self.generator = Generator(own, compiled.validator.evolve(schema=own))


def _may_be_object(schema: Mapping[str, Any]) -> bool:
    types = schema.get("type", "object")
    return types == "object" or (isinstance(types, list) and "object" in types)


class _Entry:
    """What is known about one call: why it is refused (invalid arguments, broken input
    schema), else its generated result once computed."""

    __slots__ = ("read_result", "refusal", "refusal_source", "result", "result_source", "timed_out")

    def __init__(
        self, refusal: str | None = None, refusal_source: str = "", timed_out: bool = False
    ) -> None:
        self.refusal, self.refusal_source = refusal, refusal_source
        self.timed_out = timed_out  # refused by a pattern's time bound: not to be remembered
        self.result: str | None = None
        self.result_source = "generated"
        # How `result` is read back: decided once when it is stored, not on every hit.
        self.read_result: Callable[[str], Any] = orjson.loads

    def remember(self, text: str, source: str) -> None:
        self.result, self.result_source, self.read_result = text, source, _reader(text)

    def outcome(self) -> Outcome:
        """The refusal, else the remembered result, as a fresh object."""
        if self.refusal is not None:
            return Outcome(result=_parse(self.refusal), source=self.refusal_source)
        assert self.result is not None
        return Outcome(result=self.read_result(self.result), source=self.result_source)


MAX_REMEMBERED_ARGUMENTS_BYTES = 1024


def _quick(arguments: Any) -> bytes | None:
    """The arguments' sorted orjson text, a key for the memos; None when it cannot be one."""
    try:
        quick = orjson.dumps(arguments, option=orjson.OPT_SORT_KEYS)
    except TypeError:  # integers past 64 bits, lone surrogates, non-JSON values
        return None
    # orjson writes NaN and Infinity as null, so a text with a null is not a key (two
    # different calls would share it); neither is a long one (the memos stay small).
    return None if b"null" in quick or len(quick) > MAX_REMEMBERED_ARGUMENTS_BYTES else quick


def _answer_key(
    tool: Mapping[str, Any],
    tenant: str,
    integration: str,
    fixtures_version: int,
    seed: str | None,
    fixture: Fixture | None,
    quick: bytes | None,
) -> tuple[Any, ...] | None:
    """The memo key of a call without fixtures whose arguments have a `_quick` text."""
    if fixture is not None or quick is None:
        return None
    # The tool object stands for its name and schemas: a simulated tool is never changed
    # in place (see the class docstring), and the memo holds it, so its id is not reused.
    return (id(tool), tenant, integration, fixtures_version, seed, quick)


def _reader(text: str) -> Callable[[str], Any]:
    """What reads `text` back exactly: orjson, unless a long digit run needs the stdlib."""
    return json.loads if may_hold_long_integer(text) else orjson.loads


def _parse(text: str) -> Any:
    """A fresh object of a cached result's JSON text (callers may change what they get)."""
    return _reader(text)(text)


def _error_result(text: str) -> str:
    return result_json(text_only_result(text, is_error=True))


class Simulator:
    """Answers `tools/call` for the testUrl. Thread-safe; keep one per process.

    Caches (bounded LRUs): compiled tools by a digest of their schemas (key order included:
    generated objects follow the schema's declared order) and by the tool object itself (so a
    tool mapping must not be changed in place once simulated), and per call the argument verdict
    and the generated result (results above 16 KiB are regenerated instead: same bytes), also
    by the tool object for calls without fixtures.

    Bounds (tenants' schemas and arguments are untrusted): checking the arguments, and
    generating and checking a result, each get a counted step budget (simulator/budget.py);
    a result larger than `max_result_bytes` is a tool error naming the budget. Only verdicts
    of the call's own inputs are remembered, never one decided by a pattern's time bound."""

    def __init__(
        self,
        *,
        result_cache_size: int = 2048,
        tool_cache_size: int = 512,
        max_attempts: int = 8,
        max_result_bytes: int = DEFAULT_MAX_RESULT_BYTES,
    ) -> None:
        self.max_attempts = max_attempts
        self.max_result_bytes = max_result_bytes
        self._tools: LRU[bytes, _ToolPlan] = LRU(tool_cache_size)
        self._by_identity: LRU[int, tuple[Mapping[str, Any], _ToolPlan]] = LRU(tool_cache_size)
        self._results: LRU[tuple[Any, ...], _Entry] = LRU(result_cache_size)
        self._digests: LRU[tuple[Any, ...], bytes] = LRU(result_cache_size)
        # A repeated call without fixtures, straight to its entry: one lookup instead of the
        # digest's, the plan's and the result's (eval harnesses repeat calls a lot).
        self._answers: LRU[tuple[Any, ...], tuple[Mapping[str, Any], _Entry]] = LRU(
            result_cache_size
        )

    # ---- public --------------------------------------------------------------------------

    def simulate(
        self,
        tool: Mapping[str, Any],
        arguments: Any,
        *,
        tenant: str,
        integration: str,
        fixtures_version: int = 0,
        seed: str | None = None,
        fixture: Fixture | None = None,
    ) -> Outcome:
        """The answer to calling `tool` with `arguments` (None = no arguments)."""
        if arguments is None:
            arguments = {}
        quick = _quick(arguments)
        answer_key = _answer_key(tool, tenant, integration, fixtures_version, seed, fixture, quick)
        if answer_key is not None:
            held = self._answers.get(answer_key)
            if held is not None and held[0] is tool:
                return held[1].outcome()
        name = str(tool.get("name", ""))
        rule = match_rule(fixture, arguments)
        if rule is not None and rule.matches_exactly(arguments):
            return _from_rule(rule)
        try:
            digest = self._digest(
                tenant, integration, name, arguments, int(fixtures_version), seed, quick
            )
        except (TypeError, ValueError):
            return Outcome(
                result=json.loads(
                    _error_result(
                        f"Invalid arguments for tool {json.dumps(name)}: (arguments): must be JSON"
                    )
                ),
                source="invalid-arguments",
            )
        try:
            plan = self._plan(tool)
        except (TypeError, ValueError, RecursionError):
            return Outcome(
                result=json.loads(
                    _error_result(_cannot_simulate(name, "its schemas are not JSON"))
                ),
                source="schema-problem",
            )
        # Digests, not texts, in the key: arguments may be large.
        key = (plan.fingerprint, digest)
        entry = self._results.get(key)
        if entry is None:
            with budget.scope():
                entry = self._check(plan, name, arguments)
            if entry.timed_out:  # the clock's verdict: this call's answer, no later one's
                return entry.outcome()
            self._results.put(key, entry)
        if entry.refusal is None and rule is not None:
            return _from_rule(rule)
        if entry.refusal is None and entry.result is None:
            with budget.scope():  # its own budget: the check above may have been cached
                text, source, timed_out = self._generate(plan, name, arguments, digest)
            if timed_out or len(text) > MAX_CACHED_RESULT_CHARS:
                return Outcome(result=_parse(text), source=source)
            entry.remember(text, source)
        if answer_key is not None:
            self._answers.put(answer_key, (tool, entry))
        return entry.outcome()

    def remembered(
        self,
        tool: Mapping[str, Any],
        arguments: Any,
        *,
        tenant: str,
        integration: str,
        fixtures_version: int = 0,
        seed: str | None = None,
        fixture: Fixture | None = None,
    ) -> Outcome | None:
        """`simulate`'s answer when this very call was answered before (one lookup, no
        checking or generating), else None."""
        answer_key = _answer_key(
            tool,
            tenant,
            integration,
            fixtures_version,
            seed,
            fixture,
            _quick({} if arguments is None else arguments),
        )
        held = None if answer_key is None else self._answers.get(answer_key)
        return held[1].outcome() if held is not None and held[0] is tool else None

    # ---- steps ---------------------------------------------------------------------------

    def _digest(
        self,
        tenant: str,
        integration: str,
        name: str,
        arguments: Any,
        fixtures_version: int,
        seed: str | None,
        quick: bytes | None,
    ) -> bytes:
        """`derive_seed` over the canonical arguments, remembered by their `_quick` text:
        repeated calls skip canonicalizing (the slow, stdlib part)."""
        key = None if quick is None else (tenant, integration, name, fixtures_version, seed, quick)
        digest = self._digests.get(key) if key is not None else None
        if digest is None:
            digest = derive_seed(
                tenant, integration, name, canonical_json(arguments), fixtures_version, seed
            )
            if key is not None:
                self._digests.put(key, digest)
        return digest

    def _plan(self, tool: Mapping[str, Any]) -> _ToolPlan:
        # The same tool object again (a gateway view's tools are never mutated): no need to
        # serialize its schemas to find its plan. The entry holds the tool, so its id cannot
        # be reused by another object while the entry lives.
        held = self._by_identity.get(id(tool))
        if held is not None and held[0] is tool:
            return held[1]
        plan = self._plan_by_schemas(tool)
        self._by_identity.put(id(tool), (tool, plan))
        return plan

    def _plan_by_schemas(self, tool: Mapping[str, Any]) -> _ToolPlan:
        key = fingerprint(
            ordered_json([tool.get("inputSchema", DEFAULT_INPUT_SCHEMA), tool.get("outputSchema")])
        )
        plan = self._tools.get(key)
        if plan is None:
            plan = _ToolPlan(tool, key)
            self._tools.put(key, plan)
        return plan

    def _check(self, plan: _ToolPlan, name: str, arguments: Any) -> _Entry:
        if plan.input_validator is None:
            return _Entry(
                _error_result(_cannot_simulate(name, plan.input_problem)), "schema-problem"
            )
        try:
            problems = argument_problems(plan.input_validator, arguments)
        except RecursionError:
            problems = [FieldProblem("(arguments)", "are nested too deeply")]
        except OverBudget as exc:
            return _Entry(
                _error_result(_cannot_simulate(name, f"in its inputSchema, {exc}")),
                "schema-problem",
                timed_out=_timed_out(exc),
            )
        except Exception:
            return _Entry(
                _error_result(
                    _cannot_simulate(name, "its inputSchema has a $ref that is not local")
                ),
                "schema-problem",
            )
        if problems:
            return _Entry(
                _error_result(invalid_arguments_text(name, problems)), "invalid-arguments"
            )
        return _Entry()

    def _generate(
        self, plan: _ToolPlan, name: str, arguments: Any, digest: bytes
    ) -> tuple[str, str, bool]:
        """The result's JSON text, its source, and whether a pattern's time bound decided it
        (then it must not be remembered)."""
        root = Seeded(digest)
        if plan.output_problem is not None:
            return (
                _error_result(_cannot_simulate(name, plan.output_problem)),
                "schema-problem",
                False,
            )
        if plan.generator is None:
            text = text_result(name, arguments, root)
            return result_json(text_only_result(text)), "generated", False
        validator = plan.output_validator
        assert validator is not None  # set together with the generator
        problem = GenerationError("/", "no attempt produced a valid value")
        for attempt in range(self.max_attempts):
            seeded = (
                root
                if attempt == 0
                else Seeded(hashlib.sha256(digest + b"\x00retry%d" % attempt).digest())
            )
            try:
                value = plan.generator.generate(seeded, self.max_result_bytes)
                error = next(iter(validator.iter_errors(value)), None)
            except TooLarge as exc:
                problem = exc
                break
            except GenerationError as exc:
                problem = exc
                continue
            except RecursionError:
                problem = GenerationError("/", "nested too deeply")
                break
            except OverBudget as exc:
                return (
                    _error_result(_cannot_simulate(name, f"in its outputSchema, {exc}")),
                    "schema-problem",
                    _timed_out(exc),
                )
            except Exception:
                problem = GenerationError("/", "has a $ref that is not local")
                break
            if error is None:
                answer = result_json(structured_result(value))
                # The generator's running count is a lower bound; this is the exact size.
                if len(answer.encode("utf-8", "surrogatepass")) > self.max_result_bytes:
                    problem = TooLarge("/", over_budget(self.max_result_bytes))
                    break
                return answer, "generated", False
            pointer = "/" + "/".join(str(p) for p in error.absolute_schema_path)
            problem = GenerationError(
                pointer, f"generated values keep breaking {error.validator!r}"
            )
        return (
            _error_result(
                _cannot_simulate(
                    name,
                    f"its outputSchema cannot be satisfied at {problem.pointer} ({problem.reason})",
                )
            ),
            "schema-problem",
            False,
        )


def _timed_out(exc: OverBudget) -> bool:
    return isinstance(exc, PatternTooSlow) and exc.timed_out


def _cannot_simulate(name: str, why: str | None) -> str:
    return f"The simulator cannot answer tool {json.dumps(name, ensure_ascii=False)}: {why}"


def _from_rule(rule: Rule) -> Outcome:
    if rule.error is not None:
        return Outcome(error=rule.error, latency_ms=rule.latency_ms, source="fixture")
    return Outcome(result=rule.result, latency_ms=rule.latency_ms, source="fixture")
