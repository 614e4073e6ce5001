"""JSON Schema validators, compiled once per schema, and argument errors a caller can act on.

Validators are built for the dialect a schema declares (`$schema`; 2020-12 when absent), assert
the formats of `simulator.formats`, never fetch a remote `$ref`, and are cached in a bounded LRU
keyed by the schema's canonical JSON (and compiled from that canonical text, so two spellings of
one schema behave identically whichever came first).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from fractions import Fraction
from typing import Any, NamedTuple

import referencing
import referencing.exceptions
from jsonschema import (
    Draft4Validator,
    Draft6Validator,
    Draft7Validator,
    Draft201909Validator,
    Draft202012Validator,
    ValidationError,
    validators,
)
from jsonschema.exceptions import SchemaError

from simulator.budget import paused, spend
from simulator.canonical import canonical_json, json_key
from simulator.formats import FORMAT_CHECKER
from simulator.lru import LRU
from simulator.patterns import search

MAX_LISTED_PROBLEMS = 50
_ENUM_SHOWN = 10


class FieldProblem(NamedTuple):
    """One offending field: a dotted path (`filters.tags[2]`) and what is wrong with it."""

    field: str
    message: str


def _refuse_remote(uri: str) -> Any:
    # `ref` is the attrs field of NoSuchResource, which mypy reads without attrs' plugin.
    raise referencing.exceptions.NoSuchResource(ref=uri)  # type: ignore[call-arg]


_LOCAL_ONLY = referencing.Registry(retrieve=_refuse_remote)  # type: ignore[call-arg]


# ---- keyword overrides ---------------------------------------------------------------------


def is_decimal_multiple(value: Any, step: Any) -> bool:
    """`value` is a multiple of `step` as the JSON texts mean them (19.99 of 0.01 is)."""
    try:
        return (Fraction(repr(value)) / Fraction(repr(step))).denominator == 1
    except (ValueError, ZeroDivisionError, OverflowError):
        return False


def is_float_multiple(value: Any, step: Any) -> bool:
    """jsonschema's own reading (float division for a float step), which MCP clients use."""
    if isinstance(step, float):
        try:
            quotient = value / step
            return int(quotient) == quotient
        except OverflowError:
            return (Fraction(value) / Fraction(step)).denominator == 1
        except (ValueError, ZeroDivisionError):
            return False
    try:
        return not value % step
    except ZeroDivisionError:
        return False


def _is_number(validator: Any, value: Any) -> bool:
    return validator.is_type(value, "number")


def _decimal_multiple_of(
    validator: Any, step: Any, instance: Any, schema: Any
) -> Iterator[ValidationError]:
    if _is_number(validator, instance) and not is_decimal_multiple(instance, step):
        yield ValidationError(f"is not a multiple of {step}")


def _strict_multiple_of(
    validator: Any, step: Any, instance: Any, schema: Any
) -> Iterator[ValidationError]:
    # Generated output must pass stock jsonschema too (what MCP clients validate with), whose
    # float arithmetic rejects some exact multiples: require both readings.
    if _is_number(validator, instance) and not (
        is_decimal_multiple(instance, step) and is_float_multiple(instance, step)
    ):
        yield ValidationError(f"is not a multiple of {step}")


def _required(
    validator: Any, required: Any, instance: Any, schema: Any
) -> Iterator[ValidationError]:
    if validator.is_type(instance, "object"):
        for name in required:
            if name not in instance:
                yield ValidationError(f"{name!r} is a required property", path=(name,))


def _dependent_required(
    validator: Any, dependencies: Any, instance: Any, schema: Any
) -> Iterator[ValidationError]:
    if validator.is_type(instance, "object"):
        for trigger, names in dependencies.items():
            if trigger in instance:
                for name in names:
                    if name not in instance:
                        error = ValidationError(
                            f"is required when {trigger} is present", path=(name,)
                        )
                        error.trigger = trigger  # type: ignore[attr-defined]
                        yield error


def _additional_properties(
    validator: Any, allowed: Any, instance: Any, schema: Any
) -> Iterator[ValidationError]:
    if not validator.is_type(instance, "object"):
        return
    properties = schema.get("properties", {})
    patterns = schema.get("patternProperties", {})
    extras = sorted(
        name
        for name in instance
        if name not in properties and not any(search(p, name) for p in patterns)
    )
    if validator.is_type(allowed, "object"):
        for name in extras:
            yield from validator.descend(instance[name], allowed, path=name)
    elif allowed is False:
        for name in extras:
            yield ValidationError("is not an allowed property", path=(name,))


