"""A fake upstream LLM server for the test suite: the only stand-in for a real provider.

It speaks the real wire formats (JSON and SSE) of OpenAI chat completions, embeddings and
models, and of Anthropic Messages, on 127.0.0.1 in a background thread with its own
event loop, so sync and async tests can both use it::

    fp = FakeProvider().start()         # or: with FakeProvider() as fp: ...
    fp.url                              # "http://127.0.0.1:PORT"
    fp.enqueue(Reply(text="hi", chunks=2), Reply(status=500, times=2))
    fp.requests[-1].json                # what the gateway sent
    fp.reset()                          # forget requests and scripted replies
    fp.stop()

Routes (any path prefix): ``POST .../chat/completions``, ``POST .../embeddings``,
``GET .../models`` (OpenAI), ``POST .../messages`` (Anthropic). With no scripted reply,
the answer echoes the last user message's text.

Faults compose with ``cut_after``: a stream writes its first ``cut_after`` SSE frames,
then either sends ``stream_error``, resets the connection (``reset``), hangs (``hang``)
or just ends (no ``[DONE]`` / ``message_stop``). Without ``cut_after``, ``reset`` and
``hang`` happen before any response byte.
"""

from __future__ import annotations

import asyncio
import base64
import json
import struct
import threading
import time
import zlib
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any

from aiohttp import web


@dataclass
class Received:
    """One request as the fake saw it (header names lower-case)."""

    path: str
    headers: dict[str, str]
    json: Any
    method: str = "POST"


@dataclass
class ToolCall:
    name: str
    arguments: dict[str, Any] | str = field(default_factory=dict)
    id: str | None = None

    def args_json(self) -> str:
        if isinstance(self.arguments, str):
            return self.arguments
        return json.dumps(self.arguments, separators=(",", ":"))


@dataclass
class Reply:
    """A scripted answer. Every field is optional; the default is an echo."""

    text: str | None = None  # None: echo the last user message
    chunks: int = 3  # how many pieces text and each tool call's arguments stream in
    tool_calls: list[ToolCall | tuple[str, Any]] = field(default_factory=list)
    finish_reason: str | None = None  # OpenAI vocabulary; mapped for Anthropic
    usage: dict[str, int] | None = None  # {"prompt_tokens", "completion_tokens"}
    model: str | None = None  # the model named in the answer (default: the request's)
    # HTTP errors: any status >= 400; body defaults to the endpoint's error format.
    status: int = 200
    body: Any = None
    retry_after: float | str | None = None
    # Faults.
    delay_first_byte: float = 0.0
    delay_between_chunks: float = 0.0
    hang: bool = False
    reset: bool = False
    cut_after: int | None = None  # SSE frames written before the stream ends early
    stream_error: str | None = None  # message of an error event sent at cut_after
    stream_error_type: str = "overloaded_error"
    times: int = 1  # how many matching requests this reply answers
    # Filters: the reply only answers requests that match.
    match_model: str | None = None
    match_path: str | None = None  # a substring of the path

    def matches(self, path: str, body: Any) -> bool:
        if self.match_path is not None and self.match_path not in path:
            return False
        model = body.get("model") if isinstance(body, dict) else None
        return self.match_model is None or self.match_model == model

    def calls(self) -> list[ToolCall]:
        return [c if isinstance(c, ToolCall) else ToolCall(*c) for c in self.tool_calls]


ANTHROPIC_FIELDS = {
    "model", "messages", "max_tokens", "system", "metadata", "stop_sequences", "stream",
    "temperature", "top_p", "top_k", "tools", "tool_choice", "thinking", "service_tier",
    "output_config", "container", "mcp_servers", "context_management",
}  # fmt: skip

_STOP_REASONS = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use"}
_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    429: "rate_limit_error",
    529: "overloaded_error",
}


class _Closed(Exception):
    """The client went away, or the reply ends the connection: stop writing."""


