"""A fast fake LLM upstream for the benchmark: OpenAI and Anthropic wire formats, JSON and SSE.

A bare asyncio protocol (uvloop when available) with pre-serialised bodies, so it costs a
few microseconds per request and is never what the benchmark measures.

Routes (any path prefix): ``POST .../chat/completions`` (OpenAI), ``POST .../messages``
(Anthropic), ``GET .../models``, ``GET /health``. A request asks for a stream with
``"stream": true`` in its body.

Timing: ``--ttfb-ms`` delays the first response byte, ``--chunk-delay-ms`` spaces the SSE
content chunks, ``--chunks`` sets how many content chunks a stream has. A request can
override them with a directive anywhere in its body (model name or prompt text), which
every proxy forwards untouched: ``{{bench t=100 d=50 n=40}}`` (all keys optional).

    python bench/upstream.py --port 9000 [--ttfb-ms 0] [--chunk-delay-ms 0] [--chunks 20]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import signal
import sys

WORDS = [
    "Pods",
    "are",
    "scheduled",
    "by",
    "the",
    "kube-scheduler,",
    "which",
    "filters",
    "nodes",
    "by",
    "resource",
    "requests,",
    "taints",
    "and",
    "affinity,",
    "scores",
    "the",
    "rest",
    "and",
    "binds",
    "the",
    "pod",
    "to",
    "the",
    "best",
    "node",
    "for",
    "it.",
]

_MODEL = re.compile(rb'"model"\s*:\s*"([^"]{0,200})"')
_STREAM = re.compile(rb'"stream"\s*:\s*true')
_DIRECTIVE = re.compile(rb"\{\{bench ([a-z0-9= ]{0,64})\}\}")
_USAGE = re.compile(rb'"include_usage"\s*:\s*true')

REASONS = {200: b"OK", 404: b"Not Found", 400: b"Bad Request"}


def _j(obj: object) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


class Bodies:
    """Pre-serialised bodies per (format, model, chunk count); built once, then cached."""

    def __init__(self) -> None:
        self._cache: dict[tuple, tuple] = {}

    def openai(self, model: str, n: int) -> tuple[bytes, list[bytes], bytes, bytes]:
        key = ("openai", model, n)
        hit = self._cache.get(key)
        if hit:
            return hit
        words = [WORDS[i % len(WORDS)] for i in range(n)]
        text = " ".join(words)
        usage = {"prompt_tokens": 72, "completion_tokens": n, "total_tokens": 72 + n}
        base = {"id": "chatcmpl-bench", "created": 1700000000, "model": model}
        full = _j(
            {
                **base,
                "object": "chat.completion",
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": text},
                        "finish_reason": "stop",
                    }
                ],
                "usage": usage,
            }
        )
        chunk = {**base, "object": "chat.completion.chunk"}

        def frame(delta: dict, finish: str | None = None) -> bytes:
            c = {**chunk, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
            return b"data: " + _j(c) + b"\n\n"

        frames = [frame({"role": "assistant", "content": ""})]
        frames += [frame({"content": (" " if i else "") + w}) for i, w in enumerate(words)]
        tail = frame({}, "stop")
        usage_frame = b"data: " + _j({**chunk, "choices": [], "usage": usage}) + b"\n\n"
        out = (full, frames, tail + b"data: [DONE]\n\n", usage_frame)
        self._cache[key] = out
        return out

    def anthropic(self, model: str, n: int) -> tuple[bytes, list[bytes], bytes, bytes]:
        key = ("anthropic", model, n)
        hit = self._cache.get(key)
        if hit:
            return hit
        words = [WORDS[i % len(WORDS)] for i in range(n)]
        text = " ".join(words)
        usage = {"input_tokens": 72, "output_tokens": n}
        full = _j(
            {
                "id": "msg_bench",
                "type": "message",
                "role": "assistant",
                "model": model,
                "content": [{"type": "text", "text": text}],
                "stop_reason": "end_turn",
                "stop_sequence": None,
                "usage": usage,
            }
        )

        def ev(name: str, data: dict) -> bytes:
            return b"event: " + name.encode() + b"\ndata: " + _j(data) + b"\n\n"

        start = {
            "type": "message_start",
            "message": {
                "id": "msg_bench",
                "type": "message",
                "role": "assistant",
                "model": model,
                "content": [],
                "stop_reason": None,
                "stop_sequence": None,
                "usage": {"input_tokens": 72, "output_tokens": 1},
            },
        }
        frames = [
            ev("message_start", start)
            + ev(
                "content_block_start",
                {
                    "type": "content_block_start",
                    "index": 0,
                    "content_block": {"type": "text", "text": ""},
                },
            )
        ]
        frames += [
            ev(
                "content_block_delta",
                {
                    "type": "content_block_delta",
                    "index": 0,
                    "delta": {"type": "text_delta", "text": (" " if i else "") + w},
                },
            )
            for i, w in enumerate(words)
        ]
        tail = (
            ev("content_block_stop", {"type": "content_block_stop", "index": 0})
            + ev(
                "message_delta",
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                    "usage": {"output_tokens": n},
                },
            )
            + ev("message_stop", {"type": "message_stop"})
        )
        out = (full, frames, tail, b"")
        self._cache[key] = out
        return out


class Upstream(asyncio.Protocol):
    __slots__ = ("buf", "busy", "closed", "loop", "t")

    defaults: dict[str, int] = {"t": 0, "d": 0, "n": 20}
    bodies = Bodies()
    served = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.t = transport
        self.buf = bytearray()
        self.busy = False
        self.closed = False
        self.loop = asyncio.get_running_loop()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True

    def data_received(self, data: bytes) -> None:
        self.buf += data
        if not self.busy:
            self._drain()

    def _drain(self) -> None:
        while not self.busy and not self.closed:
            buf = self.buf
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                if len(buf) > 65536:
                    self.t.close()
                return
            head = bytes(buf[:end])
            lower = head.lower()
            body_start = end + 4
            if b"\r\ntransfer-encoding: chunked" in lower:
                body, used = _dechunk(buf, body_start)
                if body is None:
                    return
                total = used
            else:
                cl = 0
                i = lower.find(b"\r\ncontent-length:")
                if i >= 0:
                    j = lower.find(b"\r\n", i + 2)
                    cl = int(head[i + 17 : j if j >= 0 else None])
                total = body_start + cl
                if len(buf) < total:
                    return
                body = bytes(buf[body_start:total])
            del buf[:total]
            line_end = head.find(b"\r\n")
            reqline = head[: line_end if line_end >= 0 else None].split(b" ")
            method, path = reqline[0], reqline[1] if len(reqline) > 1 else b"/"
            keep = b"\r\nconnection: close" not in lower
            self._handle(method, path, body, keep)

    def _handle(self, method: bytes, path: bytes, body: bytes, keep: bool) -> None:
        Upstream.served += 1
        path = path.split(b"?", 1)[0]
        if method == b"GET":
            if path.endswith(b"/health") or path.endswith(b"/liveliness"):
                return self._send(200, b'{"status":"ok"}', keep)
            if path.endswith(b"/models"):
                return self._send(200, b'{"object":"list","data":[]}', keep)
            return self._send(404, b'{"error":{"message":"not found"}}', keep)
        if path.endswith(b"/chat/completions"):
            fmt = "openai"
        elif path.endswith(b"/messages"):
            fmt = "anthropic"
        else:
            return self._send(404, b'{"error":{"message":"not found"}}', keep)
        m = _MODEL.search(body)
        model = m.group(1).decode() if m else "bench"
        opts = dict(self.defaults)
        d = _DIRECTIVE.search(body)
        if d:
            for kv in d.group(1).split():
                k, _, v = kv.partition(b"=")
                if k.decode() in opts and v.isdigit():
                    opts[k.decode()] = int(v)
        full, frames, tail, usage = getattr(self.bodies, fmt)(model, max(1, opts["n"]))
        stream = _STREAM.search(body) is not None
        if not stream:
            if opts["t"]:
                self.busy = True
                self.loop.call_later(opts["t"] / 1000, self._send_late, full, keep)
                return None
            return self._send(200, full, keep)
        if usage and _USAGE.search(body):
            tail = tail[: -len(b"data: [DONE]\n\n")] + usage + b"data: [DONE]\n\n"
        head = (
            b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\n"
            b"transfer-encoding: chunked\r\n"
            + (b"" if keep else b"connection: close\r\n")
            + b"\r\n"
        )
        delay = opts["d"] / 1000
        self.busy = True
        if not opts["t"] and not delay:
            # Zero delay: one write per SSE frame, as a real upstream's flushes would be.
            self.t.write(head + _chunk(frames[0]))
            for f in frames[1:]:
                self.t.write(_chunk(f))
            self.t.write(_chunk(tail) + b"0\r\n\r\n")
            return self._done(keep)
        state = [head, 0]

        def step() -> None:
            if self.closed:
                return
            i = state[1]
            if i < len(frames):
                self.t.write(state[0] + _chunk(frames[i]))
                state[0] = b""
                state[1] = i + 1
                self.loop.call_later(delay, step)
            else:
                self.t.write(_chunk(tail) + b"0\r\n\r\n")
                self._done(keep)

        self.loop.call_later(opts["t"] / 1000, step)
        return None

    def _send_late(self, body: bytes, keep: bool) -> None:
        if not self.closed:
            self._send(200, body, keep)

    def _send(self, status: int, body: bytes, keep: bool) -> None:
        self.t.write(
            b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\n%s\r\n%s"
            % (
                status,
                REASONS.get(status, b"X"),
                len(body),
                b"" if keep else b"connection: close\r\n",
                body,
            )
        )
        self._done(keep)

    def _done(self, keep: bool) -> None:
        self.busy = False
        if not keep:
            self.t.close()
            return
        if self.buf:
            self.loop.call_soon(self._drain)


def _chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


def _dechunk(buf: bytearray, pos: int) -> tuple[bytes | None, int]:
    out = bytearray()
    while True:
        nl = buf.find(b"\r\n", pos)
        if nl < 0:
            return None, 0
        size = int(bytes(buf[pos:nl]).split(b";")[0], 16)
        start = nl + 2
        if len(buf) < start + size + 2:
            return None, 0
        if size == 0:
            end = buf.find(b"\r\n", start)
            return (bytes(out), end + 2) if end >= 0 else (None, 0)
        out += buf[start : start + size]
        pos = start + size + 2


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--ttfb-ms", type=int, default=0)
    ap.add_argument("--chunk-delay-ms", type=int, default=0)
    ap.add_argument("--chunks", type=int, default=20)
    args = ap.parse_args()
    Upstream.defaults = {"t": args.ttfb_ms, "d": args.chunk_delay_ms, "n": args.chunks}
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass

    async def serve() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(Upstream, args.host, args.port, backlog=4096)
        stop = asyncio.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        print(f"upstream listening on http://{args.host}:{args.port} pid={os.getpid()}", flush=True)
        await stop.wait()
        server.close()

    asyncio.run(serve())
    sys.exit(0)


if __name__ == "__main__":
    main()
