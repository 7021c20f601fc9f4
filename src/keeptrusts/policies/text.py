"""Every piece of text a model reads or writes, as slots a policy can read and rewrite.

Input: each message's content (a string, or the ``text`` of its parts), system prompts,
``role: tool`` results, assistant ``tool_calls`` arguments (and legacy ``function_call``).
Output: each choice's content and ``tool_calls`` arguments.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any


@dataclass(slots=True)
class TextSlot:
    """A reference to ``container[key]``, a string; ``where`` says what it is."""

    container: Any
    key: Any
    where: str  # e.g. "user", "system", "tool", "tool_call_arguments", "assistant"

    @property
    def text(self) -> str:
        return self.container[self.key]

    @text.setter
    def text(self, value: str) -> None:
        self.container[self.key] = value


def _message_slots(msg: dict[str, Any]) -> Iterator[TextSlot]:
    role = str(msg.get("role") or "user")
    content = msg.get("content")
    if isinstance(content, str):
        yield TextSlot(msg, "content", role)
    elif isinstance(content, list):
        for part in content:
            if isinstance(part, dict) and isinstance(part.get("text"), str):
                yield TextSlot(part, "text", role)
    for call in msg.get("tool_calls") or ():
        fn = call.get("function") if isinstance(call, dict) else None
        if isinstance(fn, dict) and isinstance(fn.get("arguments"), str):
            yield TextSlot(fn, "arguments", "tool_call_arguments")
    fc = msg.get("function_call")
    if isinstance(fc, dict) and isinstance(fc.get("arguments"), str):
        yield TextSlot(fc, "arguments", "tool_call_arguments")


def request_slots(body: dict[str, Any]) -> list[TextSlot]:
    """Return slots for all text in a chat-completions request."""
    slots: list[TextSlot] = []
    for msg in body.get("messages") or ():
        if isinstance(msg, dict):
            slots.extend(_message_slots(msg))
    return slots


def response_slots(response: dict[str, Any]) -> list[TextSlot]:
    """Return slots for all text in a ``chat.completion``."""
    slots: list[TextSlot] = []
    for choice in response.get("choices") or ():
        msg = choice.get("message") if isinstance(choice, dict) else None
        if isinstance(msg, dict):
            slots.extend(_message_slots(msg))
    return slots
