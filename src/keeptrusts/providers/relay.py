"""Relay an OpenAI chat-completions SSE stream byte for byte, peeking only where needed.

When the client speaks the upstream's wire format (OpenAI chunks in, OpenAI chunks out)
and no output policy reads the text, parsing every event only to write it back costs a
JSON parse and a socket write per event. The relay forwards the complete frames of each
upstream read in one piece instead, and looks inside only for what the gateway must know:

* the end: the ``data: [DONE]`` frame is never forwarded; the server sends its own after
  the audit record, exactly as on the parsed path;
* errors: a frame with an ``"error"`` key is parsed; an error object without ``choices``
  ends the stream with an upstream error (the server's SSE error event), as
  ``providers.openai`` does;
* usage: a frame with a ``"usage": {...}`` object is parsed for the audit event and limits;
* until the answer starts, whether a frame carries content: the router falls back to
  another target only while the client has seen nothing that matters.

Inside a JSON string every quote is escaped (``\\"error\\"``), so the byte patterns below
only match real keys; a false match costs a parse, never a wrong answer. Frames that are
not inspected are not validated either, as with any pass-through proxy. Only complete
frames (up to the last blank line) are relayed, so an error event the server appends
never lands inside a half-sent frame.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import orjson

from keeptrusts.errors import UpstreamError
from keeptrusts.providers.wire import carries_content, error_from_body

_DONE = re.compile(rb"(?:^|\n)data: ?\[DONE\][ \t]*\n")
_ERROR = re.compile(rb'"error"\s*:')
_USAGE = re.compile(rb'"usage"\s*:\s*\{')


@dataclass(slots=True)
class Frames:
    """Complete SSE frames to forward as they are. ``content``: at least one of them is
    more than preamble (see ``carries_content``); ``usage``: the last usage object seen."""

    data: bytes
    content: bool
    usage: dict[str, Any] | None = None

    @staticmethod
    def join(items: list[Frames]) -> Frames:
        """One ``Frames`` for several consecutive ones (the head of a stream: one write)."""
        usage = next((f.usage for f in reversed(items) if f.usage), None)
        data = b"".join(f.data for f in items)
        return Frames(data, any(f.content for f in items), usage)


class RelayScanner:
    """Per-stream state: feed upstream bytes, get back the frames to forward.

    After ``feed`` or ``close``, ``error`` is the upstream error that ended the stream (to
    raise once the frames before it are forwarded) and ``done`` says ``[DONE]`` was seen.
    """

    __slots__ = ("_buf", "_started", "done", "error")

    def __init__(self) -> None:
        self._buf = b""
        self._started = False  # a frame with content was seen: stop checking for it
        self.done = False
        self.error: UpstreamError | None = None

    def feed(self, data: bytes) -> Frames | None:
        buf = self._buf + data if self._buf else data
        if b"\r" in buf:
            buf = _normalise(buf)
        cut = buf.rfind(b"\n\n")
        if cut < 0:
            self._buf = buf
            return None
        self._buf = buf[cut + 2 :]
        return self._scan(buf[: cut + 2])

    def close(self) -> Frames | None:
        """Frames of a stream that ended without its final blank line."""
        rest, self._buf = self._buf.rstrip(b"\r\n"), b""
        return self._scan(rest + b"\n\n") if rest.strip() else None

    def _scan(self, frames: bytes) -> Frames | None:
        at = frames.find(b"[DONE]")
        end = _DONE.search(frames, max(0, at - 8)) if at >= 0 else None
        if end is not None:
            self.done = True
            # Keep the newline that ends the frame before [DONE]; drop [DONE] and the rest.
            cut = end.start()
            frames = frames[: cut + 1] if frames[cut : cut + 1] == b"\n" else frames[:cut]
        usage = None
        content = self._started
        if not content or _next_key(frames, 0) >= 0:
            frames, usage, content = self._inspect(frames)
        if not frames.strip():
            return None
        return Frames(frames, content, usage)

    def _inspect(self, frames: bytes) -> tuple[bytes, dict[str, Any] | None, bool]:
        """Parse the frames that matter; cut before an error frame. Returns the frames to
        forward, the usage seen and whether the answer has started."""
        usage = None
        pos, size = 0, len(frames)
        while pos < size:
            if self._started:
                # Jump to the frame holding the next error or usage key, if any. A frame
                # never contains a blank line (JSON escapes newlines).
                key = _next_key(frames, pos)
                if key < 0:
                    break
                blank = frames.rfind(b"\n\n", pos, key)
                if blank >= 0:
                    pos = blank + 2
            start = pos
            end = frames.find(b"\n\n", start)
            pos = size if end < 0 else end + 2
            data = _data(frames[start:pos])
            if not data:
                continue
            obj = orjson.loads(data)
            if not isinstance(obj, dict):
                continue
            if "error" in obj and "choices" not in obj:
                self.error = error_from_body(502, data)
                return frames[:start], usage, self._started
            if obj.get("usage"):
                usage = obj["usage"]
            if not self._started and carries_content(obj):
                self._started = True
        return frames, usage, self._started


def _next_key(data: bytes, pos: int) -> int:
    """Offset of the first ``"error":`` or ``"usage": {`` at or after ``pos``, or -1. A
    substring search first: far faster than the regex, which then confirms."""
    found = -1
    for literal, pattern in ((b'"error"', _ERROR), (b'"usage"', _USAGE)):
        if data.find(literal, pos) >= 0:
            m = pattern.search(data, pos)
            if m is not None and (found < 0 or m.start() < found):
                found = m.start()
    return found


def _data(frame: bytes) -> bytes:
    """The ``data`` of one frame (its ``data:`` lines joined with newlines)."""
    lines = [
        line[5:].removeprefix(b" ") for line in frame.split(b"\n") if line.startswith(b"data:")
    ]
    return b"\n".join(lines)


def _normalise(buf: bytes) -> bytes:
    """``\\r\\n`` and ``\\r`` line ends to ``\\n``; a trailing ``\\r`` may be half of ``\\r\\n``
    and waits (as in ``sse.SSEParser``)."""
    hold = buf.endswith(b"\r")
    if hold:
        buf = buf[:-1]
    buf = buf.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
    return buf + b"\r" if hold else buf
