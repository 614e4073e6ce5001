"""Arrays for a schema: how many items (min/maxItems, `contains`), the schema of each item
(prefixItems, draft-07 tuples), and distinct items under uniqueItems."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from simulator import hints
from simulator.canonical import Seeded, canonical_json
from simulator.generation_errors import GenerationError, TooLarge
from simulator.hints import NO_HINT
from simulator.instance_limits import MAX_ITEMS, shallow
from simulator.merging import merge

if TYPE_CHECKING:
    from simulator.generator import Generator

ITEM_ATTEMPTS = 12  # tries for a distinct item under uniqueItems


def array_value(
    walk: Generator, schema: dict[str, Any], s: Seeded, ptr: str, depth: int, refs: int, name: str
) -> list[Any]:
    """An array for `schema`, its items made by `walk` (the caller validates the instance)."""
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
    if shallow(depth, refs):
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
            ptr, f"more than {MAX_ITEMS} items in one array is more than the simulator generates"
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
            value = walk.value(
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
