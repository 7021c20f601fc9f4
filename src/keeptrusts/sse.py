"""Server-sent events: an incremental parser for upstream streams and the encoder we emit.

Parsing follows the WHATWG rules that matter for LLM APIs: events end at a blank line,
``data:`` lines join with ``\\n``, one optional space after the colon is dropped, and
comment lines (``:``) are ignored. Line endings may be ``\\n``, ``\\r\\n`` or ``\\r``.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class SSEEvent:
    event: str | None
    data: bytes


class SSEParser:
    """Feed raw bytes as they arrive; get back the complete events seen so far."""

    __slots__ = ("_buf", "_data", "_event")

    def __init__(self) -> None:
        self._buf = b""
        self._data: list[bytes] = []
        self._event: str | None = None

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        """Return events completed by ``chunk``; a partial line waits for the next call."""
        buf = self._buf + chunk
        if b"\r" in buf:
            # A lone trailing \r may be the first half of \r\n: keep it for the next chunk.
            hold = buf.endswith(b"\r")
            if hold:
                buf = buf[:-1]
            buf = buf.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
            if hold:
                buf += b"\r"
        lines = buf.split(b"\n")
        self._buf = lines.pop()
        events: list[SSEEvent] = []
        for line in lines:
            if not line:
                if self._data or self._event is not None:
                    events.append(SSEEvent(self._event, b"\n".join(self._data)))
                self._data = []
                self._event = None
                continue
            if line[0:1] == b":":
                continue
            field, _, value = line.partition(b":")
            if value[:1] == b" ":
                value = value[1:]
            if field == b"data":
                self._data.append(value)
            elif field == b"event":
                self._event = value.decode("utf-8", "replace")
        return events

    def close(self) -> list[SSEEvent]:
        """Flush an event the upstream ended without its final blank line."""
        events = self.feed(b"\n\n") if self._buf or self._data else []
        return events


def encode(data: bytes, event: str | None = None) -> bytes:
    """Return one SSE frame carrying ``data`` (which must not contain newlines)."""
    if event:
        return b"event: " + event.encode() + b"\ndata: " + data + b"\n\n"
    return b"data: " + data + b"\n\n"


DONE = b"data: [DONE]\n\n"
