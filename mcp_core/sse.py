"""Server-sent events (``text/event-stream``) as MCP's Streamable HTTP uses them: framing one
JSON-RPC message per event (the server side, no resumption), and an incremental parser for the
WHATWG rules fed with a body's bytes as they arrive (the client side)."""

from __future__ import annotations

import codecs
import re
from collections.abc import Mapping
from dataclasses import dataclass

__all__ = ["SSE_CONTENT_TYPE", "SSE_HEADERS", "SseEvent", "SseParser", "event"]

SSE_CONTENT_TYPE = "text/event-stream"
# no-cache: never replay a stream; X-Accel-Buffering: proxies (nginx) must not hold events back.
SSE_HEADERS: Mapping[str, str] = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}

# SSE ends lines at CR, LF or CRLF only (not at U+2028 and friends, which JSON may carry raw).
_LINE_BREAK = re.compile(r"\r\n|\r|\n")


def event(data: str, name: str = "message") -> bytes:
    """One SSE event carrying `data` (a serialized JSON-RPC message). Events carry no `id`:
    streams are not resumable, so clients have nothing to reconnect with."""
    lines = "".join(f"data: {line}\n" for line in _LINE_BREAK.split(data))
    return f"event: {name}\n{lines}\n".encode()


@dataclass(frozen=True, slots=True)
class SseEvent:
    """One dispatched server-sent event."""

    event: str
    data: str
    id: str | None = None


class SseParser:
    """Incremental ``text/event-stream`` parser (WHATWG rules) fed with raw bytes.

    Lines may end in CRLF, LF or CR and may be split across chunks at any byte. It keeps only
    the current unterminated line, so memory is bounded by what the caller chooses to feed.
    """

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._parts: list[str] = []  # pieces of the current, not yet terminated line
        self._skip_lf = False  # the last chunk ended in CR: a leading LF completes that CRLF
        self._at_start = True
        self._data: list[str] = []
        self._event = ""
        self._last_id: str | None = None

    def feed(self, chunk: bytes) -> list[SseEvent]:
        """Consume a chunk of the stream; return the events it completed."""
        return self._consume(self._decoder.decode(chunk))

    def finish(self) -> list[SseEvent]:
        """Flush at end of stream.

        The SSE standard drops an event that was not terminated by a blank line; we dispatch it
        anyway because some servers close the stream right after the last ``data:`` line.
        """
        events = self._consume(self._decoder.decode(b"", final=True))
        if self._parts:
            line = "".join(self._parts)
            self._parts.clear()
            events.extend(self._line(line))
        events.extend(self._dispatch())
        return events

    def _consume(self, text: str) -> list[SseEvent]:
        if not text:
            return []
        if self._at_start:
            self._at_start = False
            text = text.removeprefix("\ufeff")
        pos = 0
        if self._skip_lf:
            self._skip_lf = False
            if text.startswith("\n"):
                pos = 1
        events: list[SseEvent] = []
        for match in _LINE_BREAK.finditer(text, pos):
            self._parts.append(text[pos : match.start()])
            line = "".join(self._parts)
            self._parts.clear()
            events.extend(self._line(line))
            pos = match.end()
            if match.group() == "\r" and pos == len(text):
                self._skip_lf = True
        if pos < len(text):
            self._parts.append(text[pos:])
        return events

    def _line(self, line: str) -> list[SseEvent]:
        if not line:
            return self._dispatch()
        if line.startswith(":"):  # comment / keep-alive
            return []
        field, sep, value = line.partition(":")
        if sep and value.startswith(" "):
            value = value[1:]
        if field == "data":
            self._data.append(value)
        elif field == "event":
            self._event = value
        elif field == "id" and "\x00" not in value:
            self._last_id = value
        # "retry" and unknown fields are irrelevant to a request/response exchange.
        return []

    def _dispatch(self) -> list[SseEvent]:
        if not self._data:
            self._event = ""
            return []
        event = SseEvent(
            event=self._event or "message", data="\n".join(self._data), id=self._last_id
        )
        self._data = []
        self._event = ""
        return [event]
