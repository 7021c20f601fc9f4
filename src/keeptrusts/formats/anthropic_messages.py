"""Anthropic's Messages API as a client-facing format, over the internal OpenAI shape.

The reverse of ``providers.anthropic``: that module lets OpenAI clients reach Anthropic;
this one lets Anthropic clients (the ``anthropic`` SDK, Claude Code) reach any target.

* ``to_openai(body)``: a Messages request to a chat-completions body;
* ``from_openai(completion)``: a ``chat.completion`` to a Messages ``message``;
* ``MessagesStream``: ``chat.completion.chunk`` objects to Messages SSE frames;
* ``error_body(err)``: a gateway error in Anthropic's ``{"type": "error", ...}`` shape.

What has no OpenAI counterpart is dropped, not approximated: ``thinking`` (and thinking
blocks in history), ``cache_control``, citations, ``tool_result.is_error``,
``output_config.effort``, ``service_tier`` and the other account-level fields; ``top_k``
is kept only when the caller says the targets understand it. Anthropic server tools and
blocks that only exist server-side (``server_tool_use``, web search results, Files API
sources) are refused with a 400 rather than silently changed.
"""

from __future__ import annotations

import uuid
from typing import Any

import orjson

from keeptrusts.errors import GatewayError, InvalidRequest
from keeptrusts.sse import encode as sse_frame

# OpenAI finish_reason -> Anthropic stop_reason.
STOP_REASONS = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "content_filter": "refusal",
}

# Anthropic's error types by HTTP status (https://docs.anthropic.com/en/api/errors).
ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    504: "timeout_error",
    529: "overloaded_error",
}
_ANTHROPIC_TYPES = set(ERROR_TYPES.values())

_DROPPED_BLOCKS = {"thinking", "redacted_thinking"}


def _bad(param: str, message: str) -> InvalidRequest:
    return InvalidRequest(f"{param}: {message}", param=param, code="invalid_value")


# --- request ---------------------------------------------------------------------------


def to_openai(body: Any, *, keep_top_k: bool = False) -> dict[str, Any]:
    """Map a Messages request body to a chat-completions body; 400 on what cannot map."""
    if not isinstance(body, dict):
        raise InvalidRequest("The request body must be a JSON object.", code="invalid_json")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise _bad("model", "Field required (a non-empty string)")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise _bad("messages", "Field required (a non-empty array)")

    if body.get("mcp_servers"):
        raise _bad("mcp_servers", "remote MCP servers are not supported by this gateway")

    out_messages: list[dict[str, Any]] = []
    if body.get("system") is not None:
        out_messages.extend(_system(body["system"]))
    for i, msg in enumerate(messages):
        out_messages.extend(_message(msg, i))
    if not any(m["role"] != "system" for m in out_messages):
        raise _bad("messages", "at least one message must have content")
    out: dict[str, Any] = {"model": model, "messages": out_messages}

    max_tokens = body.get("max_tokens")
    if max_tokens is not None:
        # 0 is valid for Anthropic (prompt-cache pre-warming); upstreams judge the rest.
        if type(max_tokens) is not int or max_tokens < 0:
            raise _bad("max_tokens", "must be a non-negative integer")
        out["max_tokens"] = max_tokens
    for key in ("temperature", "top_p"):
        value = body.get(key)
        if value is not None:
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise _bad(key, "must be a number")
            out[key] = value
    top_k = body.get("top_k")
    if top_k is not None:
        if type(top_k) is not int or top_k < 0:
            raise _bad("top_k", "must be a non-negative integer")
        if keep_top_k:
            out["top_k"] = top_k
    stops = body.get("stop_sequences")
    if stops is not None:
        if not isinstance(stops, list) or not all(isinstance(s, str) for s in stops):
            raise _bad("stop_sequences", "must be an array of strings")
        if stops:
            out["stop"] = list(stops)
    metadata = body.get("metadata")
    if metadata is not None and not isinstance(metadata, dict):
        raise _bad("metadata", "must be an object")
    if metadata and metadata.get("user_id"):
        out["user"] = str(metadata["user_id"])

    tools = body.get("tools")
    if tools is not None:
        if not isinstance(tools, list):
            raise _bad("tools", "must be an array")
        if tools:
            out["tools"] = [_tool(t, i) for i, t in enumerate(tools)]
            _tool_choice(body.get("tool_choice"), out)

    _output_config(body.get("output_config"), out)

    stream = body.get("stream")
    if stream is not None and not isinstance(stream, bool):
        raise _bad("stream", "must be a boolean")
    if stream:
        out["stream"] = True
        # message_delta reports usage, so ask every upstream for it.
        out["stream_options"] = {"include_usage": True}
    return out


