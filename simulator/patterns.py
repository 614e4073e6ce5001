"""Matching a tool schema's `pattern` within a time bound that no other call can move.

Tool schemas come from tenants and their upstream servers, and a backtracking regular
expression can take exponential time on a short input (`^(a|a)*$` against thirty a's and a
b). `re` cannot be interrupted, so one such pattern would stop the event loop, and with it
every tenant's requests on the replica. Patterns are matched with the `regex` package instead
(the same syntax as `re` in its default mode, plus a `timeout`): a match that runs past
`MATCH_TIMEOUT_S` raises `PatternTooSlow`.

Neither `regex` nor `re` counts backtracking steps, so that bound is a time. What a timeout
decides stays inside the call (the active `simulator.budget` scope): the same pattern is
refused at once for the rest of that call, and all of one call's matches together get
`CALL_PATTERN_TIME_S`. Nothing about a timeout is remembered across calls, so another call,
another integration or another tenant matching the same pattern gets the answer of its own
input alone (`^(a|a)*$` accepts "aaaa" whatever was tried before).
"""

from __future__ import annotations

import time
from typing import Any

import regex

from simulator.budget import CALL_PATTERN_TIME_S, OverBudget, current, spend
from simulator.lru import LRU

MATCH_TIMEOUT_S = 0.05
# pattern -> its compiled form, or why the engine refuses it (a str): both are properties of
# the pattern alone, so remembering them cannot make one call's answer depend on another's.
_COMPILED: LRU[str, Any] = LRU(1024)


class PatternTooSlow(OverBudget):
    """A schema pattern that cannot be matched in time, or not by this engine at all."""

    def __init__(self, pattern: str, why: str, *, timed_out: bool = True) -> None:
        super().__init__(f"the pattern {pattern!r} {why}")
        self.pattern = pattern
        self.why = why
        # A verdict of the clock, not of the pattern and input alone: never to be remembered
        # beyond the call that met it.
        self.timed_out = timed_out


def _compiled(pattern: str) -> Any:
    compiled = _COMPILED.get(pattern)
    if compiled is None:
        try:
            compiled = regex.compile(pattern)
        except (regex.error, ValueError, OverflowError, RecursionError) as exc:
            compiled = f"cannot be matched ({exc})"  # accepted by `re`, not here
        _COMPILED.put(pattern, compiled)
    if isinstance(compiled, str):
        raise PatternTooSlow(pattern, compiled, timed_out=False)
    return compiled


def search(pattern: str, text: str) -> bool:
    """`re.search(pattern, text) is not None`, bounded by `MATCH_TIMEOUT_S` (and by what is
    left of the call's `CALL_PATTERN_TIME_S`)."""
    budget = current()
    if budget is None:
        try:
            return _compiled(pattern).search(text, timeout=MATCH_TIMEOUT_S) is not None
        except TimeoutError:
            raise PatternTooSlow(pattern, _too_slow(MATCH_TIMEOUT_S)) from None
    spend()  # patternProperties tries every pattern on every name: count each match
    why = budget.slow_patterns.get(pattern)
    if why is not None:
        raise PatternTooSlow(pattern, why)
    compiled = _compiled(pattern)
    timeout = min(MATCH_TIMEOUT_S, budget.pattern_time)
    started = time.perf_counter()
    try:
        return compiled.search(text, timeout=max(timeout, 0.0)) is not None
    except TimeoutError:
        why = (
            _too_slow(MATCH_TIMEOUT_S)
            if timeout >= MATCH_TIMEOUT_S
            else (
                f"does not finish within what is left of the {CALL_PATTERN_TIME_S * 1000:g} ms "
                "one call may spend matching patterns"
            )
        )
        budget.slow_patterns[pattern] = why
        raise PatternTooSlow(pattern, why) from None
    finally:
        budget.pattern_time -= time.perf_counter() - started


def _too_slow(timeout: float) -> str:
    return f"takes longer than {timeout * 1000:g} ms to match"
