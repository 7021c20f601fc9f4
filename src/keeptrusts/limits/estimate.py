"""How many tokens a request may use, known before the upstream call.

Prompt tokens are estimated cheaply: characters / 4 over every text slot of the body
(message content, tool-call arguments, tool definitions, ``input``, ``prompt``,
``instructions``), plus a few tokens per message and a fixed cost per image. With
``token_estimator: tiktoken`` and ``tiktoken`` already installed (it is not a dependency),
text is counted with its ``o200k_base`` encoding instead. Completion tokens are the
request's ``max_completion_tokens`` / ``max_tokens`` (times ``n``), or a default.
The estimate is reserved, then corrected with the real usage after the call.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import orjson

log = logging.getLogger("keeptrusts.limits")

CHARS_PER_TOKEN = 4
MESSAGE_OVERHEAD = 4  # role and separators, per message
IMAGE_TOKENS = 765  # a 512x512 high-detail image; OpenAI bills 85 to ~1,100
_IMAGE_TYPES = frozenset({"image_url", "input_image", "image"})
# Binary payloads (base64 images, audio, files) are not text: never count their characters.
_BINARY_KEYS = frozenset({"image_url", "input_audio", "file", "file_data", "data", "source"})
_TEXT_SLOTS = ("input", "prompt", "instructions", "system")
_MAX_DEPTH = 8


def _walk(value: Any, texts: list[str], depth: int = 0) -> int:
    """Append every text in ``value`` to ``texts``; return the extra tokens found."""
    if isinstance(value, str):
        texts.append(value)
        return 0
    if depth > _MAX_DEPTH:
        return 0
    extra = 0
    if isinstance(value, list):
        for item in value:
            if isinstance(item, int) and not isinstance(item, bool):
                extra += 1  # a token id (embeddings accept token arrays)
            else:
                extra += _walk(item, texts, depth + 1)
    elif isinstance(value, dict):
        if value.get("type") in _IMAGE_TYPES:
            return IMAGE_TOKENS
        for key, item in value.items():
            if key in _BINARY_KEYS or key == "type":
                continue
            extra += _walk(item, texts, depth + 1)
    return extra


def prompt_texts(body: dict[str, Any]) -> tuple[list[str], int]:
    """Every text slot of ``body`` and the tokens counted without text (overheads, images)."""
    texts: list[str] = []
    extra = 0
    messages = body.get("messages")
    if isinstance(messages, list):
        for m in messages:
            if isinstance(m, dict):
                extra += MESSAGE_OVERHEAD
                extra += _walk(m.get("content"), texts)
                for call in m.get("tool_calls") or ():
                    if isinstance(call, dict):
                        extra += _walk(call.get("function"), texts)
    tools = body.get("tools") or body.get("functions")
    if tools:
        texts.append(orjson.dumps(tools).decode())
    for key in _TEXT_SLOTS:
        value = body.get(key)
        if value is not None:
            extra += _walk(value, texts)
    return texts, extra


def count_chars(texts: list[str]) -> int:
    return -(-sum(map(len, texts)) // CHARS_PER_TOKEN)


def tiktoken_counter() -> Callable[[list[str]], int] | None:
    """A counter using tiktoken if it is installed and its encoding loads; else None."""
    try:
        import tiktoken  # type: ignore[import-not-found]

        enc = tiktoken.get_encoding("o200k_base")
    except Exception as exc:  # not installed, or its encoding file cannot be fetched
        log.warning("limits: token_estimator tiktoken unavailable (%s); counting chars/4", exc)
        return None

    def count(texts: list[str]) -> int:
        return sum(len(enc.encode(t, disallowed_special=())) for t in texts)

    return count


def prompt_tokens(body: dict[str, Any], counter: Callable[[list[str]], int] = count_chars) -> int:
    texts, extra = prompt_texts(body)
    return counter(texts) + extra


def completion_tokens(body: dict[str, Any], default: int) -> int:
    """The most completion tokens the request may produce."""
    limit = body.get("max_completion_tokens")
    if not _positive_int(limit):
        limit = body.get("max_tokens")
    if not _positive_int(limit):
        limit = default
    n = body.get("n")
    return limit * n if _positive_int(n) else limit


def _positive_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v > 0