# `pattern` and `patternProperties` as jsonschema has them, matched within a time bound
# (simulator/patterns.py): tool schemas are the tenants', so their patterns are untrusted.
def _pattern(validator: Any, pattern: str, instance: Any, schema: Any) -> Iterator[ValidationError]:
    if validator.is_type(instance, "string") and not search(pattern, instance):
        yield ValidationError(f"does not match {pattern!r}")


def _pattern_properties(
    validator: Any, patterns: Any, instance: Any, schema: Any
) -> Iterator[ValidationError]:
    if not validator.is_type(instance, "object"):
        return
    for pattern, subschema in patterns.items():
        for name, value in instance.items():
            if search(pattern, name):
                yield from validator.descend(value, subschema, path=name, schema_path=pattern)


# `uniqueItems` and `enum` as jsonschema has them compare every pair of values when the
# values cannot be sorted (3,000 small objects: 4.5 million comparisons, seconds of a blocked
# loop). A set of their `json_key`s makes both linear in the size of the values.
def _unique_items(
    validator: Any, unique: Any, instance: Any, schema: Any
) -> Iterator[ValidationError]:
    if unique and validator.is_type(instance, "array"):
        spend(len(instance))
        seen: set[Any] = set()
        for item in instance:
            key = json_key(item)
            if key in seen:
                yield ValidationError("has non-unique elements")
                return
            seen.add(key)


ENUM_VALUES_PER_STEP = 256
# enum list -> (the list, its values' keys); holding the list keeps its id from being reused.
_ENUM_KEYS: LRU[int, tuple[Any, frozenset[Any]]] = LRU(1024)


