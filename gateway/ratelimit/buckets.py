"""Token-bucket arithmetic shared by both backends.

Each API key has two buckets: the *request* bucket (every MCP message takes one token) and the
*call* bucket (a `tools/call` additionally takes one). A check touches the buckets its `Charge`
names: `REQUEST` the request bucket, `BOTH` both, `CALL` the call bucket only (a `tools/call`
whose request was counted when its POST started). A check is allowed only when every bucket it
touches holds at least one token; a refused check is charged nothing.

`decide` is the reference implementation. `LocalLimiter` runs it in-process; the Lua script in
`gateway/ratelimit/redis.py` is a line-by-line transcription of the same steps (refill, check,
charge, figures), so both backends give the same answers for the same bucket states:

1. refill: ``tokens = min(burst, tokens + elapsed * rate)`` (a bucket never seen is full; a
   negative elapsed time, i.e. a clock step back, counts as zero);
2. allowed iff every touched bucket has ``tokens >= 1 - EPSILON`` (EPSILON absorbs float noise
   so that waiting exactly `retry_after_s` always succeeds);
3. if allowed, every touched bucket loses one token (never below zero); otherwise none does;
4. figures of the *tighter* bucket: the touched bucket with the fewest whole tokens left (on a
   tie, the one that takes longer to refill): ``limit = burst``,
   ``remaining = floor(tokens + EPSILON)``, ``reset = ceil((burst - tokens) / rate)`` in ms;
5. ``retry_after`` (refused only) = the longest of ``ceil((1 - tokens) / rate)`` ms over the
   refusing buckets: the time until every refusing bucket holds one token.

Durations are rounded up to whole milliseconds in both backends.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass

from gateway.context import Charge, Decision

EPSILON = 1e-9


@dataclass(frozen=True, slots=True)
class BucketSpec:
    """A token bucket: refills at `rate_per_s` tokens per second up to `burst` tokens."""

    rate_per_s: float
    burst: int

    def __post_init__(self) -> None:
        if not (math.isfinite(self.rate_per_s) and self.rate_per_s > 0):
            raise ValueError(f"rate_per_s must be positive and finite, not {self.rate_per_s!r}")
        if isinstance(self.burst, bool) or not isinstance(self.burst, int) or self.burst < 1:
            raise ValueError(f"burst must be an integer >= 1, not {self.burst!r}")

    def refill(self, tokens: float | None, elapsed_s: float) -> float:
        """Tokens after `elapsed_s` seconds; `None` (a bucket never seen, or expired) is full."""
        if tokens is None:
            return float(self.burst)
        if elapsed_s < 0:
            elapsed_s = 0.0
        return min(float(self.burst), tokens + elapsed_s * self.rate_per_s)

    def seconds_to_full(self, tokens: float) -> float:
        """Unrounded time until the bucket is full again (when it may be forgotten)."""
        return max(0.0, (self.burst - tokens) / self.rate_per_s)

    def reset_ms(self, tokens: float) -> int:
        return math.ceil((self.burst - tokens) / self.rate_per_s * 1000)

    def wait_ms(self, tokens: float) -> int:
        """Milliseconds until the bucket holds one token."""
        return math.ceil((1 - tokens) / self.rate_per_s * 1000)

    def ttl_ms(self, tokens: float) -> int:
        """PEXPIRE for a bucket just charged: the time to refill fully, at least 1 ms."""
        return max(1, self.reset_ms(tokens))


@dataclass(frozen=True, slots=True)
class Limits:
    """The two per-key buckets."""

    call: BucketSpec  # tools/call
    request: BucketSpec  # every MCP request


# Which buckets a check of each charge touches: (request bucket, call bucket).
TOUCHES: dict[Charge, tuple[bool, bool]] = {
    Charge.REQUEST: (True, False),
    Charge.BOTH: (True, True),
    Charge.CALL: (False, True),
}


def decide(buckets: Sequence[tuple[BucketSpec, float]]) -> tuple[Decision, list[float]]:
    """Steps 2-5 above for already refilled buckets: the decision and each bucket's new tokens
    (unchanged when refused)."""
    allowed = True
    for _, tokens in buckets:
        if tokens < 1 - EPSILON:
            allowed = False
            break
    after: list[float] = []
    limit = remaining = reset_ms = retry_ms = 0
    chosen = False
    for spec, tokens in buckets:
        if allowed:
            tokens = max(0.0, tokens - 1)
        elif tokens < 1 - EPSILON:
            retry_ms = max(retry_ms, spec.wait_ms(tokens))
        after.append(tokens)
        left = math.floor(tokens + EPSILON)
        reset = spec.reset_ms(tokens)
        if not chosen or left < remaining or (left == remaining and reset > reset_ms):
            chosen = True
            limit, remaining, reset_ms = spec.burst, left, reset
    decision = Decision(
        allowed=allowed,
        limit=limit,
        remaining=remaining,
        reset_s=reset_ms / 1000,
        retry_after_s=retry_ms / 1000,
    )
    return decision, after


def session_digest(session_id: str) -> str:
    """How an ended session is named in the denylist (never the token itself)."""
    return hashlib.sha256(session_id.encode()).hexdigest()[:32]


def tighter(a: Decision, b: Decision) -> Decision:
    """The figures to show after two checks of one key (step 4 across checks): the decision
    with fewer whole tokens left (on a tie, the longer reset)."""
    return b if (b.remaining, -b.reset_s) < (a.remaining, -a.reset_s) else a