def _output_config(config: Any, out: dict[str, Any]) -> None:
    """Structured output (``format``) becomes ``response_format``; ``effort`` is dropped."""
    if config is None:
        return
    if not isinstance(config, dict):
        raise _bad("output_config", "must be an object")
    fmt = config.get("format")
    if fmt is None:
        return
    if not isinstance(fmt, dict) or fmt.get("type") != "json_schema":
        raise _bad("output_config.format.type", "only 'json_schema' is supported")
    schema = fmt.get("schema")
    if not isinstance(schema, dict):
        raise _bad("output_config.format.schema", "must be an object")
    out["response_format"] = {
        "type": "json_schema",
        "json_schema": {"name": "output", "schema": schema},
    }


def _system(system: Any) -> list[dict[str, Any]]:
    if isinstance(system, str):
        return [{"role": "system", "content": system}] if system else []
    if not isinstance(system, list):
        raise _bad("system", "must be a string or an array of text blocks")
    parts = []
    for j, block in enumerate(system):
        if not isinstance(block, dict) or block.get("type") != "text":
            raise _bad(f"system[{j}]", "only text blocks are supported")
        text = block.get("text")
        if not isinstance(text, str):
            raise _bad(f"system[{j}].text", "must be a string")
        parts.append({"type": "text", "text": text})
    if not parts:
        return []
    return [{"role": "system", "content": parts[0]["text"] if len(parts) == 1 else parts}]


def _message(msg: Any, i: int) -> list[dict[str, Any]]:
    where = f"messages[{i}]"
    if not isinstance(msg, dict):
        raise _bad(where, "must be an object")
    role = msg.get("role")
    if role not in ("user", "assistant"):
        raise _bad(f"{where}.role", f"must be 'user' or 'assistant', got {role!r}")
    content = msg.get("content")
    if isinstance(content, str):
        return [{"role": role, "content": content}]
    if not isinstance(content, list):
        raise _bad(f"{where}.content", "must be a string or an array of content blocks")
    for j, block in enumerate(content):
        if not isinstance(block, dict) or not isinstance(block.get("type"), str):
            raise _bad(f"{where}.content[{j}]", "must be an object with a 'type'")
    if role == "user":
        return _user_blocks(content, where)
    return _assistant_blocks(content, where)


def _user_blocks(content: list[dict[str, Any]], where: str) -> list[dict[str, Any]]:
    """Tool results become ``role: tool`` messages, which OpenAI wants right after the
    assistant's tool calls; the rest of the turn follows as one user message."""
    tools: list[dict[str, Any]] = []
    parts: list[dict[str, Any]] = []
    for j, block in enumerate(content):
        at = f"{where}.content[{j}]"
        kind = block["type"]
        if kind == "tool_result":
            message, images = _tool_result(block, at)
            tools.append(message)
            parts.extend(images)
        elif kind in _DROPPED_BLOCKS:
            continue
        else:
            parts.append(_part(block, at))
    out = tools
    if parts:
        single = len(parts) == 1 and parts[0]["type"] == "text"
        out.append({"role": "user", "content": parts[0]["text"] if single else parts})
    return out


def _part(block: dict[str, Any], at: str) -> dict[str, Any]:
    kind = block["type"]
    if kind == "text":
        text = block.get("text")
        if not isinstance(text, str):
            raise _bad(f"{at}.text", "must be a string")
        return {"type": "text", "text": text}
    if kind == "image":
        return _image(block, at)
    if kind == "document":
        return _document(block, at)
    raise _bad(f"{at}.type", f"content block type {kind!r} is not supported by this gateway")


def _source(block: dict[str, Any], at: str) -> dict[str, Any]:
    source = block.get("source")
    if not isinstance(source, dict):
        raise _bad(f"{at}.source", "Field required")
    return source


def _image(block: dict[str, Any], at: str) -> dict[str, Any]:
    source = _source(block, at)
    kind = source.get("type")
    if kind == "base64":
        media_type, data = source.get("media_type"), source.get("data")
        if not isinstance(media_type, str) or not isinstance(data, str) or not data:
            raise _bad(f"{at}.source", "base64 images need media_type and data")
        url = f"data:{media_type};base64,{data}"
    elif kind == "url":
        url = source.get("url")
        if not isinstance(url, str) or not url:
            raise _bad(f"{at}.source.url", "Field required")
    else:
        raise _bad(f"{at}.source.type", f"image source {kind!r} is not supported by this gateway")
    return {"type": "image_url", "image_url": {"url": url}}


