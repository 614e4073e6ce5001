"""Instances of a JSON Schema, from a seeded stream: valid, deterministic and plausible.

Our own, not an existing generator's (docs/simulator.md says why): valid on every keyword
schema and on thousands of random schemas in tests/test_simulator_properties.py; a private
`random.Random` per node derived from the call's seed; plausible values by property name
(`simulator.hints`). Whole calls: bench/simulator_bench.py.

The walk is here: `$ref`, allOf, oneOf/anyOf, if/then/else, not, const/enum, then the type.
Objects (simulator/objects.py), arrays (simulator/arrays.py), strings (simulator/strings.py)
and numbers (simulator/numeric.py) have their own modules, as do the merging of schemas that
must hold together (simulator/merging.py), `$ref` resolution and sub-schema checks
(simulator/subschemas.py), and the limits of one instance (simulator/instance_limits.py).

The generator aims at validity, and the engine proves it: every instance is validated
against the output schema before it is returned, other attempts use derived seeds, and a
schema no attempt satisfies is reported as a `GenerationError` naming the schema location.

Values of an object's properties come from streams derived from the property name alone, so
adding a property to a schema does not change the values of the others, and key order only
changes key order.
"""

from __future__ import annotations

import json
from typing import Any

from simulator.arrays import array_value
from simulator.budget import spend
from simulator.canonical import Seeded
from simulator.generation_errors import GenerationError, TooLarge, over_budget
from simulator.hints import NO_HINT, Hint
from simulator.instance_limits import MAX_DEPTH, Tally
from simulator.merging import PATTERNS, as_list, merge
from simulator.numeric import integer_value, number_value
from simulator.objects import object_value
from simulator.strings import string_value
from simulator.subschemas import SubSchemas, constrains

__all__ = ["GenerationError", "Generator", "TooLarge", "merge", "over_budget"]

NULL_CHANCE = 0.15
NOT_ATTEMPTS = 6

_OBJECT_KEYS = (
    "properties",
    "required",
    "additionalProperties",
    "patternProperties",
    "minProperties",
    "maxProperties",
    "propertyNames",
    "dependentRequired",
    "unevaluatedProperties",
)
_ARRAY_KEYS = (
    "items",
    "prefixItems",
    "minItems",
    "maxItems",
    "uniqueItems",
    "contains",
    "additionalItems",
    "unevaluatedItems",
)
_STRING_KEYS = ("minLength", "maxLength", "pattern", "format", PATTERNS)
_NUMBER_KEYS = ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf")
_NUMERIC_HINTS = frozenset(
    {
        "count",
        "age",
        "year",
        "rating",
        "score",
        "percent",
        "latitude",
        "longitude",
        "duration",
        "money",
    }
)


def _copy(value: Any) -> Any:
    return json.loads(json.dumps(value)) if isinstance(value, dict | list) else value


