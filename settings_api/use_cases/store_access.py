"""What every use case's store work shares: store failures as problems, and row timestamps."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from settings_api.problems import BadRequest, Conflict, StoreUnavailable
from settings_api.store import StoreConflictError, StoreDataError, StoreUnavailableError


def now_ms() -> int:
    """The time rows record: milliseconds since the epoch."""
    return time.time_ns() // 1_000_000


@asynccontextmanager
async def translated() -> AsyncIterator[None]:
    """Turns store failures inside the block into problems the API can answer with."""
    try:
        yield
    except StoreUnavailableError as exc:
        raise StoreUnavailable("the settings store is unavailable; retry shortly") from exc
    except StoreConflictError as exc:
        raise Conflict("a concurrent change conflicted with this one; retry") from exc
    except StoreDataError as exc:
        raise BadRequest("a value in the request cannot be stored") from exc
