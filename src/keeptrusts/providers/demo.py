"""A built-in provider that answers locally, so the gateway runs with no keys and no network.

It exists for the quick start and for trying policies: the answer restates the last user
message, which makes redaction and blocking visible from the client side.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

from keeptrusts.providers.base import Call, Chunk, Provider
from keeptrusts.providers.registry import register


def _last_user_text(body: dict[str, Any]) -> str:
    for msg in reversed(body.get("messages") or []):
        if isinstance(msg, dict) and msg.get("role") == "user":
            content = msg.get("content")
            if isinstance(content, str):
                return content
            if isinstance(content, list):
                return " ".join(p.get("text", "") for p in content if isinstance(p, dict)).strip()
    return ""


def _answer(body: dict[str, Any]) -> str:
    text = _last_user_text(body)
    return f'This is the keeptrusts demo provider: no model was called. You said: "{text}"'


def _usage(body: dict[str, Any], answer: str) -> dict[str, int]:
    prompt = sum(len(str(m.get("content", "")).split()) for m in body.get("messages") or [])
    completion = len(answer.split())
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }


@register("demo")
class DemoProvider(Provider):
    name = "demo"
    needs_base_url = False

    async def complete(self, call: Call) -> dict[str, Any]:
        answer = _answer(call.body)
        return {
            "id": f"chatcmpl-{uuid.uuid4().hex[:24]}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": call.body.get("model") or "demo",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": answer},
                    "finish_reason": "stop",
                }
            ],
            "usage": _usage(call.body, answer),
        }

    async def stream(self, call: Call) -> AsyncIterator[Chunk]:
        answer = _answer(call.body)
        base = {
            "id": f"chatcmpl-{uuid.uuid4().hex[:24]}",
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": call.body.get("model") or "demo",
        }
        yield Chunk({**base, "choices": [{"index": 0, "delta": {"role": "assistant"}}]})
        words = answer.split(" ")
        for i, word in enumerate(words):
            piece = word if i == 0 else " " + word
            yield Chunk({**base, "choices": [{"index": 0, "delta": {"content": piece}}]})
        yield Chunk({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
        opts = call.body.get("stream_options") or {}
        if opts.get("include_usage"):
            yield Chunk({**base, "choices": [], "usage": _usage(call.body, answer)})
