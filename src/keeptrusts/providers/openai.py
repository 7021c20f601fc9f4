"""OpenAI and the OpenAI-compatible APIs (Groq, Mistral, vLLM, Ollama, LM Studio, ...).

The request body passes through untouched except for ``model``: parameters this gateway
does not know reach the upstream as the client sent them.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import orjson

from keeptrusts.providers.base import (
    Call,
    Chunk,
    HttpProvider,
    StreamTranslator,
    UpstreamRequest,
    bearer_headers,
    error_from_body,
)
from keeptrusts.providers.registry import register
from keeptrusts.sse import SSEEvent


@register("openai")
class OpenAIProvider(HttpProvider):
    name = "openai"
    default_base_url = "https://api.openai.com/v1"
    default_key_env = "OPENAI_API_KEY"
    openai_wire = True

    def build_request(self, call: Call) -> UpstreamRequest:
        headers = {"content-type": "application/json", "x-request-id": call.request_id}
        headers.update(bearer_headers(call))
        headers.update(call.target.headers)
        if call.extra_headers:
            headers.update(call.extra_headers)
        url = call.target.base_url.rstrip("/") + "/chat/completions"
        return UpstreamRequest(url, headers, orjson.dumps(call.body))

    def parse_response(self, data: dict[str, Any], call: Call) -> dict[str, Any]:
        return data

    def translator(self, call: Call) -> StreamTranslator:
        return _OpenAIStream()


class _OpenAIStream(StreamTranslator):
    __slots__ = ("done",)

    def __init__(self) -> None:
        self.done = False

    def feed(self, event: SSEEvent) -> Iterable[Chunk]:
        data = event.data
        if data == b"[DONE]":
            self.done = True
            return ()
        if not data:
            return ()
        obj = orjson.loads(data)
        if isinstance(obj, dict) and "error" in obj and "choices" not in obj:
            raise error_from_body(502, data)
        return (Chunk(obj, data),)


@register("groq")
class GroqProvider(OpenAIProvider):
    name = "groq"
    default_base_url = "https://api.groq.com/openai/v1"
    default_key_env = "GROQ_API_KEY"


@register("mistral")
class MistralProvider(OpenAIProvider):
    name = "mistral"
    default_base_url = "https://api.mistral.ai/v1"
    default_key_env = "MISTRAL_API_KEY"


@register("openai-compatible", "openai_compatible", "vllm", "ollama", "lmstudio", "localai")
class OpenAICompatibleProvider(OpenAIProvider):
    """Any server speaking OpenAI's API; it has no default address, so ``base_url`` is required."""

    name = "openai-compatible"
    default_base_url = None
    default_key_env = None
