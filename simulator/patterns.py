"""Matching a tool schema's `pattern` within a time bound.

Tool schemas come from tenants and their upstream servers, and a backtracking regular
expression can take exponential time on a short input (`^(a|a)*$` against thirty a's and a
b). `re` cannot be interrupted, so one such pattern would stop the event loop, and with it
every tenant's requests on the replica. Patterns are matched with the `regex` package instead
(the same syntax as `re` in its default mode, plus a `timeout`): a match that runs past
`MATCH_TIMEOUT_S` raises `PatternTooSlow`, and the pattern is refused at once from then on, so
a slow pattern costs the process one timeout, not one per request.
"""

from __future__ import annotations

from typing import Any

import regex

from simulator.lru import LRU

MATCH_TIMEOUT_S = 0.05
# pattern → its compiled form, or why it is refused (a str)
_COMPILED: LRU[str, Any] = LRU(1024)


class PatternTooSlow(Exception):
    """A schema pattern that cannot be matched in time, or not by this engine at all."""

    def __init__(self, pattern: str, why: str) -> None:
        super().__init__(f"the pattern {pattern!r} {why}")
        self.pattern = pattern
        self.why = why


def search(pattern: str, text: str) -> bool:
    """`re.search(pattern, text) is not None`, bounded by `MATCH_TIMEOUT_S`."""
    compiled = _COMPILED.get(pattern)
    try:
        if compiled is None:
            compiled = regex.compile(pattern)
            _COMPILED.put(pattern, compiled)
        elif isinstance(compiled, str):
            raise PatternTooSlow(pattern, compiled)
        return compiled.search(text, timeout=MATCH_TIMEOUT_S) is not None
    except TimeoutError:
        why = f"takes longer than {MATCH_TIMEOUT_S * 1000:g} ms to match"
    except (regex.error, ValueError, OverflowError) as exc:  # accepted by `re`, not here
        why = f"cannot be matched ({exc})"
    _COMPILED.put(pattern, why)
    raise PatternTooSlow(pattern, why)
