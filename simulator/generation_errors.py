"""Why a schema cannot be served by the generator: a reason and where in the schema."""

from __future__ import annotations


class GenerationError(Exception):
    """No value satisfying the schema at `pointer` (a JSON pointer into the schema)."""

    def __init__(self, pointer: str, reason: str) -> None:
        super().__init__(f"{pointer or '/'}: {reason}")
        self.pointer = pointer or "/"
        self.reason = reason


class TooLarge(GenerationError):
    """The schema asks for more than one answer may cost (another seed will not help)."""


def over_budget(max_bytes: int) -> str:
    """Why a result is refused for its size (the message names the budget)."""
    return f"the result would be larger than the simulator's output budget of {max_bytes} bytes"