class FakeProvider:
    def __init__(self) -> None:
        self.requests: list[Received] = []
        self.models = ["gpt-4o-mini", "claude-sonnet-4-5"]
        self.strict = True  # reject Anthropic bodies with unknown or missing fields
        self.url = ""
        self._queue: list[Reply] = []
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._release: asyncio.Event | None = None

    # --- control (call from any thread) -----------------------------------------------

    def start(self) -> FakeProvider:
        ready = threading.Event()
        self._loop = asyncio.new_event_loop()

        def run() -> None:
            asyncio.set_event_loop(self._loop)
            self._loop.run_until_complete(self._serve())
            ready.set()
            self._loop.run_forever()
            self._loop.close()

        self._thread = threading.Thread(target=run, name="fakeprovider", daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("fake provider did not start")
        return self

    def stop(self) -> None:
        if self._loop is None or self._thread is None:
            return
        asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop = self._thread = None

    def enqueue(self, *replies: Reply) -> None:
        with self._lock:
            self._queue.extend(replies)

    def reset(self) -> None:
        """Forget requests and scripted replies; release any hung request."""
        with self._lock:
            self.requests.clear()
            self._queue.clear()
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._release_hung)

    @property
    def last(self) -> Received:
        return self.requests[-1]

    def __enter__(self) -> FakeProvider:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- server -----------------------------------------------------------------------

    async def _serve(self) -> None:
        self._release = asyncio.Event()
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, handler_cancellation=True)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}"

    async def _shutdown(self) -> None:
        self._release_hung()
        if self._runner is not None:
            await self._runner.cleanup()

    def _release_hung(self) -> None:
        if self._release is not None:
            self._release.set()
            self._release = asyncio.Event()

    def _next_reply(self, path: str, body: Any) -> Reply:
        with self._lock:
            for i, reply in enumerate(self._queue):
                if reply.matches(path, body):
                    reply.times -= 1
                    if reply.times <= 0:
                        del self._queue[i]
                    return reply
        return Reply()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        path = request.path
        headers = {k.lower(): v for k, v in request.headers.items()}
        with self._lock:
            self.requests.append(Received(path, headers, body, request.method))

        if request.method == "GET" and path.endswith("/models"):
            return web.json_response(self._models(anthropic="anthropic-version" in headers))
        if request.method != "POST":
            return web.json_response({"error": {"message": "not found"}}, status=404)
        if path.endswith("/chat/completions"):
            kind = "openai"
        elif path.endswith("/messages"):
            kind = "anthropic"
        elif path.endswith("/embeddings"):
            kind = "embeddings"
        else:
            return web.json_response({"error": {"message": f"no route {path}"}}, status=404)

        reply = self._next_reply(path, body)
        try:
            if reply.delay_first_byte:
                await asyncio.sleep(reply.delay_first_byte)
            if reply.cut_after is None:
                await self._fault_before_response(request, reply)
            invalid = self._invalid(kind, body)
            if reply.status >= 400 or invalid:
                return self._error(kind, reply, invalid)
            if kind == "embeddings":
                return web.json_response(self._embeddings(body))
            stream = bool(body.get("stream"))
            if kind == "openai":
                if stream:
                    return await self._stream(request, reply, _openai_frames(body, reply))
                return web.json_response(_openai_json(body, reply))
            if stream:
                return await self._stream(request, reply, _anthropic_frames(body, reply))
            return web.json_response(_anthropic_json(body, reply))
        except _Closed:
            return web.Response()

    async def _fault_before_response(self, request: web.Request, reply: Reply) -> None:
        if reply.reset:
            _abort(request)
            raise _Closed
        if reply.hang:
            assert self._release is not None
            await self._release.wait()
            _abort(request)
            raise _Closed

    async def _stream(
        self, request: web.Request, reply: Reply, frames: list[bytes]
    ) -> web.StreamResponse:
        resp = web.StreamResponse(
            headers={"content-type": "text/event-stream", "cache-control": "no-cache"}
        )
        await resp.prepare(request)
        cut = reply.cut_after
        try:
            for i, frame in enumerate(frames):
                if cut is not None and i >= cut:
                    break
                if i and reply.delay_between_chunks:
                    await asyncio.sleep(reply.delay_between_chunks)
                await resp.write(frame)
            if cut is not None:
                if reply.stream_error is not None:
                    await resp.write(_stream_error_frame(request.path, reply))
                elif reply.reset or reply.hang:
                    await self._fault_before_response(request, reply)
            await resp.write_eof()
        except (ConnectionError, _Closed):
            pass
        return resp

    def _invalid(self, kind: str, body: Any) -> str | None:
        if not isinstance(body, dict):
            return "the body must be a JSON object"
        if kind == "embeddings":
            return None if "input" in body else "input is required"
        if not body.get("model") or not body.get("messages"):
            return "model and messages are required"
        if kind == "anthropic" and self.strict:
            if "max_tokens" not in body:
                return "max_tokens: Field required"
            extra = sorted(set(body) - ANTHROPIC_FIELDS)
            if extra:
                return f"{extra[0]}: Extra inputs are not permitted"
        return None

    def _error(self, kind: str, reply: Reply, invalid: str | None) -> web.Response:
        status = 400 if invalid else reply.status
        body = None if invalid else reply.body
        headers = {}
        if reply.retry_after is not None and not invalid:
            headers["retry-after"] = str(reply.retry_after)
        if body is None:
            message = invalid or f"fake upstream error {status}"
            etype = _ERROR_TYPES.get(status, "api_error")
            if kind == "anthropic":
                body = {"type": "error", "error": {"type": etype, "message": message}}
            else:
                etype = "server_error" if status >= 500 else etype
                body = {"error": {"message": message, "type": etype, "param": None, "code": None}}
        if isinstance(body, (dict, list)):
            return web.json_response(body, status=status, headers=headers)
        return web.Response(body=body, status=status, headers=headers)

    def _models(self, *, anthropic: bool) -> dict[str, Any]:
        if anthropic:
            data = [
                {"type": "model", "id": m, "display_name": m, "created_at": "2025-01-01T00:00:00Z"}
                for m in self.models
            ]
            first, last = (data[0]["id"], data[-1]["id"]) if data else (None, None)
            return {"data": data, "has_more": False, "first_id": first, "last_id": last}
        data = [{"id": m, "object": "model", "created": 0, "owned_by": "fake"} for m in self.models]
        return {"object": "list", "data": data}

    @staticmethod
    def _embeddings(body: dict[str, Any]) -> dict[str, Any]:
        inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
        data = []
        for i, item in enumerate(inputs):
            seed = zlib.crc32(json.dumps(item).encode())
            vector = [((seed >> (4 * k)) & 0xF) / 15.0 for k in range(8)]
            if body.get("encoding_format") == "base64":
                embedding: Any = base64.b64encode(struct.pack("<8f", *vector)).decode()
            else:
                embedding = vector
            data.append({"object": "embedding", "index": i, "embedding": embedding})
        tokens = sum(len(str(x).split()) for x in inputs)
        return {
            "object": "list",
            "data": data,
            "model": body.get("model"),
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }


