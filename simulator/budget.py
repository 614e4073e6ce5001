"""What one simulator step may spend on a tenant's schema: counted, never timed.

Schemas and the values checked against them both come from tenants, and JSON Schema lets a
small pair cost a lot (`allOf` of two `$ref`s to the same recursive definition doubles the work
per level). Every keyword the validator evaluates spends one step of the current `scope`; a
scope that runs out raises `OverBudget`. Steps are counted, so the same schema and value give
the same verdict in every process, whatever the load or what ran before.

A scope belongs to one step of one call (checking the arguments, generating a result, checking
a fixture): budgets are never shared between calls, tenants or threads (a `ContextVar`).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

# About 0.3 s of one core at most; ordinary calls spend well under 1,000 steps, and checking
# 3,000 objects of three properties each about 18,000. Generating a value spends one per node.
MAX_VALIDATION_STEPS = 100_000
# What all of one scope's pattern matches may take together (simulator/patterns.py): the one
# bound that is a time, because no regex engine here counts its backtracking steps.
CALL_PATTERN_TIME_S = 0.1


class OverBudget(Exception):
    """Checking a value against a tenant's schema costs more than one call may spend."""


class Budget:
    """The steps left in one scope, and what this scope learnt about slow patterns."""

    __slots__ = ("limit", "pattern_time", "slow_patterns", "steps")

    def __init__(self, steps: int) -> None:
        self.limit = self.steps = steps
        self.pattern_time = CALL_PATTERN_TIME_S  # seconds of regex matching left (patterns.py)
        # pattern -> why it was refused, for this scope only: a pattern that timed out is not
        # tried again in the same call, and never refused in another because of this one.
        self.slow_patterns: dict[str, str] = {}


_current: ContextVar[Budget | None] = ContextVar("simulator_budget", default=None)


@contextmanager
def scope(steps: int = MAX_VALIDATION_STEPS) -> Iterator[Budget]:
    """A fresh budget for the code inside (nested scopes do not share their steps)."""
    budget = Budget(steps)
    token = _current.set(budget)
    try:
        yield budget
    finally:
        _current.reset(token)


@contextmanager
def paused() -> Iterator[None]:
    """Nothing inside is counted: for work whose result is cached (compiling a schema), which
    would otherwise cost a call more or less depending on what earlier calls left cached."""
    token = _current.set(None)
    try:
        yield
    finally:
        _current.reset(token)


def current() -> Budget | None:
    """The active scope's budget (None outside any scope: nothing is counted)."""
    return _current.get()


def spend(steps: int = 1) -> None:
    """Take `steps` from the active scope; `OverBudget` when it runs out."""
    budget = _current.get()
    if budget is not None:
        budget.steps -= steps
        if budget.steps < 0:
            raise OverBudget(
                f"checking a value against it takes more than {budget.limit} "
                "validation steps (the simulator's per-call budget)"
            )
