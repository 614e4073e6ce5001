"""Instances of a JSON Schema, from a seeded stream: valid, deterministic and plausible.

Why not an existing generator (measured here on 2026-11, Python 3.11, 2 cores; the 10-property
"contact" schema and 16 keyword-focused schemas, 50 seeds each, validity checked with
Draft202012Validator and its format checker):

- jsf 0.11.2: 617 us per instance for the contact schema (403 us for a 3-property search
  result), valid 452/800 on the keyword schemas: it raises on `exclusiveMinimum` +
  `exclusiveMaximum` and on `prefixItems`, ignores `allOf`, overlapping `oneOf`, lookaheads,
  `minLength` together with `pattern`, and `minProperties`. Seeding works only through the
  process-global `random.seed()` + `Faker.seed()` (shared state across requests and threads),
  and names are lorem ipsum (`firstName: "odit reprehenderit ipsum"`).
- hypothesis-jsonschema 0.23.1 (with hypothesis 6.170): raises
  `AttributeError: 'many' object has no attribute 'more'` on every schema with an object
  (incompatible with current hypothesis), cannot resolve recursive `$ref`; where it works one
  seeded draw costs 0.9-4.3 ms (plus 1-18 ms to build the strategy) and the single draw is the
  shrunk minimum (the same `""`, `null`, `12` for 30 different seeds in 6 of 9 schemas).
- Regex to string, 15 patterns x 20 seeds: rstr 3.2.2 280/300 matching (seedable per
  instance); exrex 0.12.0 280/300, global `random` only; hypothesis `from_regex` 280/300,
  about 200 times slower. None honours minLength/maxLength; all missed the lookahead pattern
  `^(?=.*\\d)[a-z\\d]{8}$`. Pattern strings therefore come from rstr steered through the
  `random.Random` it draws from (simulator/regex.py), which adds the length bounds and the
  lookahead case.

So this module is our own: valid 800/800 on the keyword schemas and on thousands of random
schemas in tests/test_simulator_properties.py; a private `random.Random` per node derived from
the call's seed; plausible values by property name (`simulator.hints`). Whole calls:
bench/simulator_bench.py. The walk is here; strings (simulator/strings.py), numbers
(simulator/numeric.py) and the merging of schemas that must hold together
(simulator/merging.py) have their own modules.

The generator aims at validity, and the engine proves it: every instance is validated
against the output schema before it is returned, other attempts use derived seeds, and a
schema no attempt satisfies is reported as a `GenerationError` naming the schema location.

Values of an object's properties come from streams derived from the property name alone, so
adding a property to a schema does not change the values of the others, and key order only
changes key order.
"""

from __future__ import annotations

import json
import threading
from typing import Any
from urllib.parse import unquote

from simulator import hints, regex
from simulator import words as W
from simulator.budget import OverBudget, spend
from simulator.canonical import Seeded, canonical_json
from simulator.generation_errors import GenerationError, TooLarge, over_budget
from simulator.hints import NO_HINT, Hint
from simulator.merging import PATTERNS, as_list, merge
from simulator.numeric import integer_value, number_value
from simulator.patterns import search
from simulator.strings import string_value

__all__ = ["GenerationError", "Generator", "TooLarge", "merge", "over_budget"]

SHALLOW_DEPTH = 8  # deeper than this, only required properties and minimal arrays
SHALLOW_REFS = 3  # ...and likewise after this many `$ref` expansions on one path
MAX_DEPTH = 64  # a path longer than this is a recursion that never ends
# What one answer may cost: a schema asking for more is reported, not served slowly.
MAX_NODES = 10_000  # values generated for one instance
MAX_ITEMS = 1_000  # minItems / minProperties (minLength: simulator/strings.py)
# ...and the answer's size (simulator.engine.DEFAULT_MAX_RESULT_BYTES unless configured),
# counted as values are made so that a too large schema stops early, with the same verdict
# every time: the count depends on the generated values alone.
NULL_CHANCE = 0.15
OPTIONAL_CHANCE = 0.8
ITEM_ATTEMPTS = 12  # tries for a distinct item under uniqueItems
NOT_ATTEMPTS = 6

_ANNOTATIONS = frozenset(
    {
        "title",
        "description",
        "$comment",
        "examples",
        "default",
        "deprecated",
        "readOnly",
        "writeOnly",
        "$id",
        "$schema",
        "$anchor",
        "$dynamicAnchor",
        "$defs",
        "definitions",
        "contentEncoding",
        "contentMediaType",
        "contentSchema",
        "$vocabulary",
    }
)
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


