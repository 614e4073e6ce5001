"""Merging schemas that must hold together (`allOf`, a `$ref` with siblings, a branch and its
base) into one guide for generation; the final validation against the real schema judges."""

from __future__ import annotations

import math
from fractions import Fraction
from typing import Any

from simulator.canonical import json_equal
from simulator.numeric import fraction

MAX_CROSS = 64  # anyOf x anyOf combinations kept when merging
PATTERNS = "$simulator:patterns"  # extra patterns collected by merging allOf members


def as_list(types: Any) -> list[str]:
    """A `type` keyword as a list of type names."""
    return [types] if isinstance(types, str) else list(types)


def merge(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """A schema that asks for both `a` and `b` (a guide for generation; the final validation
    against the real schema stays the judge of what is valid)."""
    out = dict(a)
    for key, new in b.items():
        if key not in out:
            out[key] = new
            continue
        old = out[key]
        if old == new and type(old) is type(new):
            continue
        if key == "type":
            left, right = as_list(old), as_list(new)
            both = [t for t in left if t in right]
            if ("integer" in left and "number" in right) or (
                "number" in left and "integer" in right
            ):
                both.append("integer")
            out[key] = list(dict.fromkeys(both))
        elif key in ("properties", "patternProperties"):
            combined = dict(old)
            for name, sub in new.items():
                combined[name] = {"allOf": [combined[name], sub]} if name in combined else sub
            out[key] = combined
        elif key == "required":
            out[key] = list(old) + [name for name in new if name not in old]
        elif key in ("minimum", "minLength", "minItems", "minProperties", "minContains") or (
            key == "exclusiveMinimum" and not isinstance(old, bool)
        ):
            out[key] = max(old, new)
        elif key in ("maximum", "maxLength", "maxItems", "maxProperties", "maxContains") or (
            key == "exclusiveMaximum" and not isinstance(old, bool)
        ):
            out[key] = min(old, new)
        elif key == "enum":
            out[key] = [v for v in old if any(json_equal(v, w) for w in new)]
        elif key == "const":
            if not json_equal(old, new):
                out["enum"] = []
        elif key == "multipleOf":
            x, y = fraction(old), fraction(new)
            lcm = Fraction(
                math.lcm(x.numerator, y.numerator), math.gcd(x.denominator, y.denominator)
            )
            out[key] = int(lcm) if lcm.denominator == 1 else float(lcm)
        elif key == "pattern":
            out[PATTERNS] = [*out.get(PATTERNS, []), new]
        elif key == PATTERNS:
            out[key] = [*old, *new]
        elif key == "uniqueItems":
            out[key] = bool(old or new)
        elif key in (
            "items",
            "additionalProperties",
            "additionalItems",
            "contains",
            "propertyNames",
            "unevaluatedProperties",
            "unevaluatedItems",
        ):
            if isinstance(old, list) or isinstance(new, list):  # draft-07 tuple `items`
                out[key] = old
            elif old is False or new is False:
                out[key] = False
            elif old is True:
                out[key] = new
            elif new is not True:
                out[key] = {"allOf": [old, new]}
        elif key == "prefixItems":
            longest = max(len(old), len(new))
            out[key] = [
                {"allOf": [old[i], new[i]]}
                if i < len(old) and i < len(new)
                else (old[i] if i < len(old) else new[i])
                for i in range(longest)
            ]
        elif key == "allOf":
            out[key] = [*old, *new]
        elif key in ("anyOf", "oneOf"):
            out[key] = [{"allOf": [x, y]} for x in old for y in new][:MAX_CROSS]
        elif key == "not":
            out[key] = {"anyOf": [old, new]}
        elif key == "$ref":
            out["allOf"] = [*out.get("allOf", []), {"$ref": new}]
        elif key == "dependentRequired":
            combined = {k: list(v) for k, v in old.items()}
            for name, deps in new.items():
                combined[name] = combined.get(name, []) + [
                    d for d in deps if d not in combined.get(name, [])
                ]
            out[key] = combined
        # Everything else (format, annotations, if/then/else): the first one guides, the
        # final validation judges.
    return out
