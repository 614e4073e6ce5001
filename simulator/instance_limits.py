"""How deep and how large one generated instance may go, and the running count of the one
being made: a schema asking for more is reported, not served slowly."""

from __future__ import annotations

import threading

from simulator.generation_errors import TooLarge, over_budget

SHALLOW_DEPTH = 8  # deeper than this, only required properties and minimal arrays
SHALLOW_REFS = 3  # ...and likewise after this many `$ref` expansions on one path
MAX_DEPTH = 64  # a path longer than this is a recursion that never ends
MAX_NODES = 10_000  # values generated for one instance
MAX_ITEMS = 1_000  # minItems / minProperties (minLength: simulator/strings.py)


def shallow(depth: int, refs: int) -> bool:
    """Whether a node this deep makes only what its schema requires."""
    return depth > SHALLOW_DEPTH or refs >= SHALLOW_REFS


class Tally:
    """The values and bytes of the instance being generated, per thread (one generator serves
    every thread that simulates its tool).

    Bytes are counted as values are made, against the answer's size (the engine's
    max_result_bytes), so that a too large schema stops early, with the same verdict every
    time: the count depends on the generated values alone."""

    def __init__(self) -> None:
        self._local = threading.local()

    def start(self, max_bytes: int | None) -> None:
        """Begin a new instance whose JSON, written twice, must fit in `max_bytes`."""
        local = self._local
        local.nodes = 0
        local.bytes = 0
        local.max_bytes = max_bytes

    def count_value(self, ptr: str) -> None:
        """Count one more value (and its separator, digit or bracket: at least one byte)."""
        local = self._local
        local.nodes += 1
        if local.nodes > MAX_NODES:
            raise TooLarge(ptr, f"asks for more than {MAX_NODES} values in one result")
        self.spend_bytes(1, ptr)

    def spend_bytes(self, size: int, ptr: str) -> None:
        """Count `size` more bytes of the instance's JSON (a lower bound of what is written)."""
        local = self._local
        local.bytes += size
        # Twice: a result carries its structuredContent and the same JSON as text.
        if local.max_bytes is not None and 2 * local.bytes > local.max_bytes:
            raise TooLarge(ptr, over_budget(local.max_bytes))
