"""The client matrix's steps on one URL, shared by the Python drivers (the SDK 2.x in the test
process, the SDK 1.x in its own virtualenv: so this imports nothing from the project). Each
driver passes its SDK's `call` and `list_tools`, which report what they saw as plain JSON
(`{"isError", "text", "meta"}`; `{"tools"}` or `{"code", "message", "data"}`);
tests/clients/typescript_sdk.mjs takes the same steps."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

TOOL, ARGUMENTS = "search_contacts", {"query": "ada"}
TRIES = 40  # requests before giving up on meeting the limit
RATE_LIMIT_META = "io.mcpgateway/rateLimit"  # mcp_core.errors.RATE_LIMIT_META

Seen = dict[str, Any]


async def steps(
    protocol: str | None,
    call: Callable[[], Awaitable[Seen]],
    list_tools: Callable[[], Awaitable[Seen]],
) -> Seen:
    """List tools, call one, call until the limit answers, wait as told and call again; then
    the same with `tools/list`."""
    seen: Seen = {"protocol": protocol, "list": await list_tools(), "call": await call()}
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


async def _until(request: Callable[[], Awaitable[Seen]], done: Callable[[Seen], bool]) -> Seen:
    for _ in range(TRIES):
        seen = await request()
        if done(seen):
            break
    return seen


async def _wait(ms: Any) -> None:
    await asyncio.sleep((ms or 0) / 1000)
