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
        end = _DONE.search(frames)
        if end is not None:
            self.done = True
            # Keep the newline that ends the frame before [DONE]; drop [DONE] and the rest.
            cut = end.start()
            frames = frames[: cut + 1] if frames[cut : cut + 1] == b"\n" else frames[:cut]
        usage = None
        content = False
        if not self._started or _ERROR.search(frames) or _USAGE.search(frames):
            frames, usage, content = self._inspect(frames)
        if not frames.strip():
            return None
        return Frames(frames, content or self._started, usage)

    def _inspect(self, frames: bytes) -> tuple[bytes, dict[str, Any] | None, bool]:
        """Parse frame by frame; cut before an error frame. Returns the frames to forward,
        the usage seen and whether any frame carries content."""
        usage = None
        content = False
        pos = 0
        for part in frames.split(b"\n\n"):
            start, pos = pos, pos + len(part) + 2
            if self._started and not (_ERROR.search(part) or _USAGE.search(part)):
                continue
            data = _data(part)
            if not data:
                continue
            obj = orjson.loads(data)
            if not isinstance(obj, dict):
                continue
            if "error" in obj and "choices" not in obj:
                self.error = error_from_body(502, data)
                return frames[:start], usage, content
            if obj.get("usage"):
                usage = obj["usage"]
            if not self._started and carries_content(obj):
                content = self._started = True
        return frames, usage, content


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