def _document(block: dict[str, Any], at: str) -> dict[str, Any]:
    source = _source(block, at)
    kind = source.get("type")
    if kind == "base64" and source.get("media_type") == "application/pdf":
        data = source.get("data")
        if not isinstance(data, str) or not data:
            raise _bad(f"{at}.source.data", "Field required")
        name = block.get("title") if isinstance(block.get("title"), str) else "document.pdf"
        return {
            "type": "file",
            "file": {"filename": name, "file_data": f"data:application/pdf;base64,{data}"},
        }
    if kind == "text" and isinstance(source.get("data"), str):
        return {"type": "text", "text": source["data"]}
    raise _bad(
        f"{at}.source",
        "only base64 PDF and plain-text documents are supported by this gateway",
    )


def _tool_result(block: dict[str, Any], at: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Return the ``role: tool`` message and any images (OpenAI tool messages are text)."""
    tool_id = block.get("tool_use_id")
    if not isinstance(tool_id, str) or not tool_id:
        raise _bad(f"{at}.tool_use_id", "Field required")
    content = block.get("content")
    texts: list[dict[str, Any]] = []
    images: list[dict[str, Any]] = []
    if isinstance(content, str):
        texts.append({"type": "text", "text": content})
    elif isinstance(content, list):
        for k, part in enumerate(content):
            where = f"{at}.content[{k}]"
            if not isinstance(part, dict):
                raise _bad(where, "must be an object")
            converted = _part(part, where)
            (texts if converted["type"] == "text" else images).append(converted)
    elif content is not None:
        raise _bad(f"{at}.content", "must be a string or an array of content blocks")
    if len(texts) == 1:
        body: Any = texts[0]["text"]
    else:
        body = texts or ""
    return {"role": "tool", "tool_call_id": tool_id, "content": body}, images


def _assistant_blocks(content: list[dict[str, Any]], where: str) -> list[dict[str, Any]]:
    texts: list[dict[str, Any]] = []
    calls: list[dict[str, Any]] = []
    for j, block in enumerate(content):
        at = f"{where}.content[{j}]"
        kind = block["type"]
        if kind == "text":
            texts.append(_part(block, at))
        elif kind == "tool_use":
            calls.append(_tool_call(block, at))
        elif kind in _DROPPED_BLOCKS:
            continue
        else:
            raise _bad(
                f"{at}.type", f"assistant content block {kind!r} is not supported by this gateway"
            )
    if not texts and not calls:
        return []
    message: dict[str, Any] = {"role": "assistant"}
    if len(texts) == 1:
        message["content"] = texts[0]["text"]
    else:
        message["content"] = texts or None
    if calls:
        message["tool_calls"] = calls
    return [message]


def _tool_call(block: dict[str, Any], at: str) -> dict[str, Any]:
    tool_id, name = block.get("id"), block.get("name")
    if not isinstance(tool_id, str) or not tool_id:
        raise _bad(f"{at}.id", "Field required")
    if not isinstance(name, str) or not name:
        raise _bad(f"{at}.name", "Field required")
    args = block.get("input")
    if args is None:
        args = {}
    if not isinstance(args, dict):
        raise _bad(f"{at}.input", "must be an object")
    return {
        "id": tool_id,
        "type": "function",
        "function": {"name": name, "arguments": orjson.dumps(args).decode()},
    }


def _tool(tool: Any, i: int) -> dict[str, Any]:
    at = f"tools[{i}]"
    if not isinstance(tool, dict):
        raise _bad(at, "must be an object")
    kind = tool.get("type")
    if kind not in (None, "custom"):
        raise _bad(
            f"{at}.type",
            f"tool type {kind!r} (an Anthropic server tool) is not supported by this gateway",
        )
    name = tool.get("name")
    if not isinstance(name, str) or not name:
        raise _bad(f"{at}.name", "Field required")
    schema = tool.get("input_schema")
    if schema is None:
        schema = {"type": "object", "properties": {}}
    if not isinstance(schema, dict):
        raise _bad(f"{at}.input_schema", "must be an object")
    fn: dict[str, Any] = {"name": name}
    if isinstance(tool.get("description"), str) and tool["description"]:
        fn["description"] = tool["description"]
    fn["parameters"] = schema
    return {"type": "function", "function": fn}


def _tool_choice(choice: Any, out: dict[str, Any]) -> None:
    if choice is None:
        return
    if not isinstance(choice, dict):
        raise _bad("tool_choice", "must be an object")
    kind = choice.get("type")
    if kind == "auto":
        out["tool_choice"] = "auto"
    elif kind == "any":
        out["tool_choice"] = "required"
    elif kind == "none":
        out["tool_choice"] = "none"
    elif kind == "tool":
        name = choice.get("name")
        if not isinstance(name, str) or not name:
            raise _bad("tool_choice.name", "Field required")
        out["tool_choice"] = {"type": "function", "function": {"name": name}}
    else:
        raise _bad("tool_choice.type", f"unsupported tool_choice type {kind!r}")
    if choice.get("disable_parallel_tool_use") is True and kind != "none":
        out["parallel_tool_calls"] = False


# --- response --------------------------------------------------------------------------


def message_id(upstream_id: Any) -> str:
    """An Anthropic-looking id: the upstream's own when it is one, else a fresh ``msg_``."""
    if isinstance(upstream_id, str) and upstream_id.startswith("msg_"):
        return upstream_id
    return f"msg_{uuid.uuid4().hex[:24]}"


def stop_reason(finish_reason: Any) -> str:
    if finish_reason is None:
        return "end_turn"
    return STOP_REASONS.get(finish_reason, "end_turn")


def usage_from_openai(usage: Any) -> dict[str, int]:
    """OpenAI usage to Anthropic's, whose ``input_tokens`` excludes cache reads."""
    usage = usage if isinstance(usage, dict) else {}
    prompt = int(usage.get("prompt_tokens") or 0)
    details = usage.get("prompt_tokens_details")
    cached = int(details.get("cached_tokens") or 0) if isinstance(details, dict) else 0
    return {
        "input_tokens": max(0, prompt - cached),
        "output_tokens": int(usage.get("completion_tokens") or 0),
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": cached,
    }


def _arguments(args: Any) -> dict[str, Any]:
    if isinstance(args, dict):
        return args
    if not isinstance(args, str) or not args.strip():
        return {}
    try:
        value = orjson.loads(args)
    except orjson.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}


