"""What one key sees of an integration: a key created with `toolIds` reaches only those of
the exposed tools. Its narrowed view is what `tools/list`, `tools/call` (an unreachable tool
is "Unknown tool", logged as `denied`) and tracing read, so nothing else needs to know."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import replace

from gateway.context import IntegrationView, KeyEntry

DEFAULT_MAX_ENTRIES = 100_000


class KeyViews:
    """Narrowed views, computed once per (key, integration view) and kept while the view they
    came from is the one the cache serves (a reloaded view is a new object)."""

    def __init__(self, max_entries: int = DEFAULT_MAX_ENTRIES) -> None:
        self._max = max_entries
        self._views: OrderedDict[str, tuple[IntegrationView, IntegrationView]] = OrderedDict()

    def view_for(self, key: KeyEntry, view: IntegrationView) -> IntegrationView:
        """`view` as `key` sees it."""
        if key.tool_ids is None:
            return view
        found = self._views.get(key.key_id)
        if found is not None and found[0] is view:
            self._views.move_to_end(key.key_id)
            return found[1]
        narrowed = narrow(view, key.tool_ids)
        self._views[key.key_id] = (view, narrowed)
        self._views.move_to_end(key.key_id)
        while len(self._views) > self._max:
            self._views.popitem(last=False)
        return narrowed


def narrow(view: IntegrationView, tool_ids: frozenset[str]) -> IntegrationView:
    """`view` with only the exposed tools named in `tool_ids`, in the exposed order."""
    tools = tuple(tool for tool in view.tools if tool["name"] in tool_ids)
    return replace(view, tools=tools, tools_by_name={tool["name"]: tool for tool in tools})