class Generator:
    """Generates instances of one root schema, owned (a private copy) and never changed."""

    def __init__(self, root: Any, validator: Any) -> None:
        self.root = root
        self.schemas = SubSchemas(root, validator)
        self.tally = Tally()  # per-thread count of the current generate()

    def generate(self, seeded: Seeded, max_bytes: int | None = None) -> Any:
        """One instance (not yet validated: the caller checks it against the schema) whose
        JSON, written twice as a CallToolResult does, fits in `max_bytes`."""
        self.tally.start(max_bytes)
        return self.value(self.root, seeded, "", 0, 0, NO_HINT, "", None)

    def value(
        self,
        schema: Any,
        s: Seeded,
        ptr: str,
        depth: int,
        refs: int,
        hint: Hint,
        name: str,
        who: Seeded | None,
    ) -> Any:
        """A value for `schema` (at `ptr` in the root), drawn from `s`; `hint`, `name` and `who`
        (the enclosing object's persona) make it plausible."""
        if depth > MAX_DEPTH:
            raise GenerationError(ptr, "nested too deeply (a recursive $ref that never ends?)")
        self.tally.count_value(ptr)
        spend()  # every attempt of the call draws on the same step budget as its validation
        if schema is True:
            schema = {}
        if schema is False:
            raise GenerationError(ptr, "the schema is false: no value is allowed")
        if not isinstance(schema, dict):
            raise GenerationError(ptr, "is not a schema")
        depth += 1
        if "$ref" in schema or "$dynamicRef" in schema:
            if "$dynamicRef" in schema and "$ref" not in schema:
                schema = {**schema, "$ref": schema["$dynamicRef"]}
                del schema["$dynamicRef"]
            schema, ptr = self.schemas.deref(schema, ptr)
            return self.value(schema, s, ptr, depth, refs + 1, hint, name, who)
        if "allOf" in schema:
            merged = {k: v for k, v in schema.items() if k != "allOf"}
            for index, member in enumerate(schema["allOf"]):
                member, _ = self.schemas.deref(member, f"{ptr}/allOf/{index}")
                if member is False:
                    raise GenerationError(f"{ptr}/allOf/{index}", "false: no value is allowed")
                if isinstance(member, dict):
                    merged = merge(merged, member)
            return self.value(merged, s, ptr, depth, refs, hint, name, who)
        for key in ("oneOf", "anyOf"):
            if key in schema:
                return self._alternatives(key, schema, s, ptr, depth, refs, hint, name, who)
        if "if" in schema:
            return self._conditional(schema, s, ptr, depth, refs, hint, name, who)
        if "not" in schema:
            rest = {k: v for k, v in schema.items() if k != "not"}
            for attempt in range(NOT_ATTEMPTS):
                candidate = self.value(
                    rest,
                    s.child(f"not{attempt}") if attempt else s,
                    ptr,
                    depth,
                    refs,
                    hint,
                    name,
                    who,
                )
                if not self.schemas.is_valid(schema["not"], candidate):
                    return candidate
            raise GenerationError(f"{ptr}/not", "every generated value matches `not`")
        if "const" in schema:
            return self._constant(schema["const"], ptr)
        if "enum" in schema:
            return self._enum(schema, s, ptr)
        return self._typed(schema, s, ptr, depth, refs, hint, name, who)

    def _constant(self, value: Any, ptr: str) -> Any:
        """A copy of a schema's `const` or `enum` value, counted by its JSON size."""
        if isinstance(value, dict | list | str):
            self.tally.spend_bytes(len(json.dumps(value, ensure_ascii=False)), ptr)
        return _copy(value)

    def _enum(self, schema: dict[str, Any], s: Seeded, ptr: str) -> Any:
        values = list(schema["enum"])
        if not values:
            raise GenerationError(ptr, "enum/const leave no allowed value")
        rest = {k: v for k, v in schema.items() if k != "enum"}
        if not constrains(rest):
            return self._constant(s.rng.choice(values), ptr)
        s.rng.shuffle(values)
        for value in values:
            if self.schemas.is_valid(rest, value):
                return self._constant(value, ptr)
        raise GenerationError(ptr, "no enum value satisfies the other keywords")

    def _alternatives(
        self,
        key: str,
        schema: dict[str, Any],
        s: Seeded,
        ptr: str,
        depth: int,
        refs: int,
        hint: Hint,
        name: str,
        who: Seeded | None,
    ) -> Any:
        branches = schema[key]
        base = {k: v for k, v in schema.items() if k != key}
        order = list(range(len(branches)))
        s.rng.shuffle(order)
        # A "null" alternative is the exception, not one in two.
        nulls = [i for i in order if branches[i] == {"type": "null"}]
        if nulls and s.rng.random() >= NULL_CHANCE:
            order = [i for i in order if i not in nulls] + nulls
        problem = "no alternative can be generated"
        for index in order:
            branch_ptr = f"{ptr}/{key}/{index}"
            branch, branch_ptr = self.schemas.deref(branches[index], branch_ptr)
            if branch is False:
                continue
            candidate = merge(base, branch) if isinstance(branch, dict) else base
            for attempt in range(2 if key == "oneOf" else 1):
                try:
                    value = self.value(
                        candidate,
                        s.child(f"{key}{index}.{attempt}"),
                        branch_ptr,
                        depth,
                        refs,
                        hint,
                        name,
                        who,
                    )
                except TooLarge:
                    raise
                except GenerationError as exc:
                    problem = exc.reason
                    break
                if key == "anyOf":
                    return value
                if sum(1 for b in branches if self.schemas.is_valid(b, value)) == 1:
                    return value
                problem = "generated values match more than one alternative"
        raise GenerationError(f"{ptr}/{key}", problem)

    def _conditional(
        self,
        schema: dict[str, Any],
        s: Seeded,
        ptr: str,
        depth: int,
        refs: int,
        hint: Hint,
        name: str,
        who: Seeded | None,
    ) -> Any:
        base = {k: v for k, v in schema.items() if k not in ("if", "then", "else")}
        condition = schema["if"]
        then, otherwise = schema.get("then"), schema.get("else")
        plans = [
            (
                True,
                merge(
                    merge(base, condition) if isinstance(condition, dict) else base,
                    then if isinstance(then, dict) else {},
                ),
            ),
            (False, merge(base, otherwise if isinstance(otherwise, dict) else {})),
        ]
        if s.rng.random() < 0.5:
            plans.reverse()
        for wanted, plan in plans:
            try:
                value = self.value(plan, s.child(f"if.{wanted}"), ptr, depth, refs, hint, name, who)
            except TooLarge:
                raise
            except GenerationError:
                continue
            if self.schemas.is_valid(condition, value) == wanted:
                return value
        raise GenerationError(f"{ptr}/if", "neither the then nor the else branch can be met")

    def _typed(
        self,
        schema: dict[str, Any],
        s: Seeded,
        ptr: str,
        depth: int,
        refs: int,
        hint: Hint,
        name: str,
        who: Seeded | None,
    ) -> Any:
        types = schema.get("type")
        if types is None:
            types = _infer(schema, hint)
        types = list(dict.fromkeys(as_list(types)))
        if not types:
            raise GenerationError(ptr, "the types required together contradict each other")
        concrete = [t for t in types if t != "null"]
        if "null" in types and (not concrete or s.rng.random() < NULL_CHANCE):
            return None
        if len(concrete) > 1:
            first = s.rng.choice(concrete)
            concrete = [first] + [t for t in concrete if t != first]
        problem: GenerationError | None = None
        for kind in concrete:
            try:
                return self._of_type(kind, schema, s, ptr, depth, refs, hint, name, who)
            except TooLarge:
                raise
            except GenerationError as exc:
                problem = problem or exc
        if "null" in types:
            return None
        assert problem is not None
        raise problem

    def _of_type(
        self,
        kind: str,
        schema: dict[str, Any],
        s: Seeded,
        ptr: str,
        depth: int,
        refs: int,
        hint: Hint,
        name: str,
        who: Seeded | None,
    ) -> Any:
        if kind == "object":
            return object_value(self, schema, s, ptr, depth, refs, name)
        if kind == "array":
            return array_value(self, schema, s, ptr, depth, refs, name)
        if kind == "string":
            text = string_value(schema, s, ptr, hint, who)
            self.tally.spend_bytes(len(text) + 1, ptr)
            return text
        if kind == "integer":
            return integer_value(schema, s, ptr, hint)
        if kind == "number":
            return number_value(schema, s, ptr, hint)
        if kind == "boolean":
            return s.rng.random() < 0.5
        raise GenerationError(ptr, f"unknown type {kind!r}")


def _infer(schema: dict[str, Any], hint: Hint) -> list[str]:
    """The type a schema without `type` asks for: by its keywords, else by the name's hint."""
    for keys, kind in (
        (_OBJECT_KEYS, "object"),
        (_ARRAY_KEYS, "array"),
        (_STRING_KEYS, "string"),
        (_NUMBER_KEYS, "number"),
    ):
        if any(key in schema for key in keys):
            return [kind]
    if hint.kind in _NUMERIC_HINTS:
        return ["number" if hint.kind in {"money", "latitude", "longitude"} else "integer"]
    return ["string"]