def from_openai(completion: dict[str, Any], *, model: str | None = None) -> dict[str, Any]:
    """Map a ``chat.completion`` (its first choice) to a Messages ``message``."""
    choices = completion.get("choices") or [{}]
    choice = choices[0] if isinstance(choices[0], dict) else {}
    msg = choice.get("message") or {}
    content: list[dict[str, Any]] = []
    text = msg.get("content")
    if isinstance(text, list):
        text = "".join(p.get("text", "") for p in text if isinstance(p, dict))
    if isinstance(text, str) and text:
        content.append({"type": "text", "text": text})
    if isinstance(msg.get("refusal"), str) and msg["refusal"]:
        content.append({"type": "text", "text": msg["refusal"]})
    calls = list(msg.get("tool_calls") or [])
    if isinstance(msg.get("function_call"), dict):
        calls.append({"function": msg["function_call"]})
    for call in calls:
        fn = call.get("function") or {}
        content.append(
            {
                "type": "tool_use",
                "id": call.get("id") or f"toolu_{uuid.uuid4().hex[:24]}",
                "name": fn.get("name") or "",
                "input": _arguments(fn.get("arguments")),
            }
        )
    return {
        "id": message_id(completion.get("id")),
        "type": "message",
        "role": "assistant",
        "model": completion.get("model") or model,
        "content": content,
        "stop_reason": stop_reason(choice.get("finish_reason")),
        "stop_sequence": None,
        "usage": usage_from_openai(completion.get("usage")),
    }


# --- errors ----------------------------------------------------------------------------


def error_type(err: GatewayError) -> str:
    """Anthropic's type for the status; a policy block keeps ``policy_violation``."""
    if err.type == "policy_violation":
        return err.type
    if err.status in ERROR_TYPES:
        return ERROR_TYPES[err.status]
    if err.type in _ANTHROPIC_TYPES:
        return err.type
    return "api_error" if err.status >= 500 else "invalid_request_error"


def error_body(err: GatewayError) -> dict[str, Any]:
    """``{"type": "error", "error": {"type", "message"}}``, plus the gateway's ``code`` and,
    for policy blocks, ``policy``."""
    inner: dict[str, Any] = {"type": error_type(err), "message": err.message}
    if err.code:
        inner["code"] = err.code
    inner.update(err.extra)
    return {"type": "error", "error": inner}


# --- stream ----------------------------------------------------------------------------


def _event(name: str, data: dict[str, Any]) -> bytes:
    return sse_frame(orjson.dumps({"type": name, **data}), name)


