"""Objects for a schema: which properties (required, some optional ones, `dependentRequired`,
within min/maxProperties), extra keys from patternProperties or propertyNames, and the schema
of each property."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from simulator import hints, regex
from simulator import words as W
from simulator.canonical import Seeded
from simulator.generation_errors import GenerationError, TooLarge
from simulator.hints import NO_HINT
from simulator.instance_limits import MAX_ITEMS, shallow
from simulator.merging import merge
from simulator.patterns import search
from simulator.subschemas import constrains

if TYPE_CHECKING:
    from simulator.generator import Generator

OPTIONAL_CHANCE = 0.8


def object_value(
    walk: Generator, schema: dict[str, Any], s: Seeded, ptr: str, depth: int, refs: int, name: str
) -> dict[str, Any]:
    """An object for `schema`, its values made by `walk` (the caller validates the instance)."""
    only_required = shallow(depth, refs)
    properties = schema.get("properties") or {}
    required = [k for k in schema.get("required") or () if isinstance(k, str)]
    extra_allowed = schema.get("additionalProperties", True) is not False or bool(
        schema.get("patternProperties")
    )
    min_count = schema.get("minProperties", 0)
    max_count = schema.get("maxProperties")
    if min_count > MAX_ITEMS:
        raise TooLarge(ptr, f"minProperties above {MAX_ITEMS} is more than the simulator generates")
    chosen = [
        k
        for k in properties
        if k in required
        or (
            not only_required
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
        key = _extra_key(walk, schema, s.child(f"+{index}"), ptr, depth, refs, index)
        index += 1
        if key not in chosen:
            chosen.append(key)
    who = s.child("persona")
    out: dict[str, Any] = {}
    for key in chosen:
        sub = _property_schema(schema, key)
        sub_ptr = f"{ptr}/properties/{_escape(key)}"
        walk.tally.spend_bytes(len(key) + 3, sub_ptr)  # "key":
        try:
            out[key] = walk.value(
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


def _escape(key: str) -> str:
    return key.replace("~", "~0").replace("/", "~1")


def _property_schema(schema: dict[str, Any], key: str) -> Any:
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


def _extra_key(
    walk: Generator, schema: dict[str, Any], s: Seeded, ptr: str, depth: int, refs: int, index: int
) -> str:
    names = schema.get("propertyNames")
    patterns = list(schema.get("patternProperties") or {})
    if schema.get("additionalProperties", True) is False and patterns:
        key = regex.generate(patterns[index % len(patterns)], s)
        if key is not None:
            return key
    if isinstance(names, dict) and constrains(names):
        value = walk.value(
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