def _abort(request: web.Request) -> None:
    if request.transport is not None:
        request.transport.abort()


# --- answers ------------------------------------------------------------------------------


def _last_user_text(body: dict[str, Any]) -> str:
    for msg in reversed(body.get("messages") or []):
        if msg.get("role") != "user":
            continue
        content = msg.get("content")
        if isinstance(content, str):
            return content
        return " ".join(
            p.get("text", "") for p in content or [] if isinstance(p, dict) and p.get("text")
        )
    return ""


def _answer(body: dict[str, Any], reply: Reply) -> str:
    if reply.text is not None:
        return reply.text
    return "" if reply.tool_calls else _last_user_text(body)


def _usage(body: dict[str, Any], reply: Reply, text: str) -> tuple[int, int]:
    if reply.usage is not None:
        return reply.usage.get("prompt_tokens", 0), reply.usage.get("completion_tokens", 0)
    prompt = sum(len(json.dumps(m.get("content")).split()) for m in body.get("messages") or [])
    return prompt, len(text.split()) + 5 * len(reply.tool_calls)


def _finish(reply: Reply) -> str:
    return reply.finish_reason or ("tool_calls" if reply.tool_calls else "stop")


def _split(text: str, n: int) -> list[str]:
    """``text`` in ``n`` near-equal pieces (fewer only if it is shorter than ``n``)."""
    n = max(1, min(n, len(text)))
    cuts = [len(text) * i // n for i in range(n + 1)]
    return [text[a:b] for a, b in pairwise(cuts) if b > a]


def _call_id(calls: list[ToolCall], i: int, prefix: str) -> str:
    return calls[i].id or f"{prefix}fake{i}"


def _sse(data: Any, event: str | None = None) -> bytes:
    payload = data if isinstance(data, str) else json.dumps(data, separators=(",", ":"))
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {payload}\n\n".encode()


def _stream_error_frame(path: str, reply: Reply) -> bytes:
    err = {"type": reply.stream_error_type, "message": reply.stream_error}
    if path.endswith("/messages"):
        return _sse({"type": "error", "error": err}, "error")
    return _sse({"error": {**err, "param": None, "code": None}})


def _openai_json(body: dict[str, Any], reply: Reply) -> dict[str, Any]:
    text = _answer(body, reply)
    calls = reply.calls()
    prompt, completion = _usage(body, reply, text)
    message: dict[str, Any] = {
        "role": "assistant",
        "content": text if text or not calls else None,
        "refusal": None,
    }
    if calls:
        message["tool_calls"] = [
            {
                "id": _call_id(calls, i, "call_"),
                "type": "function",
                "function": {"name": c.name, "arguments": c.args_json()},
            }
            for i, c in enumerate(calls)
        ]
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": reply.model or body.get("model"),
        "choices": [
            {"index": 0, "message": message, "logprobs": None, "finish_reason": _finish(reply)}
        ],
        "usage": {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
        },
    }