def _enum(validator: Any, allowed: Any, instance: Any, schema: Any) -> Iterator[ValidationError]:
    # Each evaluation pays for a share of building the set, cached or not: a count that
    # depended on what earlier calls cached would not be deterministic, and an `enum` the
    # generator merges is a new list every time (building it is then the work being paid).
    spend(len(allowed) // ENUM_VALUES_PER_STEP)
    held = _ENUM_KEYS.get(id(allowed))
    if held is None or held[0] is not allowed:
        held = (allowed, frozenset(json_key(value) for value in allowed))
        _ENUM_KEYS.put(id(allowed), held)
    if json_key(instance) not in held[1]:
        yield ValidationError("is not one of the allowed values")


def _counted(keyword: Any) -> Any:
    """`keyword`, spending one step of the current budget each time it is evaluated, and more
    for the errors it makes."""

    def counted(validator: Any, value: Any, instance: Any, schema: Any) -> Any:
        spend()
        errors = keyword(validator, value, instance, schema)
        if errors is None:
            return None
        # Made at once (no extra generator frame on every keyword, the hot path): most
        # keywords find nothing wrong.
        found = list(errors)
        for error in found:
            if not isinstance(error.validator, str):  # made here, not passed up from a child
                spend(len(error.message) // MESSAGE_BYTES_PER_STEP)
        return found

    return counted


# jsonschema writes the value into most messages (`{instance!r} is not of type ...`): an
# `anyOf` of 1,000 branches against a 200 KB argument built 200 MB of messages in 3 s.
MESSAGE_BYTES_PER_STEP = 16


_OVERRIDES = {
    "required": _required,
    "dependentRequired": _dependent_required,
    "additionalProperties": _additional_properties,
    "pattern": _pattern,
    "patternProperties": _pattern_properties,
    "uniqueItems": _unique_items,
    "enum": _enum,
}
_classes: dict[tuple[type, bool], Any] = {}


_DIALECTS = {
    cls.META_SCHEMA["$schema"].rstrip("#"): cls
    for cls in (
        Draft4Validator,
        Draft6Validator,
        Draft7Validator,
        Draft201909Validator,
        Draft202012Validator,
    )
}


def _dialect(schema: Any) -> Any:
    """jsonschema's class for the dialect `schema` declares (2020-12 when none)."""
    dialect = schema.get("$schema") if isinstance(schema, dict) else None
    return (
        _DIALECTS.get(dialect.rstrip("#"), Draft202012Validator)
        if isinstance(dialect, str)
        else Draft202012Validator
    )


def _validator_class(schema: Any, strict_multiples: bool) -> Any:
    base = _dialect(schema)
    key = (base, strict_multiples)
    cls = _classes.get(key)
    if cls is None:
        keywords = dict(_OVERRIDES)
        if "dependentRequired" not in base.VALIDATORS:
            del keywords["dependentRequired"]
        keywords["multipleOf"] = _strict_multiple_of if strict_multiples else _decimal_multiple_of
        # Every keyword spends a step (simulator/budget.py): what a tenant's schema may cost
        # on a tenant's value is counted, whatever the keywords combine into.
        counted = {name: _counted(fn) for name, fn in {**base.VALIDATORS, **keywords}.items()}
        cls = validators.extend(base, counted)
        _classes[key] = cls
    return cls


class Compiled:
    """A schema's validator, or why there is none."""

    __slots__ = ("problem", "validator")

    def __init__(self, validator: Any, problem: str | None) -> None:
        self.validator, self.problem = validator, problem


_cache: LRU[tuple[bool, str], Compiled] = LRU(512)


def compile_schema(schema: Any, *, output: bool = False) -> Compiled:
    """The cached validator of `schema`; `output=True` for generated results (stricter)."""
    text = canonical_json(schema)
    key = (output, text)
    compiled = _cache.get(key)
    if compiled is None:
        with paused():  # cached: counting it would make the first call cost more than the next
            compiled = _compile(json.loads(text), output)
        _cache.put(key, compiled)
    return compiled


def _compile(schema: Any, output: bool) -> Compiled:
    if not isinstance(schema, dict | bool):
        return Compiled(None, "is not a JSON Schema (must be an object)")
    cls = _validator_class(schema, output)
    try:
        _check_schema(cls, _dialect(schema), schema)
    except SchemaError as exc:
        where = "/".join(str(p) for p in exc.absolute_path)
        return Compiled(
            None,
            f"is not a valid JSON Schema ({exc.validator!r} rule broken"
            f"{' at /' + where if where else ''})",
        )
    if _uses(schema, "unevaluatedProperties") and _uses(schema, "patternProperties"):
        # jsonschema matches patternProperties for unevaluatedProperties with `re` itself,
        # which no time bound reaches (simulator/patterns.py).
        return Compiled(
            None,
            "combines unevaluatedProperties with patternProperties, which "
            "the simulator does not check",
        )
    if _declares_dialect_below_root(schema):
        return Compiled(
            None, "declares a $schema below its root, which the simulator does not check"
        )
    validator = cls(without_dialect(schema), format_checker=FORMAT_CHECKER, registry=_LOCAL_ONLY)
    return Compiled(validator, None)


# Why a schema's `$schema` is kept out of its validator: jsonschema picks the class for every
# (sub)schema it descends into by that schema's `$schema`, so a `$ref` to "#" or a nested
# "$schema" would switch to jsonschema's own classes, with `re` patterns that no time bound
# reaches and keywords that spend no steps. The class is chosen once, from the root.
def without_dialect(schema: Any) -> Any:
    """`schema` without its root `$schema` (its validator's class already stands for it)."""
    if isinstance(schema, dict) and "$schema" in schema:
        return {key: value for key, value in schema.items() if key != "$schema"}
    return schema


def _declares_dialect_below_root(schema: Any) -> bool:
    """Whether any object under the root (data included: a `$ref` may point anywhere) has a
    `$schema` that jsonschema would switch classes for."""
    stack = list(schema.values()) if isinstance(schema, dict) else []
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            dialect = node.get("$schema")
            if isinstance(dialect, str):
                try:
                    if validators.validator_for({"$schema": dialect}, default=None) is not None:
                        return True
                except ValueError:  # not even a URI: jsonschema would fail on it, not switch
                    pass
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return False


# Meta-schemas in one document: with their id and `$schema` removed, every `$ref` in them
# stays in the copy and is checked with this module's keywords.
_ONE_DOCUMENT = (Draft4Validator, Draft6Validator, Draft7Validator)
_own_meta: dict[Any, Any] = {}


def _check_schema(cls: Any, base: Any, schema: Any) -> None:
    """`base.check_schema(schema)`, with this module's `uniqueItems` where it matters: draft-04's
    meta-schema asks `enum` values to be unique, and jsonschema compares every pair of them
    (3,000 objects: seconds). The later meta-schemas span documents (their `$ref`s lead to
    jsonschema's own copies) and ask uniqueness only of strings, which it sorts."""
    if base not in _ONE_DOCUMENT:
        base.check_schema(schema)
        return
    meta = _own_meta.get(base)
    if meta is None:
        meta = {k: v for k, v in base.META_SCHEMA.items() if k not in ("$schema", "$id", "id")}
        _own_meta[base] = meta
    checker = cls(meta, format_checker=base.FORMAT_CHECKER)
    for error in checker.iter_errors(schema):
        raise SchemaError.create_from(error)


def _uses(schema: Any, keyword: str) -> bool:
    """Whether `keyword` appears anywhere in `schema` (as a key of any object in it)."""
    stack = [schema]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            if keyword in node:
                return True
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return False


# ---- argument errors -----------------------------------------------------------------------

_ARTICLE = {
    "object": "an object",
    "array": "an array",
    "integer": "an integer",
    "string": "a string",
    "number": "a number",
    "boolean": "a boolean",
    "null": "null",
}


def format_path(parts: Sequence[Any], root: str = "(arguments)") -> str:
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        elif (
            isinstance(part, str)
            and part.replace("_", "a").replace("-", "a").isalnum()
            and part.isascii()
        ):
            out += f".{part}" if out else part
        else:
            out += f"[{json.dumps(part)}]"
    return out or root


def _brief(value: Any, limit: int = 40) -> str:
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _types(expected: Any) -> str:
    names = expected if isinstance(expected, list) else [expected]
    return " or ".join(_ARTICLE.get(n, str(n)) for n in names)


def _plural(count: Any, word: str) -> str:
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


def describe(error: ValidationError) -> str:
    """What is wrong, from the rule alone: a value is never echoed."""
    keyword = error.validator
    rule = error.validator_value
    match keyword:
        case "required":
            return "is required"
        case "dependentRequired":
            return error.message
        case "additionalProperties" | "unevaluatedProperties":
            return (
                "is not an allowed property"
                if error.path and error.message.startswith("is not")
                else "has properties that are not allowed"
            )
        case "type":
            return f"must be {_types(rule)}"
        case "enum":
            shown = ", ".join(_brief(v) for v in rule[:_ENUM_SHOWN])
            return f"must be one of {shown}{', …' if len(rule) > _ENUM_SHOWN else ''}"
        case "const":
            return f"must be {_brief(rule)}"
        case "minimum":
            return f"must be at least {rule}"
        case "maximum":
            return f"must be at most {rule}"
        case "exclusiveMinimum":
            return f"must be greater than {rule}"
        case "exclusiveMaximum":
            return f"must be less than {rule}"
        case "multipleOf":
            return f"must be a multiple of {rule}"
        case "minLength":
            return f"must be at least {_plural(rule, 'character')} long"
        case "maxLength":
            return f"must be at most {_plural(rule, 'character')} long"
        case "pattern":
            shown = rule if len(rule) <= 80 else rule[:79] + "…"
            return f"must match the pattern {shown}"
        case "format":
            return f"must be a valid {rule}"
        case "minItems":
            return f"must have at least {_plural(rule, 'item')}"
        case "maxItems":
            return f"must have at most {_plural(rule, 'item')}"
        case "uniqueItems":
            return "must not contain duplicate items"
        case "items" | "unevaluatedItems" if rule is False or error.validator_value is False:
            count = (
                len(error.schema.get("prefixItems", [])) if isinstance(error.schema, dict) else 0
            )
            return f"must have at most {_plural(count, 'item')}"
        case "minProperties":
            return f"must have at least {_plural(rule, 'property')}".replace(
                "propertys", "properties"
            )
        case "maxProperties":
            return f"must have at most {_plural(rule, 'property')}".replace(
                "propertys", "properties"
            )
        case "contains" | "minContains" | "maxContains":
            return "does not contain the required matching items"
        case "propertyNames":
            return f"has a property name that is not allowed ({_brief(error.instance)})"
        case "not":
            return "must not match the disallowed schema"
        case "anyOf" | "oneOf":
            return _alternatives(error)
        case None | False:
            return "is not allowed"
    return f"does not satisfy {keyword}"


def _alternatives(error: ValidationError) -> str:
    if error.validator == "oneOf" and not error.context:
        return "matches more than one of the allowed forms"
    context = list(error.context or ())
    if context and all(e.validator == "type" and not e.relative_path for e in context):
        expected: list[str] = []
        for sub in context:
            for name in (
                sub.validator_value
                if isinstance(sub.validator_value, list)
                else [sub.validator_value]
            ):
                if name not in expected:
                    expected.append(name)
        return f"must be {_types(expected)}"
    return "does not match any of the allowed forms"


def _path_key(problem_path: Sequence[Any]) -> tuple[tuple[int, Any], ...]:
    return tuple((0, p) if isinstance(p, int) else (1, str(p)) for p in problem_path)


def argument_problems(validator: Any, arguments: Any) -> list[FieldProblem]:
    """Every offending field, ordered by path; [] when the arguments are valid."""
    found: dict[tuple[tuple[tuple[int, Any], ...], str], FieldProblem] = {}
    for error in validator.iter_errors(arguments):
        path = list(error.absolute_path)
        problem = FieldProblem(format_path(path), describe(error))
        found.setdefault((_path_key(path), problem.message), problem)
    return [found[key] for key in sorted(found)]


def invalid_arguments_text(tool_name: str, problems: Sequence[FieldProblem]) -> str:
    shown = "; ".join(f"{p.field}: {p.message}" for p in problems[:MAX_LISTED_PROBLEMS])
    more = len(problems) - MAX_LISTED_PROBLEMS
    if more > 0:
        shown += f"; … and {more} more"
    return f"Invalid arguments for tool {json.dumps(tool_name, ensure_ascii=False)}: {shown}"