def _escape(key: str) -> str:
    return key.replace("~", "~0").replace("/", "~1")


def _constraints(schema: dict[str, Any]) -> bool:
    return any(key not in _ANNOTATIONS for key in schema)


def _copy(value: Any) -> Any:
    return json.loads(json.dumps(value)) if isinstance(value, dict | list) else value


class Generator:
    """Generates instances of one root schema. The schema is owned (a private copy) and never
    changed, so its sub-schemas can be looked up by identity."""

    def __init__(self, root: Any, validator: Any) -> None:
        self.root = root
        self.validator = validator
        self._anchors: dict[str, Any] = {}
        self._own: set[int] = set()  # ids of the root's own sub-schemas (membership only)
        self._validators: dict[int, Any] = {}
        self._local = threading.local()  # per-thread node budget of the current generate()
        self._index(root)

    def _index(self, node: Any) -> None:
        stack = [node]
        while stack:
            item = stack.pop()
            if isinstance(item, dict):
                self._own.add(id(item))
                anchor = item.get("$anchor")
                if isinstance(anchor, str):
                    self._anchors.setdefault(anchor, item)
                stack.extend(item.values())
            elif isinstance(item, list):
                stack.extend(item)

    # ---- public --------------------------------------------------------------------------

    def generate(self, seeded: Seeded, max_bytes: int | None = None) -> Any:
        """One instance (not yet validated: the caller checks it against the schema) whose
        JSON, written twice as a CallToolResult does, fits in `max_bytes`."""
        self._local.nodes = 0
        self._local.bytes = 0
        self._local.max_bytes = max_bytes
        return self.value(self.root, seeded, "", 0, 0, NO_HINT, "", None)

    def _spend_bytes(self, size: int, ptr: str) -> None:
        """Count `size` more bytes of the instance's JSON (a lower bound of what is written)."""
        local = self._local
        local.bytes += size
        # Twice: a result carries its structuredContent and the same JSON as text.
        if local.max_bytes is not None and 2 * local.bytes > local.max_bytes:
            raise TooLarge(ptr, over_budget(local.max_bytes))

    # ---- helpers -------------------------------------------------------------------------

    def is_valid(self, schema: Any, value: Any) -> bool:
        """`value` satisfies `schema` (a sub-schema, with $refs resolved against the root)."""
        if schema is True or schema == {}:
            return True
        if schema is False:
            return False
        key = id(schema)
        validator = self._validators.get(key) if key in self._own else None
        if validator is None:
            validator = self.validator.evolve(schema=schema)
            if key in self._own:
                self._validators[key] = validator
        try:
            return bool(validator.is_valid(value))
        except OverBudget:  # the call's budget is spent: nothing else may try again
            raise
        except Exception:  # an unresolvable $ref, a regex the engine rejects: not a match
            return False

    def resolve(self, ref: Any, pointer: str) -> tuple[Any, str]:
        if not isinstance(ref, str) or not ref.startswith("#"):
            raise GenerationError(pointer, f"$ref {ref!r} is not a local reference (#...)")
        fragment = unquote(ref[1:])
        if fragment and not fragment.startswith("/"):
            if fragment in self._anchors:
                return self._anchors[fragment], f"/$anchor:{fragment}"
            raise GenerationError(pointer, f"$ref {ref!r}: no such $anchor")
        node = self.root
        for part in fragment.split("/")[1:]:
            part = part.replace("~1", "/").replace("~0", "~")
            if isinstance(node, dict) and part in node:
                node = node[part]
            elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
                node = node[int(part)]
            else:
                raise GenerationError(pointer, f"$ref {ref!r} points at nothing")
        return node, fragment

    def deref(self, schema: Any, pointer: str) -> tuple[Any, str]:
        for _ in range(MAX_DEPTH):
            if not (isinstance(schema, dict) and "$ref" in schema):
                return schema, pointer
            target, target_pointer = self.resolve(schema["$ref"], pointer)
            rest = {k: v for k, v in schema.items() if k != "$ref"}
            if _constraints(rest):
                if not isinstance(target, dict):
                    return ({"allOf": [target, rest]} if target is not True else rest), pointer
                return merge(target, rest), target_pointer
            schema, pointer = target, target_pointer
        raise GenerationError(pointer, "$ref chain does not end")

    # ---- the walk ------------------------------------------------------------------------

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
        if depth > MAX_DEPTH:
            raise GenerationError(ptr, "nested too deeply (a recursive $ref that never ends?)")
        self._local.nodes += 1
        if self._local.nodes > MAX_NODES:
            raise TooLarge(ptr, f"asks for more than {MAX_NODES} values in one result")
        self._spend_bytes(1, ptr)  # a separator, a digit, a bracket: at least one byte
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
            schema, ptr = self.deref(schema, ptr)
            return self.value(schema, s, ptr, depth, refs + 1, hint, name, who)
        if "allOf" in schema:
            merged = {k: v for k, v in schema.items() if k != "allOf"}
            for index, member in enumerate(schema["allOf"]):
                member, _ = self.deref(member, f"{ptr}/allOf/{index}")
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
                if not self.is_valid(schema["not"], candidate):
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
            self._spend_bytes(len(json.dumps(value, ensure_ascii=False)), ptr)
        return _copy(value)

    def _enum(self, schema: dict[str, Any], s: Seeded, ptr: str) -> Any:
        values = list(schema["enum"])
        if not values:
            raise GenerationError(ptr, "enum/const leave no allowed value")
        rest = {k: v for k, v in schema.items() if k != "enum"}
        if not _constraints(rest):
            return self._constant(s.rng.choice(values), ptr)
        s.rng.shuffle(values)
        for value in values:
            if self.is_valid(rest, value):
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
            branch, branch_ptr = self.deref(branches[index], branch_ptr)
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
                if sum(1 for b in branches if self.is_valid(b, value)) == 1:
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
            if self.is_valid(condition, value) == wanted:
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
            return self._object(schema, s, ptr, depth, refs, name)
        if kind == "array":
            return self._array(schema, s, ptr, depth, refs, name)
        if kind == "string":
            text = string_value(schema, s, ptr, hint, who)
            self._spend_bytes(len(text) + 1, ptr)
            return text
        if kind == "integer":
            return integer_value(schema, s, ptr, hint)
        if kind == "number":
            return number_value(schema, s, ptr, hint)
        if kind == "boolean":
            return s.rng.random() < 0.5
        raise GenerationError(ptr, f"unknown type {kind!r}")

    # ---- objects ---------------------------------------------------------------------------

    def _property_schema(self, schema: dict[str, Any], key: str) -> Any:
        found = []
        properties = schema.get("properties") or {}
        if key in properties:
            found.append(properties[key])
        for pattern, sub in (schema.get("patternProperties") or {}).items():
            if search(pattern, key):
                found.append(sub)
        if not found:
            extra = schema.get("additionalProperties", True)
            found.append({} if extra is True else extra)
        return found[0] if len(found) == 1 else {"allOf": found}

    def _object(
        self, schema: dict[str, Any], s: Seeded, ptr: str, depth: int, refs: int, name: str
    ) -> dict[str, Any]:
        shallow = depth > SHALLOW_DEPTH or refs >= SHALLOW_REFS
        properties = schema.get("properties") or {}
        required = [k for k in schema.get("required") or () if isinstance(k, str)]
        extra_allowed = schema.get("additionalProperties", True) is not False or bool(
            schema.get("patternProperties")
        )
        min_count = schema.get("minProperties", 0)
        max_count = schema.get("maxProperties")
        if min_count > MAX_ITEMS:
            raise TooLarge(
                ptr, f"minProperties above {MAX_ITEMS} is more than the simulator generates"
            )
        chosen = [
            k
            for k in properties
            if k in required
            or (
                not shallow
                and properties[k] is not False
                and s.child(f"?{k}").unit() < OPTIONAL_CHANCE
            )
        ]
        chosen += [k for k in required if k not in chosen]
        dependent = schema.get("dependentRequired") or {}
        grew = True
        while grew:
            grew = False
            for trigger, names in dependent.items():
                if trigger in chosen:
                    for dep in names:
                        if dep not in chosen:
                            chosen.append(dep)
                            grew = True
        if max_count is not None and len(chosen) > max_count:
            keep = [k for k in chosen if k in required]
            chosen = keep + [k for k in chosen if k not in keep][: max(0, max_count - len(keep))]
        for key in properties:
            if len(chosen) >= min_count:
                break
            if key not in chosen and properties[key] is not False:
                chosen.append(key)
        index = 0
        while len(chosen) < min_count and extra_allowed and index < min_count + 16:
            key = self._extra_key(schema, s.child(f"+{index}"), ptr, depth, refs, index)
            index += 1
            if key not in chosen:
                chosen.append(key)
        who = s.child("persona")
        out: dict[str, Any] = {}
        for key in chosen:
            sub = self._property_schema(schema, key)
            sub_ptr = f"{ptr}/properties/{_escape(key)}"
            self._spend_bytes(len(key) + 3, sub_ptr)  # "key":
            try:
                out[key] = self.value(
                    sub,
                    s.child(key),
                    sub_ptr,
                    depth,
                    refs,
                    hints.hint_for(key, name or None),
                    key,
                    who,
                )
            except TooLarge:
                raise
            except GenerationError:
                if key in required or len(chosen) <= min_count:
                    raise
        return out

    def _extra_key(
        self, schema: dict[str, Any], s: Seeded, ptr: str, depth: int, refs: int, index: int
    ) -> str:
        names = schema.get("propertyNames")
        patterns = list(schema.get("patternProperties") or {})
        if schema.get("additionalProperties", True) is False and patterns:
            key = regex.generate(patterns[index % len(patterns)], s)
            if key is not None:
                return key
        if isinstance(names, dict) and _constraints(names):
            value = self.value(
                merge({"type": "string"}, names),
                s,
                f"{ptr}/propertyNames",
                depth,
                refs,
                NO_HINT,
                "",
                None,
            )
            if isinstance(value, str):
                return value
        return f"{s.rng.choice(W.WORDS)}_{index + 1}"

    # ---- arrays ----------------------------------------------------------------------------

    def _array(
        self, schema: dict[str, Any], s: Seeded, ptr: str, depth: int, refs: int, name: str
    ) -> list[Any]:
        shallow = depth > SHALLOW_DEPTH or refs >= SHALLOW_REFS
        prefix = schema.get("prefixItems") or []
        items = schema.get("items", True)
        if isinstance(items, list):  # draft-07 and older: tuple validation
            prefix, items = items, schema.get("additionalItems", True)
        min_count = schema.get("minItems", 0)
        max_count = schema.get("maxItems")
        if items is False:
            max_count = len(prefix) if max_count is None else min(max_count, len(prefix))
        contains = schema.get("contains")
        min_contains = schema.get("minContains", 1) if contains is not None else 0
        low = max(min_count, min_contains)
        if shallow:
            count = low
        else:
            natural = max(low, len(prefix) if items is False else max(1, len(prefix)))
            high = natural + (0 if items is False and prefix else 2)
            # Never above the cap unless the schema itself asks for more: whether a schema
            # can be served must not depend on the call's seed.
            high = min(high, max(natural, MAX_ITEMS))
            if max_count is not None:
                high = min(high, max_count)
                natural = min(natural, high)
            count = s.rng.randint(natural, max(natural, high))
        if max_count is not None and count > max_count:
            raise GenerationError(ptr, "minItems/minContains exceed maxItems")
        if count > MAX_ITEMS:
            raise TooLarge(
                ptr,
                f"more than {MAX_ITEMS} items in one array is more than the simulator generates",
            )
        unique = schema.get("uniqueItems") is True
        item_name = hints.singular(name) if name else ""
        item_hint = hints.item_hint(name) if name else NO_HINT
        out: list[Any] = []
        seen: set[str] = set()
        contained = 0
        for index in range(count):
            sub: Any = prefix[index] if index < len(prefix) else items
            sub_ptr = f"{ptr}/prefixItems/{index}" if index < len(prefix) else f"{ptr}/items"
            if contains is not None and index >= len(prefix) and contained < min_contains:
                sub = merge(
                    sub if isinstance(sub, dict) else {},
                    contains if isinstance(contains, dict) else {},
                )
                contained += 1
            value = None
            for attempt in range(ITEM_ATTEMPTS if unique else 1):
                value = self.value(
                    sub,
                    s.child(index if not attempt else f"{index}.{attempt}"),
                    sub_ptr,
                    depth,
                    refs,
                    item_hint,
                    item_name,
                    None,
                )
                if not unique or canonical_json(value) not in seen:
                    break
            else:
                if index >= min_count:
                    break
                raise GenerationError(ptr, "uniqueItems: not enough distinct items")
            if unique:
                seen.add(canonical_json(value))
            out.append(value)
        return out

    # ---- strings ---------------------------------------------------------------------------


def _infer(schema: dict[str, Any], hint: Hint) -> list[str]:
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
