"""The example server's MCP sessions: random ids in memory, the least recently used dropped
past a cap, idle ones forgotten."""

from __future__ import annotations

import collections
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["MAX_SESSIONS", "SESSION_IDLE_S", "Sessions"]

MAX_SESSIONS = 1000
SESSION_IDLE_S = 3600.0


@dataclass(slots=True)
class _Session:
    version: str
    last_seen: float


class Sessions:
    """Live sessions by id, least recently used first."""

    def __init__(
        self,
        max_sessions: int = MAX_SESSIONS,
        idle_s: float = SESSION_IDLE_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._by_id: collections.OrderedDict[str, _Session] = collections.OrderedDict()
        self._max = max_sessions
        self._idle_s = idle_s
        self._clock = clock

    def __len__(self) -> int:
        return len(self._by_id)

    def start(self, version: str) -> str:
        """A new session's id, for the negotiated protocol `version`."""
        self._expire()
        while len(self._by_id) >= self._max:
            self._by_id.popitem(last=False)  # the least recently used
        session_id = secrets.token_urlsafe(24)
        self._by_id[session_id] = _Session(version, self._clock())
        return session_id

    def touch(self, session_id: str) -> str | None:
        """The live session's protocol version (its idle time restarts), or None when it is
        unknown, ended or expired."""
        self._expire()
        session = self._by_id.get(session_id)
        if session is None:
            return None
        session.last_seen = self._clock()
        self._by_id.move_to_end(session_id)
        return session.version

    def end(self, session_id: str) -> None:
        """Forget the session (nothing happens for an unknown id)."""
        self._by_id.pop(session_id, None)

    def _expire(self) -> None:
        horizon = self._clock() - self._idle_s
        while self._by_id:
            oldest = next(iter(self._by_id.values()))
            if oldest.last_seen >= horizon:
                break
            self._by_id.popitem(last=False)
