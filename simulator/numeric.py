"""Integers and numbers within a schema's bounds and `multipleOf`, plausible for the name."""

from __future__ import annotations

import math
import sys
from fractions import Fraction
from typing import Any

from simulator import hints
from simulator.canonical import Seeded
from simulator.generation_errors import GenerationError
from simulator.hints import Hint
from simulator.validation import is_decimal_multiple, is_float_multiple

NUMBER_ATTEMPTS = 64
_FLOAT_MAX = sys.float_info.max


def fraction(number: Any) -> Fraction:
    """A JSON number as an exact fraction (a float by its shortest repr: 0.1 is 1/10)."""
    return Fraction(repr(number)) if isinstance(number, float) else Fraction(number)


def _bounds(schema: dict[str, Any]) -> tuple[float | None, bool, float | None, bool]:
    """(low, low exclusive, high, high exclusive); draft-04's boolean exclusives included."""
    low, high = schema.get("minimum"), schema.get("maximum")
    low_x = high_x = False
    ex_min, ex_max = schema.get("exclusiveMinimum"), schema.get("exclusiveMaximum")
    if isinstance(ex_min, bool):
        low_x = ex_min and low is not None
    elif ex_min is not None and (low is None or ex_min >= low):
        low, low_x = ex_min, True
    if isinstance(ex_max, bool):
        high_x = ex_max and high is not None
    elif ex_max is not None and (high is None or ex_max <= high):
        high, high_x = ex_max, True
    return low, low_x, high, high_x


def _in_bounds(
    value: float, low: float | None, low_x: bool, high: float | None, high_x: bool
) -> bool:
    if low is not None and (value < low or (low_x and value == low)):
        return False
    return not (high is not None and (value > high or (high_x and value == high)))


def _window(
    preferred: tuple[float, float, int] | None,
    low: float | None,
    high: float | None,
    default: tuple[float, float, int],
) -> tuple[float, float, int]:
    """Where to draw from: the plausible range for the name, inside the schema's bounds."""
    plo, phi, decimals = preferred or default
    if low is not None and high is not None and high < low:
        return low, high, decimals
    low = None if low is None else max(low, -_FLOAT_MAX)
    high = None if high is None else min(high, _FLOAT_MAX)
    lo = plo if low is None else max(plo, low)
    hi = phi if high is None else min(phi, high)
    if lo < hi or (lo == hi and low is not None and low == high):
        return lo, hi, decimals
    # The plausible range misses the bounds: stay near them.
    if low is not None and high is not None:
        return low, high, decimals
    if low is not None:
        return low, min(low + max(100.0, abs(low) * 0.5), _FLOAT_MAX), decimals
    assert high is not None
    return max(high - max(100.0, abs(high) * 0.5), -_FLOAT_MAX), high, decimals


def integer_value(schema: dict[str, Any], s: Seeded, ptr: str, hint: Hint) -> int:
    """An integer within the schema's bounds and `multipleOf`, in the name's plausible range."""
    low, low_x, high, high_x = _bounds(schema)
    ilow = None if low is None else (math.floor(low) + 1 if low_x else math.ceil(low))
    ihigh = None if high is None else (math.ceil(high) - 1 if high_x else math.floor(high))
    if ilow is not None and ihigh is not None and ilow > ihigh:
        raise GenerationError(ptr, "no integer lies within minimum/maximum")
    lo, hi, _ = _window(hints.number_range(hint.kind, True), ilow, ihigh, (1, 100, 0))
    lo, hi = math.ceil(lo), math.floor(hi)
    if lo > hi:
        edge = ilow if ilow is not None else ihigh
        assert edge is not None  # the window is only empty against a bound
        lo = hi = edge
    step_value = schema.get("multipleOf")
    if step_value is None:
        return s.rng.randint(lo, hi)
    step = fraction(step_value)
    if step <= 0:
        raise GenerationError(ptr, "multipleOf must be positive")
    unit = step.numerator  # the smallest positive integer that is a multiple of `step`
    for a, b in ((lo, hi), (ilow, ihigh)):
        first = None if a is None else -(-a // unit)
        last = None if b is None else b // unit
        if first is None:
            first = (last or 0) - 100
        if last is None:
            last = first + 100
        if first <= last:
            value = s.rng.randint(first, last) * unit
            if is_decimal_multiple(value, step_value) and is_float_multiple(value, step_value):
                return value
            for k in range(first, min(last, first + NUMBER_ATTEMPTS) + 1):
                value = k * unit
                if is_float_multiple(value, step_value):
                    return value
    raise GenerationError(ptr, "no multiple of multipleOf lies within minimum/maximum")


def number_value(schema: dict[str, Any], s: Seeded, ptr: str, hint: Hint) -> float | int:
    """A number within the schema's bounds and `multipleOf`, in the name's plausible range."""
    low, low_x, high, high_x = _bounds(schema)
    if low is not None and high is not None and (low > high or (low == high and (low_x or high_x))):
        raise GenerationError(ptr, "no number lies within minimum/maximum")
    lo, hi, decimals = _window(hints.number_range(hint.kind, False), low, high, (0.0, 1000.0, 2))
    rng = s.rng
    step_value = schema.get("multipleOf")
    if step_value is not None:
        step = fraction(step_value)
        if step <= 0:
            raise GenerationError(ptr, "multipleOf must be positive")
        for a, b in ((lo, hi), (low, high)):
            first = None if a is None else math.ceil(Fraction(a) / step)
            last = None if b is None else math.floor(Fraction(b) / step)
            first = first if first is not None else (last or 0) - 100
            last = last if last is not None else first + 100
            if first > last:
                continue
            start = rng.randint(first, last)
            for offset in range(NUMBER_ATTEMPTS):
                k = first + (start - first + offset) % (last - first + 1)
                exact = k * step
                value: float | int = int(exact) if exact.denominator == 1 else float(exact)
                if (
                    _in_bounds(value, low, low_x, high, high_x)
                    and is_decimal_multiple(value, step_value)
                    and is_float_multiple(value, step_value)
                ):
                    return value
        raise GenerationError(ptr, "no multiple of multipleOf lies within minimum/maximum")
    if lo == hi:
        if _in_bounds(lo, low, low_x, high, high_x):
            return lo
        raise GenerationError(ptr, "no number lies within minimum/maximum")
    raw = rng.uniform(lo, hi)
    for places in (decimals, 4, 6, 10):
        value = round(raw, places) if places else round(raw)
        if math.isfinite(value) and _in_bounds(value, low, low_x, high, high_x):
            return value
    middle = lo / 2 + hi / 2
    if _in_bounds(middle, low, low_x, high, high_x):
        return middle
    raise GenerationError(ptr, "no number lies within the exclusive bounds")
