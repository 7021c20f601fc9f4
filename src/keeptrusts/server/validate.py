"""Checks on a chat-completions body: enough to give a clear 400 naming the field.

Parameters we do not know pass through untouched; we only check the ones we act on.
"""

from __future__ import annotations

from typing import Any

from keeptrusts.errors import InvalidRequest

_ROLES = {"system", "developer", "user", "assistant", "tool", "function"}


def _bad(param: str, message: str) -> InvalidRequest:
    return InvalidRequest(message, param=param, code="invalid_value")


def check_chat_request(body: Any) -> None:
    """Raise ``InvalidRequest`` for the first problem found in ``body``."""
    if not isinstance(body, dict):
        raise InvalidRequest("The request body must be a JSON object.", code="invalid_json")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise _bad("model", "'model' is required and must be a non-empty string.")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise _bad("messages", "'messages' is required and must be a non-empty array.")
    for i, msg in enumerate(messages):
        if not isinstance(msg, dict):
            raise _bad(f"messages[{i}]", f"messages[{i}] must be an object.")
        role = msg.get("role")
        if role not in _ROLES:
            raise _bad(
                f"messages[{i}].role",
                f"messages[{i}].role must be one of {sorted(_ROLES)}, got {role!r}.",
            )
        content = msg.get("content")
        if content is not None and not isinstance(content, (str, list)):
            raise _bad(
                f"messages[{i}].content", f"messages[{i}].content must be a string or array."
            )
    if "stream" in body and not isinstance(body["stream"], bool):
        raise _bad("stream", "'stream' must be a boolean.")
    for key in ("max_tokens", "max_completion_tokens", "n"):
        value = body.get(key)
        if value is not None and (type(value) is not int or value < 1):
            raise _bad(key, f"'{key}' must be a positive integer.")
    for key in ("temperature", "top_p"):
        value = body.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise _bad(key, f"'{key}' must be a number.")
    opts = body.get("stream_options")
    if opts is not None and not isinstance(opts, dict):
        raise _bad("stream_options", "'stream_options' must be an object.")
