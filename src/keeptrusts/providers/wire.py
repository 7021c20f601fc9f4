"""Wire-shape helpers shared by the parsed and the relayed stream paths: upstream error
bodies (OpenAI and Anthropic style) and whether an OpenAI chunk is more than preamble."""

from __future__ import annotations

from typing import Any

import orjson

from keeptrusts.errors import UpstreamError


def carries_content(obj: dict[str, Any]) -> bool:
    """Whether a chunk is more than preamble: any delta field besides ``role`` with a
    value, a finish reason, or usage."""
    if obj.get("usage"):
        return True
    for choice in obj.get("choices") or ():
        if not isinstance(choice, dict):
            return True
        if choice.get("finish_reason"):
            return True
        delta = choice.get("delta")
        if isinstance(delta, dict) and any(v for k, v in delta.items() if k != "role"):
            return True
    return False


def error_from_body(status: int, body: bytes) -> UpstreamError:
    """Read OpenAI- and Anthropic-style error bodies (``{"error": {...}}``) into an error."""
    message, etype, code = f"upstream returned HTTP {status}", None, None
    try:
        data = orjson.loads(body)
        err = data.get("error", data) if isinstance(data, dict) else None
        if isinstance(err, dict):
            message = str(err.get("message") or message)
            etype = err.get("type")
            code = err.get("code")
        elif isinstance(err, str):
            message = err
    except orjson.JSONDecodeError:
        text = body[:200].decode("utf-8", "replace").strip()
        if text:
            message = f"{message}: {text}"
    code = code if isinstance(code, str) else None
    return UpstreamError(message, status=status, type=etype or "upstream_error", code=code)