class MessagesStream:
    """Turns ``chat.completion.chunk`` objects into Messages stream frames.

    ``feed`` returns the frames a chunk produces (``message_start`` and ``ping`` first);
    ``finish`` closes the open block and sends ``message_delta`` (stop reason and usage) and
    ``message_stop``. Content blocks are numbered in order and never overlap.

    With ``defer_tools`` (set when output policies may hold text back until the end),
    tool calls are sent at ``finish``, after all text, so held-back text cannot land
    after a ``tool_use`` block.
    """

    def __init__(self, *, model: str | None = None, defer_tools: bool = False) -> None:
        self.model = model
        self.defer_tools = defer_tools
        self.started = False
        self.id = ""
        self.blocks = 0  # blocks opened so far
        self.open: str | None = None  # kind of the open block: "text" | "tool_use"
        self.tools: dict[int, int] = {}  # OpenAI tool index -> block index
        self.deferred: dict[int, dict[str, Any]] = {}
        self.finish_reason: str | None = None
        self.usage: dict[str, Any] | None = None

    def _start(self, obj: dict[str, Any]) -> list[bytes]:
        self.started = True
        self.id = message_id(obj.get("id"))
        message = {
            "id": self.id,
            "type": "message",
            "role": "assistant",
            "model": obj.get("model") or self.model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {"input_tokens": 0, "output_tokens": 0},
        }
        return [_event("message_start", {"message": message}), _event("ping", {})]

    def _close(self) -> list[bytes]:
        if self.open is None:
            return []
        self.open = None
        return [_event("content_block_stop", {"index": self.blocks - 1})]

    def _open(self, block: dict[str, Any]) -> list[bytes]:
        frames = self._close()
        self.open = block["type"]
        frames.append(_event("content_block_start", {"index": self.blocks, "content_block": block}))
        self.blocks += 1
        return frames

    def text(self, text: str) -> list[bytes]:
        if not text:
            return []
        frames = [] if self.open == "text" else self._open({"type": "text", "text": ""})
        delta = {"type": "text_delta", "text": text}
        frames.append(_event("content_block_delta", {"index": self.blocks - 1, "delta": delta}))
        return frames

    def _tool(self, call: dict[str, Any]) -> list[bytes]:
        idx = call.get("index", 0)
        fn = call.get("function") or {}
        args = fn.get("arguments") if isinstance(fn.get("arguments"), str) else ""
        if self.defer_tools:
            slot = self.deferred.setdefault(idx, {"id": None, "name": None, "args": []})
            slot["id"] = slot["id"] or call.get("id")
            slot["name"] = slot["name"] or fn.get("name")
            if args:
                slot["args"].append(args)
            return []
        frames: list[bytes] = []
        if idx not in self.tools:
            frames += self._open_tool(call.get("id"), fn.get("name"))
            self.tools[idx] = self.blocks - 1
        if args:
            delta = {"type": "input_json_delta", "partial_json": args}
            frames.append(_event("content_block_delta", {"index": self.tools[idx], "delta": delta}))
        return frames

    def _open_tool(self, tool_id: Any, name: Any) -> list[bytes]:
        block = {
            "type": "tool_use",
            "id": tool_id or f"toolu_{uuid.uuid4().hex[:24]}",
            "name": name or "",
            "input": {},
        }
        return self._open(block)

    def feed(self, obj: dict[str, Any]) -> list[bytes]:
        frames = [] if self.started else self._start(obj)
        if obj.get("usage"):
            self.usage = obj["usage"]
        for choice in obj.get("choices") or ():
            if not isinstance(choice, dict) or choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta") or {}
            for key in ("content", "refusal"):
                if isinstance(delta.get(key), str):
                    frames += self.text(delta[key])
            for call in delta.get("tool_calls") or ():
                if isinstance(call, dict):
                    frames += self._tool(call)
            if choice.get("finish_reason") is not None:
                self.finish_reason = choice["finish_reason"]
        return frames

    def finish(self) -> list[bytes]:
        frames = [] if self.started else self._start({})
        for idx in sorted(self.deferred):
            slot = self.deferred[idx]
            frames += self._open_tool(slot["id"], slot["name"])
            if slot["args"]:
                delta = {"type": "input_json_delta", "partial_json": "".join(slot["args"])}
                frames.append(
                    _event("content_block_delta", {"index": self.blocks - 1, "delta": delta})
                )
        self.deferred.clear()
        frames += self._close()
        usage = usage_from_openai(self.usage)
        delta = {"stop_reason": stop_reason(self.finish_reason), "stop_sequence": None}
        frames.append(_event("message_delta", {"delta": delta, "usage": usage}))
        frames.append(_event("message_stop", {}))
        return frames

    @staticmethod
    def error(err: GatewayError) -> bytes:
        body = error_body(err)
        return sse_frame(orjson.dumps(body), "error")
