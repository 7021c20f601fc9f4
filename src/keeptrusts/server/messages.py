"""``POST /v1/messages``: Anthropic's Messages API in and out, served by any target.

The request is translated to the internal chat-completions body
(``formats.anthropic_messages``) and runs exactly the chat pipeline: authenticate, route,
input policies, upstream, output policies (or the stream redactor), audit. The answer,
its stream and its errors are translated back to Anthropic's shapes. A request routed to
an Anthropic target is translated twice (Messages -> OpenAI -> Messages); the fields the
translation supports survive the round trip.

The ``anthropic`` SDK authenticates with ``x-api-key``; it counts like
``Authorization: Bearer`` for gateway keys, which are never forwarded upstream.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from aiohttp import web

from keeptrusts.context import RequestContext
from keeptrusts.errors import GatewayError
from keeptrusts.formats.anthropic_messages import (
    MessagesStream,
    error_body,
    from_openai,
    to_openai,
)
from keeptrusts.identity.keys import KEY_PREFIX
from keeptrusts.providers.base import Chunk
from keeptrusts.server.lifecycle import fail, serve, serve_stream, timing_headers
from keeptrusts.server.responses import json_response

if TYPE_CHECKING:
    from keeptrusts.runtime import Gateway

ENDPOINT = "messages"


def client_auth(request: web.Request) -> str | None:
    """The caller's credential as an ``Authorization`` value.

    ``x-api-key: K`` becomes ``Bearer K``, so the authenticator reads it as a gateway key
    and a target without its own secret gets a well-formed header. With both headers, a
    gateway key in either one wins (it identifies the caller and is never forwarded).
    """
    auth = (request.headers.get("authorization") or "").strip() or None
    key = (request.headers.get("x-api-key") or "").strip()
    from_key = f"Bearer {key}" if key else None
    if auth and from_key and _is_gateway_key(from_key) and not _is_gateway_key(auth):
        return from_key
    return auth or from_key


def _is_gateway_key(auth: str) -> bool:
    token = auth[7:].strip() if auth[:7].lower() == "bearer " else auth
    return token.startswith(KEY_PREFIX)


def _headers(ctx: RequestContext) -> dict[str, str]:
    # The anthropic SDK reads ``request-id`` (``message._request_id``).
    return {**timing_headers(ctx), "request-id": ctx.request_id}


def anthropic_error(
    err: GatewayError, rid: str, extra_headers: dict[str, str] | None = None
) -> web.Response:
    headers = {**err.headers, "x-request-id": rid, "request-id": rid, **(extra_headers or {})}
    return json_response(error_body(err), status=err.status, headers=headers)


def _anthropic_only(route: Any) -> bool:
    return bool(route.targets) and all(t.provider == "anthropic" for t in route.targets)


def _error(err: GatewayError, rid: str, ctx: RequestContext | None) -> web.Response:
    return anthropic_error(err, rid, timing_headers(ctx) if ctx is not None else None)


async def messages(request: web.Request) -> web.StreamResponse:
    return await serve(request, endpoint=ENDPOINT, parse=_parse, run=_run, render_error=_error)


def _parse(raw: Any) -> dict[str, Any]:
    body = to_openai(raw)
    # Only Anthropic upstreams understand top_k; _run drops it for any other route.
    if isinstance(raw, dict) and raw.get("top_k") is not None:
        body["top_k"] = raw["top_k"]
    return body


async def _run(request: web.Request, gw: Gateway, ctx: RequestContext) -> web.StreamResponse:
    ctx.client_auth = client_auth(request)
    gw.authenticate(ctx)
    ctx.route = ctx.gen.router.resolve(ctx.model)
    if "top_k" in ctx.body and not _anthropic_only(ctx.route):
        del ctx.body["top_k"]
    await ctx.gen.chain.run_input(ctx)
    if gw.limits is not None:
        await gw.limits.reserve(ctx)
    if ctx.stream:
        return await _stream(request, gw, ctx)
    result = await ctx.gen.router.complete(ctx, ctx.route)
    ctx.usage = result.get("usage")
    await ctx.gen.chain.run_output(ctx, result)
    return json_response(from_openai(result, model=ctx.model), headers=_headers(ctx))


async def _stream(request: web.Request, gw: Gateway, ctx: RequestContext) -> web.StreamResponse:
    async def pump(resp: web.StreamResponse, first: Chunk, rest: Any, redactor: Any) -> bytes:
        encoder = MessagesStream(model=ctx.model, defer_tools=redactor is not None)
        return await _pump(resp, ctx, first, rest, redactor, encoder)

    return await serve_stream(
        request,
        ctx,
        record=gw.record,
        headers=_headers(ctx),
        pump=pump,
        error_frame=MessagesStream.error,
    )


async def _pump(
    resp: web.StreamResponse,
    ctx: RequestContext,
    first: Chunk,
    rest: AsyncIterator[Chunk],
    redactor: Any,
    encoder: MessagesStream,
) -> bytes:
    """Forward chunks as Messages events; return the last frames (``message_stop`` or error)."""
    chunk: Chunk | None = first
    try:
        while chunk is not None:
            obj = chunk.obj
            if obj.get("usage"):
                ctx.usage = obj["usage"]
            if redactor is not None:
                redactor.process(obj)
            frames = encoder.feed(obj)
            if frames:
                await resp.write(b"".join(frames))
            chunk = await anext(rest, None)
        frames = encoder.text(redactor.finish()) if redactor is not None else []
        await resp.write(b"".join(frames))
        return b"".join(encoder.finish())
    except GatewayError as err:
        # Content may already be on the wire: end with an error event, never message_stop.
        fail(ctx, err)
        return encoder.error(err)
