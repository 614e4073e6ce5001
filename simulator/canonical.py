"""Canonical JSON, JSON equality and the seeded randomness every simulated answer derives from.

Nothing here depends on `hash()`, set iteration or the process: the same inputs give the same
bytes and the same random stream in every process, whatever PYTHONHASHSEED is.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
from collections.abc import Mapping
from typing import Any

_HASH_SEP = b"\x00"


def normalize(value: Any) -> Any:
    """JSON-equal values made identical: integral floats become ints (1.0 -> 1, -0.0 -> 0),
    tuples become lists. Returns `value` itself when nothing changes (the common case)."""
    if isinstance(value, float):
        if math.isfinite(value) and value.is_integer():
            return int(value)
        return value
    if isinstance(value, dict):
        changed = False
        out = {}
        for key, item in value.items():
            new = normalize(item)
            changed = changed or new is not item
            out[key] = new
        return out if changed else value
    if isinstance(value, list | tuple):
        items = [normalize(item) for item in value]
        if isinstance(value, list) and all(a is b for a, b in zip(items, value, strict=True)):
            return value
        return items
    return value


def canonical_json(value: Any) -> str:
    """Sorted keys, no whitespace, ASCII only; JSON-equal values give the same text
    (`{"n": 1.0}` and `{"n": 1}` alike). NaN/Infinity are spelled as Python does, so even
    arguments that JSON cannot carry still hash deterministically."""
    return json.dumps(normalize(value), sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def ordered_json(value: Any) -> str:
    """Compact JSON that keeps key order (what generation depends on: properties come out in
    the order the schema declares them)."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=True)


def result_json(value: Any) -> str:
    """How a result's JSON is written into its text block: compact, UTF-8 characters kept."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def json_equal(a: Any, b: Any) -> bool:
    """Equality as JSON means it: 1 == 1.0, but true != 1 and "1" != 1; objects by keys."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(json_equal(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(json_equal(x, y) for x, y in zip(a, b, strict=True))
    if a is None or b is None:
        return a is None and b is None
    return type(a) is type(b) and a == b


def derive_seed(
    tenant: str,
    integration: str,
    tool: str,
    arguments_json: str,
    fixtures_version: int,
    seed: str | None,
) -> bytes:
    """sha256(tenant \\0 integration \\0 tool \\0 canonical args \\0 fixtures version \\0 seed)."""
    parts = (tenant, integration, tool, arguments_json, str(int(fixtures_version)), seed or "")
    return hashlib.sha256(
        _HASH_SEP.join(p.encode("utf-8", "surrogatepass") for p in parts)
    ).digest()


class Seeded:
    """A node of a tree of random streams: `child(key)` derives an independent stream from this
    one's seed and the key alone, so a property's value does not depend on its siblings (adding
    an optional property to a schema leaves the others' values as they were)."""

    __slots__ = ("_rng", "seed")

    def __init__(self, seed: bytes) -> None:
        self.seed = seed
        self._rng: random.Random | None = None

    @property
    def rng(self) -> random.Random:
        if self._rng is None:
            self._rng = random.Random(int.from_bytes(self.seed[:16], "big"))
        return self._rng

    def unit(self) -> float:
        """A number in [0, 1) read off the seed itself (no generator needed)."""
        return int.from_bytes(self.seed[:7], "big") / 2**56

    def pick(self, count: int) -> int:
        """An index in range(count) read off the seed itself (count small)."""
        return int.from_bytes(self.seed[:8], "big") % count

    def child(self, key: str | int) -> Seeded:
        raw = key.encode("utf-8", "surrogatepass") if isinstance(key, str) else b"#%d" % key
        return Seeded(hashlib.blake2b(self.seed + _HASH_SEP + raw, digest_size=16).digest())


def fingerprint(text: str) -> bytes:
    """A short digest of a JSON text, for cache keys."""
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).digest()


def finite_json(value: Any) -> bool:
    """No NaN or Infinity anywhere in `value` (they would be written back out as invalid JSON)."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, float) and not math.isfinite(item):
            return False
        if isinstance(item, Mapping):
            stack.extend(item.values())
        elif isinstance(item, list | tuple):
            stack.extend(item)
    return True


def json_key(value: Any) -> Any:
    """A hashable form of a JSON value with JSON's equality: `json_key(a) == json_key(b)`
    exactly when `json_equal(a, b)` (1 and 1.0 alike; true and 1, "1" and 1 not). Lets
    `uniqueItems` and `enum` use a set instead of comparing every pair."""
    if isinstance(value, bool):
        return (_BOOL, value)
    if isinstance(value, int | float):
        return (_NUMBER, value)  # 1 and 1.0 are equal (and hash alike), as JSON wants
    if isinstance(value, str):
        return (_STRING, value)
    if value is None:
        return _NULL
    if isinstance(value, Mapping):
        return (_OBJECT, frozenset((key, json_key(item)) for key, item in value.items()))
    if isinstance(value, list | tuple):
        return (_ARRAY, tuple(json_key(item) for item in value))
    raise TypeError(f"not a JSON value: {type(value).__name__}")


_BOOL, _NUMBER, _STRING, _NULL, _OBJECT, _ARRAY = range(6)
