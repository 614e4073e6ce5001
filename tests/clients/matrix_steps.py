"""The client matrix's steps on one URL, shared by the Python drivers (the SDK 2.x in the test
process, the SDK 1.x in its own virtualenv: so this imports nothing from the project). Each
driver passes its SDK's `call` and `list_tools`, which report what they saw as plain JSON
(`{"isError", "text", "meta"}`; `{"tools"}` or `{"code", "message", "data"}`), its way of
asking for log messages (`ask_logs`), and the list its logging callback appends each received
message's level to; tests/clients/matrix_steps.mjs takes the same steps for the TypeScript
SDKs."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

TOOL, ARGUMENTS = "search_contacts", {"query": "ada"}
TRIES = 40  # requests before giving up on meeting the limit
RATE_LIMIT_META = "io.mcpgateway/rateLimit"  # mcp_core.errors.RATE_LIMIT_META
LOG_LEVEL = "warning"  # asked for; the stub upstream sends debug, info and warning
LOG_SETTLE_S = 0.2  # SDKs hand notifications to the callback apart from the response

Seen = dict[str, Any]


async def steps(
    protocol: str | None,
    call: Callable[[], Awaitable[Seen]],
    list_tools: Callable[[], Awaitable[Seen]],
    ask_logs: Callable[[str], Awaitable[None]],
    logs: list[str],
) -> Seen:
    """List tools; call one without asking for logs, ask for LOG_LEVEL and call again (the
    levels received during each call); call until the limit answers, wait as told and call
    again; then the same with `tools/list`."""
    seen: Seen = {"protocol": protocol, "list": await list_tools()}
    seen["call"], seen["logs_unasked"] = await _logged(call, logs)
    await ask_logs(LOG_LEVEL)
    seen["logged_call"], seen["logs_asked"] = await _logged(call, logs)
    limited = await _until(call, lambda s: bool(s["isError"]))
    seen["limited_call"] = limited
    await _wait(((limited["meta"] or {}).get(RATE_LIMIT_META) or {}).get("retryAfterMs"))
    seen["retried_call"] = await call()
    limited_list = await _until(list_tools, lambda s: "code" in s)
    seen["limited_request"] = limited_list
    await _wait((limited_list.get("data") or {}).get("retryAfterMs"))
    seen["retried_request"] = await list_tools()
    return seen


async def each_url(
    urls: list[str], pause_s: float, run: Callable[[str], Awaitable[Seen]]
) -> list[Seen]:
    """`run` on every URL in turn, with `pause_s` between them (the buckets refill)."""
    runs = []
    for index, url in enumerate(urls):
        if index:
            await asyncio.sleep(pause_s)
        runs.append({"url": url, **await run(url)})
    return runs


async def _logged(call: Callable[[], Awaitable[Seen]], logs: list[str]) -> tuple[Seen, list[str]]:
    logs.clear()
    seen = await call()
    await asyncio.sleep(LOG_SETTLE_S)
    return seen, list(logs)


async def _until(request: Callable[[], Awaitable[Seen]], done: Callable[[Seen], bool]) -> Seen:
    for _ in range(TRIES):
        seen = await request()
        if done(seen):
            break
    return seen


async def _wait(ms: Any) -> None:
    await asyncio.sleep((ms or 0) / 1000)