def _openai_frames(body: dict[str, Any], reply: Reply) -> list[bytes]:
    text = _answer(body, reply)
    calls = reply.calls()
    include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
    base = {
        "id": "chatcmpl-fake",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": reply.model or body.get("model"),
        "system_fingerprint": None,
    }

    def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        extra = {"usage": None} if include_usage else {}
        return _sse({**base, "choices": [choice], **extra})

    frames = [chunk({"role": "assistant", "content": "", "refusal": None})]
    frames += [chunk({"content": piece}) for piece in _split(text, reply.chunks)]
    for i, c in enumerate(calls):
        start = {"index": i, "id": _call_id(calls, i, "call_"), "type": "function"}
        frames.append(
            chunk({"tool_calls": [{**start, "function": {"name": c.name, "arguments": ""}}]})
        )
        for piece in _split(c.args_json(), reply.chunks):
            frames.append(chunk({"tool_calls": [{"index": i, "function": {"arguments": piece}}]}))
    frames.append(chunk({}, _finish(reply)))
    if include_usage:
        prompt, completion = _usage(body, reply, text)
        usage = {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
        }
        frames.append(_sse({**base, "choices": [], "usage": usage}))
    frames.append(b"data: [DONE]\n\n")
    return frames


def _anthropic_json(body: dict[str, Any], reply: Reply) -> dict[str, Any]:
    text = _answer(body, reply)
    calls = reply.calls()
    prompt, completion = _usage(body, reply, text)
    content: list[dict[str, Any]] = [{"type": "text", "text": text}] if text else []
    content += [
        {
            "type": "tool_use",
            "id": _call_id(calls, i, "toolu_"),
            "name": c.name,
            "input": json.loads(c.args_json() or "{}"),
        }
        for i, c in enumerate(calls)
    ]
    finish = _finish(reply)
    return {
        "id": "msg_fake",
        "type": "message",
        "role": "assistant",
        "model": reply.model or body.get("model"),
        "content": content,
        "stop_reason": _STOP_REASONS.get(finish, finish),
        "stop_sequence": None,
        "usage": {"input_tokens": prompt, "output_tokens": completion},
    }


def _anthropic_frames(body: dict[str, Any], reply: Reply) -> list[bytes]:
    full = _anthropic_json(body, reply)
    start = {**full, "content": [], "stop_reason": None}
    start["usage"] = {"input_tokens": full["usage"]["input_tokens"], "output_tokens": 1}
    arguments = iter(c.args_json() for c in reply.calls())

    def ev(name: str, **data: Any) -> bytes:
        return _sse({"type": name, **data}, name)

    frames = [ev("message_start", message=start)]
    for index, block in enumerate(full["content"]):
        if block["type"] == "text":
            opening = {"type": "text", "text": ""}
            deltas = [
                {"type": "text_delta", "text": p} for p in _split(block["text"], reply.chunks)
            ]
        else:
            opening = {**block, "input": {}}
            pieces = ["", *_split(next(arguments), reply.chunks)]
            deltas = [{"type": "input_json_delta", "partial_json": p} for p in pieces]
        frames.append(ev("content_block_start", index=index, content_block=opening))
        if index == 0:
            frames.append(ev("ping"))
        frames += [ev("content_block_delta", index=index, delta=d) for d in deltas]
        frames.append(ev("content_block_stop", index=index))
    delta = {"stop_reason": full["stop_reason"], "stop_sequence": None}
    usage = {"output_tokens": full["usage"]["output_tokens"]}
    frames.append(ev("message_delta", delta=delta, usage=usage))
    frames.append(ev("message_stop"))
    return frames
