"""The sub-schemas of one root schema: local `$ref`/`$anchor` resolution, and whether a value
satisfies a sub-schema (its validator made once, the sub-schema known by identity)."""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote

from simulator.budget import OverBudget
from simulator.generation_errors import GenerationError
from simulator.instance_limits import MAX_DEPTH
from simulator.merging import merge

ANNOTATIONS = frozenset(
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


def constrains(schema: dict[str, Any]) -> bool:
    """Whether `schema` has a keyword that is more than an annotation."""
    return any(key not in ANNOTATIONS for key in schema)


class SubSchemas:
    """Looks into one root schema, owned (a private copy) and never changed, so that its
    sub-schemas can be known by identity."""

    def __init__(self, root: Any, validator: Any) -> None:
        self.root = root
        self.validator = validator
        self._anchors: dict[str, Any] = {}
        self._own: set[int] = set()  # ids of the root's own sub-schemas (membership only)
        self._validators: dict[int, Any] = {}
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
        """The sub-schema a local `$ref` names, and its pointer (for error messages)."""
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
        """`schema` with its `$ref` chain followed (siblings of a `$ref` merged in)."""
        for _ in range(MAX_DEPTH):
            if not (isinstance(schema, dict) and "$ref" in schema):
                return schema, pointer
            target, target_pointer = self.resolve(schema["$ref"], pointer)
            rest = {k: v for k, v in schema.items() if k != "$ref"}
            if constrains(rest):
                if not isinstance(target, dict):
                    return ({"allOf": [target, rest]} if target is not True else rest), pointer
                return merge(target, rest), target_pointer
            schema, pointer = target, target_pointer
        raise GenerationError(pointer, "$ref chain does not end")
