"""``POST /v1/embeddings``: OpenAI embeddings through OpenAI-compatible targets.

Input policies run over the text inputs: each becomes a user message of a chat-shaped
view the chain reads (``policies.text`` knows chat messages only), and a redaction
written there is copied back into ``input`` before it goes upstream; a block answers 409.
Output policies do not apply: the answer is vectors. Token-array inputs cannot be read by
policies, so they are refused when the chain has a policy that reads text.

Only OpenAI-compatible targets (``openai``, ``groq``, ``mistral``, ``openai-compatible``
and its aliases) are called, at ``POST {base_url}/embeddings`` with the target's key;
a model served only by other providers gets a 400. Fallback over a group works as for
chat: the next target on 429, 5xx, timeouts and connection failures.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any

import orjson
from aiohttp import web

from keeptrusts.config.model import Target
from keeptrusts.context import Attempt, RequestContext
from keeptrusts.errors import (
    InvalidRequest,
    ServiceUnavailable,
    UpstreamError,
    UpstreamTimeout,
)
from keeptrusts.providers import registry
from keeptrusts.providers.base import Call, HttpProvider, UpstreamRequest, bearer_headers
from keeptrusts.providers.openai import OpenAIProvider
from keeptrusts.server.lifecycle import openai_error, serve, timing_headers
from keeptrusts.server.responses import json_response

if TYPE_CHECKING:
    from keeptrusts.runtime import Gateway

ENDPOINT = "embeddings"
# Input policies that never read request text: token arrays do not bypass them.
TEXT_BLIND_POLICIES = frozenset({"rbac"})


class EmbeddingsCall(HttpProvider):
    """One ``POST {base_url}/embeddings``; ``HttpProvider`` maps its errors and timeouts."""

    name = "embeddings"

    def build_request(self, call: Call) -> UpstreamRequest:
        headers = {"content-type": "application/json", "x-request-id": call.request_id}
        headers.update(bearer_headers(call))
        headers.update(call.target.headers)
        url = call.target.base_url.rstrip("/") + "/embeddings"
        return UpstreamRequest(url, headers, orjson.dumps(call.body))

    def parse_response(self, data: dict[str, Any], call: Call) -> dict[str, Any]:
        return data


_CALL = EmbeddingsCall()


def _bad(param: str, message: str) -> InvalidRequest:
    return InvalidRequest(message, param=param, code="invalid_value")


def _is_tokens(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(type(t) is int for t in value)


def check_embeddings_request(body: Any) -> None:
    """Raise ``InvalidRequest`` for the first problem found in ``body``."""
    if not isinstance(body, dict):
        raise InvalidRequest("The request body must be a JSON object.", code="invalid_json")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise _bad("model", "'model' is required and must be a non-empty string.")
    if "input" not in body:
        raise _bad("input", "'input' is required.")
    value = body["input"]
    ok = (
        isinstance(value, str)
        or _is_tokens(value)
        or (
            isinstance(value, list)
            and bool(value)
            and (all(isinstance(v, str) for v in value) or all(_is_tokens(v) for v in value))
        )
    )
    if not ok:
        raise _bad(
            "input",
            "'input' must be a string, an array of strings, an array of token ids or an "
            "array of token-id arrays.",
        )
    fmt = body.get("encoding_format")
    if fmt is not None and fmt not in ("float", "base64"):
        raise _bad("encoding_format", "'encoding_format' must be 'float' or 'base64'.")
    dims = body.get("dimensions")
    if dims is not None and (type(dims) is not int or dims < 1):
        raise _bad("dimensions", "'dimensions' must be a positive integer.")


def input_view(body: dict[str, Any]) -> dict[str, Any] | None:
    """A chat-shaped body with one user message per text input, or None for token ids."""
    value = body["input"]
    texts = [value] if isinstance(value, str) else value
    if not all(isinstance(t, str) for t in texts):
        return None
    return {"model": body["model"], "messages": [{"role": "user", "content": t} for t in texts]}


async def run_input_policies(gw: Gateway, ctx: RequestContext) -> None:
    """Run the input chain over the text inputs; copy redactions back into ``input``."""
    body = ctx.body
    view = input_view(body)
    if view is None:
        readers = [p.name for p in ctx.gen.chain.input if p.name not in TEXT_BLIND_POLICIES]
        if readers:
            raise _bad(
                "input",
                "Token-id inputs cannot be checked by this gateway's input policies "
                f"({', '.join(readers)}); send the input as text.",
            )
        view = {"model": body["model"], "messages": []}
    ctx.body = view
    try:
        await ctx.gen.chain.run_input(ctx)
    finally:
        ctx.body = body
    texts = [m["content"] for m in view["messages"]]
    if isinstance(body["input"], str):
        body["input"] = texts[0]
    elif texts:
        body["input"] = texts


def embedding_targets(route: Any) -> list[Target]:
    """The route's OpenAI-compatible targets; 400 when it has none."""
    ok = [t for t in route.targets if issubclass(registry.get(t.provider), OpenAIProvider)]
    if not ok:
        names = ", ".join(f"{t.id} (provider {t.provider})" for t in route.targets)
        raise InvalidRequest(
            f"Embeddings are not supported by the target(s) serving model {route.model!r}: "
            f"{names}. Route embeddings to an OpenAI-compatible target (openai, groq, "
            "mistral, openai-compatible).",
            param="model",
            code="embeddings_not_supported",
        )
    return ok


