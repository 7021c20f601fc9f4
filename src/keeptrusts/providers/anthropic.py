"""Anthropic's Messages API behind the OpenAI chat-completions shape.

The mapping is a set of pure functions so it can be tested without a network:

* ``to_anthropic(body)``: an OpenAI request body to a Messages request body;
* ``from_anthropic(data)``: a Messages response to a ``chat.completion``;
* ``AnthropicStream``: Messages stream events to ``chat.completion.chunk`` objects;
* ``anthropic_error(status, body)``: an Anthropic error body to an ``UpstreamError``.

Anthropic rejects fields it does not know, so unlike the OpenAI provider this one sends
only what it has mapped: OpenAI-only parameters (``stream_options``, penalties, ``seed``,
``logprobs``...) are dropped, and ones that would change the answer's shape (``n`` > 1,
audio) are refused with a 400.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

import orjson

from keeptrusts.errors import InvalidRequest, UpstreamError
from keeptrusts.providers.base import (
    Call,
    Chunk,
    HttpProvider,
    StreamTranslator,
    UpstreamRequest,
    error_from_body,
)
from keeptrusts.providers.registry import register
from keeptrusts.sse import SSEEvent

ANTHROPIC_VERSION = "2023-06-01"
DEFAULT_MAX_TOKENS = 4096

# Anthropic stop_reason -> OpenAI finish_reason.
FINISH_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}

_IMAGE_TYPES = {"image/jpeg", "image/png", "image/gif", "image/webp"}


@register("anthropic")
class AnthropicProvider(HttpProvider):
    name = "anthropic"
    default_base_url = "https://api.anthropic.com"
    default_key_env = "ANTHROPIC_API_KEY"

    def build_request(self, call: Call) -> UpstreamRequest:
        t = call.target
        headers = {
            "content-type": "application/json",
            "anthropic-version": ANTHROPIC_VERSION,
            "x-request-id": call.request_id,
        }
        headers.update(_auth_headers(call))
        headers.update({k.lower(): v for k, v in t.headers.items()})
        if call.extra_headers:
            headers.update(call.extra_headers)
        # Anthropic requires max_tokens; a target may set its own default in ``extra``.
        default = t.extra.get("max_tokens")
        if not isinstance(default, int) or default <= 0:
            default = DEFAULT_MAX_TOKENS
        body = to_anthropic(call.body, model=t.model, default_max_tokens=default)
        if call.stream:
            body["stream"] = True
        return UpstreamRequest(messages_url(t.base_url), headers, orjson.dumps(body))

    def parse_response(self, data: dict[str, Any], call: Call) -> dict[str, Any]:
        out = from_anthropic(data)
        call.usage = out.get("usage")
        return out

    def translator(self, call: Call) -> StreamTranslator:
        return AnthropicStream(include_usage=_include_usage(call.body), call=call)

    def parse_error(self, status: int, body: bytes) -> UpstreamError:
        return anthropic_error(status, body)


def messages_url(base_url: str) -> str:
    """``base_url`` is the host root; a configured ``.../v1`` is accepted too."""
    base = base_url.rstrip("/")
    return base + ("/messages" if base.endswith("/v1") else "/v1/messages")


def _auth_headers(call: Call) -> dict[str, str]:
    """The target's key in ``x-api-key``; without one, the client's bearer token."""
    t = call.target
    header = (t.api_key_header or "x-api-key").lower()
    prefix = t.api_key_prefix or ""
    key = t.api_key
    if not key and call.client_auth:
        scheme, _, token = call.client_auth.strip().partition(" ")
        key = token.strip() if scheme.lower() == "bearer" else call.client_auth.strip()
    return {header: f"{prefix}{key}"} if key else {}


def _include_usage(body: dict[str, Any]) -> bool:
    opts = body.get("stream_options")
    return isinstance(opts, dict) and bool(opts.get("include_usage"))


# --- request ---------------------------------------------------------------------------


def to_anthropic(
    body: dict[str, Any],
    *,
    model: str | None = None,
    default_max_tokens: int = DEFAULT_MAX_TOKENS,
) -> dict[str, Any]:
    """Map an OpenAI chat-completions body to an Anthropic Messages body.

    ``model`` (the target's model) wins over the body's. Raises ``InvalidRequest`` for
    what Anthropic cannot do.
    """
    n = body.get("n")
    if n is not None and n != 1:
        raise InvalidRequest("this model supports only n=1", param="n")
    system, messages = map_messages(body.get("messages"))
    out: dict[str, Any] = {"model": model or body.get("model")}
    if system:
        out["system"] = system
    out["messages"] = messages
    max_tokens = body.get("max_completion_tokens")
    if max_tokens is None:
        max_tokens = body.get("max_tokens")
    out["max_tokens"] = default_max_tokens if max_tokens is None else max_tokens

    stop = body.get("stop")
    if isinstance(stop, str):
        stop = [stop]
    if isinstance(stop, list):
        stops = [s for s in stop if isinstance(s, str) and s.strip()]
        if stops:
            out["stop_sequences"] = stops
    for key in ("temperature", "top_p", "top_k"):
        if body.get(key) is not None:
            out[key] = body[key]
    if isinstance(out.get("temperature"), (int, float)) and out["temperature"] > 1:
        out["temperature"] = 1.0  # OpenAI allows up to 2, Anthropic up to 1
    user = body.get("user") or body.get("safety_identifier")
    if user:
        out["metadata"] = {"user_id": str(user)}

    tools = body.get("tools")
    if tools is None and body.get("functions"):
        tools = [{"type": "function", "function": f} for f in body["functions"]]
    if tools:
        out["tools"] = [map_tool(t) for t in tools]
        choice = map_tool_choice(
            body.get("tool_choice", body.get("function_call")),
            parallel=body.get("parallel_tool_calls"),
        )
        if choice is not None:
            out["tool_choice"] = choice

    fmt = body.get("response_format")
    if isinstance(fmt, dict) and fmt.get("type") == "json_schema":
        schema = (fmt.get("json_schema") or {}).get("schema")
        if isinstance(schema, dict):
            out["output_config"] = {"format": {"type": "json_schema", "schema": schema}}
    if body.get("stream"):
        out["stream"] = True
    return out


def map_messages(messages: Any) -> tuple[str | None, list[dict[str, Any]]]:
    """Return ``(system, messages)``: system/developer text joined, turns merged by role."""
    if not isinstance(messages, list) or not messages:
        raise InvalidRequest("'messages' must be a non-empty list", param="messages")
    system: list[str] = []
    turns: list[dict[str, Any]] = []
    for i, msg in enumerate(messages):
        if not isinstance(msg, dict):
            raise InvalidRequest(f"messages[{i}] must be an object", param="messages")
        role = msg.get("role")
        if role in ("system", "developer"):
            text = _text_of(msg.get("content"), i)
            if text:
                system.append(text)
            continue
        if role == "user":
            blocks = _content_blocks(msg.get("content"), i)
        elif role == "assistant":
            blocks = _assistant_blocks(msg, i)
            role = "assistant"
        elif role in ("tool", "function"):
            blocks = [_tool_result(msg, i)]
            role = "user"
        else:
            raise InvalidRequest(f"messages[{i}] has unsupported role {role!r}", param="messages")
        if not blocks:
            continue
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"].extend(blocks)
        else:
            turns.append({"role": role, "content": blocks})
    for turn in turns:
        content = turn["content"]
        if len(content) == 1 and content[0]["type"] == "text" and len(content[0]) == 2:
            turn["content"] = content[0]["text"]
    return ("\n\n".join(system) or None), turns


def _text_of(content: Any, i: int) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(
            p.get("text", "") for p in content if isinstance(p, dict) and p.get("text")
        )
    raise InvalidRequest(f"messages[{i}].content has an unsupported type", param="messages")


def _content_blocks(content: Any, i: int) -> list[dict[str, Any]]:
    if content is None:
        return []
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    if not isinstance(content, list):
        raise InvalidRequest(f"messages[{i}].content has an unsupported type", param="messages")
    blocks: list[dict[str, Any]] = []
    for part in content:
        if isinstance(part, str):
            part = {"type": "text", "text": part}
        if not isinstance(part, dict):
            raise InvalidRequest(f"messages[{i}].content has an invalid part", param="messages")
        kind = part.get("type")
        if kind in ("text", "refusal"):
            text = part.get("text") if kind == "text" else part.get("refusal")
            if text:
                blocks.append({"type": "text", "text": text})
        elif kind == "image_url":
            image = part.get("image_url")
            url = image.get("url") if isinstance(image, dict) else image
            blocks.append(_image_block(url, i))
        elif kind == "file":
            blocks.append(_file_block(part.get("file") or {}, i))
        else:
            raise InvalidRequest(
                f"messages[{i}]: content part type {kind!r} is not supported by this model",
                param="messages",
            )
    return blocks


def _parse_data_url(url: str, i: int) -> tuple[str, str]:
    header, sep, data = url[5:].partition(",")
    media_type, _, encoding = header.partition(";")
    if not sep or encoding.lower() != "base64" or not data:
        raise InvalidRequest(f"messages[{i}]: data URLs must be base64", param="messages")
    return media_type.lower(), data


def _image_block(url: Any, i: int) -> dict[str, Any]:
    if not isinstance(url, str) or not url:
        raise InvalidRequest(f"messages[{i}]: image_url needs a url", param="messages")
    if url.startswith("data:"):
        media_type, data = _parse_data_url(url, i)
        if media_type not in _IMAGE_TYPES:
            raise InvalidRequest(
                f"messages[{i}]: image type {media_type!r} is not supported", param="messages"
            )
        return {
            "type": "image",
            "source": {"type": "base64", "media_type": media_type, "data": data},
        }
    if url.startswith(("http://", "https://")):
        return {"type": "image", "source": {"type": "url", "url": url}}
    raise InvalidRequest(
        f"messages[{i}]: image_url must be a data: or http(s) URL", param="messages"
    )


def _file_block(file: dict[str, Any], i: int) -> dict[str, Any]:
    data_url = file.get("file_data")
    if not isinstance(data_url, str) or not data_url.startswith("data:"):
        raise InvalidRequest(
            f"messages[{i}]: only inline PDF files (file_data) are supported", param="messages"
        )
    media_type, data = _parse_data_url(data_url, i)
    if media_type != "application/pdf":
        raise InvalidRequest(
            f"messages[{i}]: file type {media_type!r} is not supported", param="messages"
        )
    return {
        "type": "document",
        "source": {"type": "base64", "media_type": media_type, "data": data},
    }


def _assistant_blocks(msg: dict[str, Any], i: int) -> list[dict[str, Any]]:
    blocks = _content_blocks(msg.get("content"), i)
    calls = list(msg.get("tool_calls") or [])
    fc = msg.get("function_call")  # the legacy single-call form
    if isinstance(fc, dict):
        calls.append({"id": _legacy_id(fc.get("name")), "function": fc})
    for call in calls:
        fn = call.get("function") or {}
        blocks.append(
            {
                "type": "tool_use",
                "id": call.get("id") or _legacy_id(fn.get("name")),
                "name": fn.get("name"),
                "input": _parse_arguments(fn.get("arguments"), i),
            }
        )
    return blocks


def _legacy_id(name: Any) -> str:
    return f"toolu_fn_{name}"


def _parse_arguments(args: Any, i: int) -> dict[str, Any]:
    if isinstance(args, dict):
        return args
    if args is None or (isinstance(args, str) and not args.strip()):
        return {}
    try:
        value = orjson.loads(args)
    except (orjson.JSONDecodeError, TypeError):
        value = None
    if not isinstance(value, dict):
        raise InvalidRequest(
            f"messages[{i}]: tool call arguments must be a JSON object", param="messages"
        )
    return value


def _tool_result(msg: dict[str, Any], i: int) -> dict[str, Any]:
    tool_id = msg.get("tool_call_id")
    if not tool_id and msg.get("role") == "function":
        tool_id = _legacy_id(msg.get("name"))
    if not tool_id:
        raise InvalidRequest(f"messages[{i}] (role tool) needs tool_call_id", param="messages")
    content = msg.get("content")
    result: dict[str, Any] = {"type": "tool_result", "tool_use_id": tool_id}
    if isinstance(content, list):
        blocks = _content_blocks(content, i)
        if blocks:
            result["content"] = blocks
    elif content:
        result["content"] = content if isinstance(content, str) else str(content)
    return result


def map_tool(tool: Any) -> dict[str, Any]:
    if not isinstance(tool, dict) or tool.get("type", "function") != "function":
        kind = tool.get("type") if isinstance(tool, dict) else type(tool).__name__
        raise InvalidRequest(f"tool type {kind!r} is not supported", param="tools")
    fn = tool.get("function") or {}
    if not fn.get("name"):
        raise InvalidRequest("every tool needs function.name", param="tools")
    out: dict[str, Any] = {"name": fn["name"]}
    if fn.get("description"):
        out["description"] = fn["description"]
    schema = fn.get("parameters")
    out["input_schema"] = (
        {"type": "object", **schema} if isinstance(schema, dict) else {"type": "object"}
    )
    return out


def map_tool_choice(choice: Any, *, parallel: bool | None = None) -> dict[str, Any] | None:
    """OpenAI ``tool_choice`` (+ ``parallel_tool_calls``) to Anthropic's, or None for default."""
    out: dict[str, Any] | None
    if choice is None:
        out = None
    elif choice == "auto":
        out = {"type": "auto"}
    elif choice == "none":
        return {"type": "none"}
    elif choice in ("required", "any"):
        out = {"type": "any"}
    elif isinstance(choice, dict):
        name = (choice.get("function") or {}).get("name") or choice.get("name")
        if not name:
            raise InvalidRequest("tool_choice needs function.name", param="tool_choice")
        out = {"type": "tool", "name": name}
    else:
        raise InvalidRequest(f"unsupported tool_choice {choice!r}", param="tool_choice")
    if parallel is False:
        out = out or {"type": "auto"}
        out["disable_parallel_tool_use"] = True
    return out


# --- response --------------------------------------------------------------------------


def map_usage(usage: dict[str, Any] | None) -> dict[str, Any]:
    """Anthropic usage to OpenAI's. Prompt tokens include cache writes and reads, as in
    OpenAI's accounting; reads are also reported as ``cached_tokens``."""
    usage = usage or {}
    cached = int(usage.get("cache_read_input_tokens") or 0)
    prompt = (
        int(usage.get("input_tokens") or 0)
        + int(usage.get("cache_creation_input_tokens") or 0)
        + cached
    )
    completion = int(usage.get("output_tokens") or 0)
    out: dict[str, Any] = {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }
    if "cache_read_input_tokens" in usage or "cache_creation_input_tokens" in usage:
        out["prompt_tokens_details"] = {"cached_tokens": cached}
    return out


def finish_reason(stop_reason: str | None) -> str | None:
    if stop_reason is None:
        return None
    return FINISH_REASONS.get(stop_reason, "stop")


def from_anthropic(data: dict[str, Any], *, created: int | None = None) -> dict[str, Any]:
    """Map an Anthropic ``message`` to an OpenAI ``chat.completion``."""
    texts: list[str] = []
    tool_calls: list[dict[str, Any]] = []
    for block in data.get("content") or []:
        kind = block.get("type")
        if kind == "text":
            texts.append(block.get("text") or "")
        elif kind == "tool_use":
            tool_calls.append(
                {
                    "id": block.get("id"),
                    "type": "function",
                    "function": {
                        "name": block.get("name"),
                        "arguments": orjson.dumps(block.get("input") or {}).decode(),
                    },
                }
            )
    message: dict[str, Any] = {
        "role": "assistant",
        "content": "".join(texts) if texts or not tool_calls else None,
        "refusal": None,
    }
    if tool_calls:
        message["tool_calls"] = tool_calls
    return {
        "id": data.get("id"),
        "object": "chat.completion",
        "created": created if created is not None else int(time.time()),
        "model": data.get("model"),
        "choices": [
            {
                "index": 0,
                "message": message,
                "logprobs": None,
                "finish_reason": finish_reason(data.get("stop_reason")) or "stop",
            }
        ],
        "usage": map_usage(data.get("usage")),
    }


def anthropic_error(status: int, body: bytes) -> UpstreamError:
    """``{"type": "error", "error": {"type", "message"}}`` keeps its status and message."""
    return error_from_body(status, body)


def _stream_error(payload: dict[str, Any]) -> UpstreamError:
    err = payload.get("error") if isinstance(payload.get("error"), dict) else {}
    etype = err.get("type") or "api_error"
    message = err.get("message") or "the upstream stream failed"
    status = 503 if etype == "overloaded_error" else 502
    return UpstreamError(str(message), status=status, type=etype)


# --- stream ----------------------------------------------------------------------------


class AnthropicStream(StreamTranslator):
    """Maps Messages stream events to ``chat.completion.chunk`` objects.

    ``message_start`` yields the first chunk (``delta.role``); text and ``input_json``
    deltas become content and tool-call argument deltas; ``message_delta`` yields the
    finish chunk; ``message_stop`` ends the stream (and yields a usage chunk when the
    client asked for ``stream_options.include_usage``).
    """

    def __init__(
        self, *, include_usage: bool = False, call: Call | None = None, created: int | None = None
    ) -> None:
        self.done = False
        self.include_usage = include_usage
        self.call = call
        self.id: str | None = None
        self.model: str | None = None
        self.created = created if created is not None else int(time.time())
        self.usage: dict[str, Any] = {}
        self.finished = False
        # Anthropic content block index -> OpenAI tool_calls index.
        self.tools: dict[int, int] = {}

    def _chunk(self, delta: dict[str, Any], finish: str | None = None) -> Chunk:
        return Chunk(
            {
                "id": self.id,
                "object": "chat.completion.chunk",
                "created": self.created,
                "model": self.model,
                "choices": [
                    {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
                ],
            }
        )

    def feed(self, event: SSEEvent) -> Iterable[Chunk]:
        if not event.data:
            return ()
        try:
            payload = orjson.loads(event.data)
        except orjson.JSONDecodeError as exc:
            raise UpstreamError("upstream sent a stream event that is not JSON") from exc
        if not isinstance(payload, dict):
            return ()
        kind = payload.get("type") or event.event
        handler = getattr(self, f"_on_{kind}", None)
        return handler(payload) if handler else ()

    def _on_error(self, payload: dict[str, Any]) -> Iterable[Chunk]:
        raise _stream_error(payload)

    def _on_message_start(self, payload: dict[str, Any]) -> Iterable[Chunk]:
        msg = payload.get("message") or {}
        self.id = msg.get("id") or self.id
        self.model = msg.get("model") or self.model
        self.usage.update(msg.get("usage") or {})
        return (self._chunk({"role": "assistant", "content": ""}),)

    def _on_content_block_start(self, payload: dict[str, Any]) -> Iterable[Chunk]:
        block = payload.get("content_block") or {}
        kind = block.get("type")
        if kind == "text" and block.get("text"):
            return (self._chunk({"content": block["text"]}),)
        if kind == "tool_use":
            index = len(self.tools)
            self.tools[payload.get("index", index)] = index
            call = {
                "index": index,
                "id": block.get("id"),
                "type": "function",
                "function": {"name": block.get("name"), "arguments": ""},
            }
            return (self._chunk({"tool_calls": [call]}),)
        return ()

    def _on_content_block_delta(self, payload: dict[str, Any]) -> Iterable[Chunk]:
        delta = payload.get("delta") or {}
        kind = delta.get("type")
        if kind == "text_delta" and delta.get("text"):
            return (self._chunk({"content": delta["text"]}),)
        if kind == "input_json_delta" and delta.get("partial_json"):
            index = self.tools.get(payload.get("index", -1))
            if index is None:
                return ()
            call = {"index": index, "function": {"arguments": delta["partial_json"]}}
            return (self._chunk({"tool_calls": [call]}),)
        return ()

    def _on_message_delta(self, payload: dict[str, Any]) -> Iterable[Chunk]:
        self.usage.update(payload.get("usage") or {})
        reason = finish_reason((payload.get("delta") or {}).get("stop_reason"))
        if reason is None:
            return ()
        self.finished = True
        return (self._chunk({}, reason),)

    def _on_message_stop(self, payload: dict[str, Any]) -> Iterable[Chunk]:
        self.done = True
        usage = map_usage(self.usage)
        if self.call is not None:
            self.call.usage = usage
        chunks = [] if self.finished else [self._chunk({}, "stop")]
        if self.include_usage:
            chunks.append(
                Chunk(
                    {
                        "id": self.id,
                        "object": "chat.completion.chunk",
                        "created": self.created,
                        "model": self.model,
                        "choices": [],
                        "usage": usage,
                    }
                )
            )
        return chunks