def _record(ctx: RequestContext, target: Target, started: float, exc: UpstreamError | None) -> None:
    ms = (time.perf_counter() - started) * 1000.0
    ctx.upstream_ms += ms
    outcome = "ok" if exc is None else (exc.code or f"http_{exc.status}")
    status = 200 if exc is None else exc.status
    ctx.attempts.append(Attempt(target.id, target.provider, outcome, status, round(ms, 3)))


async def call_upstream(gw: Gateway, ctx: RequestContext, targets: list[Target]) -> dict:
    ready = [t for t in targets if t.available]
    if not ready:
        why = "; ".join(f"{t.id}: {t.unavailable}" for t in targets)
        raise ServiceUnavailable(f"No target can serve model {ctx.model!r} ({why})")
    last: UpstreamError | None = None
    for target in ready:
        body = ctx.body
        if target.model and body.get("model") != target.model:
            body = {**body, "model": target.model}
        call = Call(
            body=body,
            target=target,
            http=ctx.gen.router.http,
            request_id=ctx.request_id,
            client_auth=ctx.client_auth,
        )
        started = time.perf_counter()
        try:
            try:
                async with asyncio.timeout(target.timeouts.total):
                    result = await _CALL.complete(call)
            except TimeoutError as exc:
                raise UpstreamTimeout(
                    f"target {target.id} did not answer within its total timeout "
                    f"({target.timeouts.total}s)"
                ) from exc
        except UpstreamError as exc:
            _record(ctx, target, started, exc)
            last = exc
            if not exc.retryable:
                raise
            continue
        _record(ctx, target, started, None)
        ctx.target = target
        return result
    assert last is not None
    raise last


def _parse(body: Any) -> dict[str, Any]:
    check_embeddings_request(body)
    return body


async def _run(request: web.Request, gw: Gateway, ctx: RequestContext) -> web.Response:
    gw.authenticate(ctx)
    ctx.route = ctx.gen.router.resolve(ctx.model)
    targets = embedding_targets(ctx.route)  # refuse early, before any policy work
    await run_input_policies(gw, ctx)
    if gw.limits is not None:
        await gw.limits.reserve(ctx)
    result = await call_upstream(gw, ctx, targets)
    ctx.usage = result.get("usage") if isinstance(result, dict) else None
    return json_response(result, headers=timing_headers(ctx))


async def embeddings(request: web.Request) -> web.StreamResponse:
    return await serve(
        request, endpoint=ENDPOINT, parse=_parse, run=_run, render_error=openai_error
    )
