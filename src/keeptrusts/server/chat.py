"""``POST /v1/chat/completions``: run the chain, route, answer as JSON or SSE."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import orjson
from aiohttp import web

from keeptrusts import sse
from keeptrusts.context import RequestContext
from keeptrusts.errors import GatewayError, ServiceUnavailable
from keeptrusts.providers.base import Chunk
from keeptrusts.server.lifecycle import fail, openai_error, serve, timing_headers
from keeptrusts.server.responses import json_response
from keeptrusts.server.validate import check_chat_request

if TYPE_CHECKING:
    from keeptrusts.runtime import Gateway

SSE_HEADERS = {
    "content-type": "text/event-stream; charset=utf-8",
    "cache-control": "no-cache",
    "x-accel-buffering": "no",
}
AUDIT_FAILED = ServiceUnavailable(
    "The audit record could not be committed (strict durability).", code="audit_unavailable"
)


def _parse(body: Any) -> dict[str, Any]:
    check_chat_request(body)
    return body


async def chat_completions(request: web.Request) -> web.StreamResponse:
    return await serve(
        request, endpoint="chat.completions", parse=_parse, run=_run, render_error=openai_error
    )


async def _run(request: web.Request, gw: Gateway, ctx: RequestContext) -> web.StreamResponse:
    gw.authenticate(ctx)
    ctx.route = ctx.gen.router.resolve(ctx.model)
    await ctx.gen.chain.run_input(ctx)
    if gw.limits is not None:
        await gw.limits.reserve(ctx)
    if ctx.stream:
        return await _stream(request, gw, ctx)
    result = await ctx.gen.router.complete(ctx, ctx.route)
    ctx.usage = result.get("usage")
    await ctx.gen.chain.run_output(ctx, result)
    return json_response(result, headers=timing_headers(ctx))


async def _stream(request: web.Request, gw: Gateway, ctx: RequestContext) -> web.StreamResponse:
    first, rest = await ctx.gen.router.open_stream(ctx, ctx.route)
    try:
        redactor = ctx.gen.chain.stream(ctx)
        resp = web.StreamResponse(headers={**SSE_HEADERS, **timing_headers(ctx)})
        await resp.prepare(request)
        last = await _pump(resp, ctx, first, rest, redactor)
        if not await gw.record(ctx):
            last = sse.encode(orjson.dumps(AUDIT_FAILED.envelope()))
        await resp.write(last)
        await resp.write_eof()
    except (ConnectionResetError, asyncio.CancelledError):
        # The client went away: closing the generator closes the upstream connection.
        ctx.status = 499
        ctx.error = "client_disconnected"
        raise
    finally:
        await rest.aclose()
    return resp


async def _pump(
    resp: web.StreamResponse,
    ctx: RequestContext,
    first: Chunk,
    rest: AsyncIterator[Chunk],
    redactor: Any,
) -> bytes:
    """Forward chunks as they arrive; return the final frame: [DONE], or an error event."""
    chunk: Chunk | None = first
    try:
        while chunk is not None:
            obj = chunk.obj
            if obj.get("usage"):
                ctx.usage = obj["usage"]
            if redactor is not None and redactor.process(obj):
                chunk.raw = None
                if _held_back_entirely(obj):
                    chunk = await anext(rest, None)
                    continue
            await resp.write(sse.encode(chunk.encode()))
            chunk = await anext(rest, None)
        if redactor is not None:
            tail = redactor.finish()
            if tail:
                tail_chunk = {**first.obj, "choices": [{"index": 0, "delta": {"content": tail}}]}
                tail_chunk.pop("usage", None)
                await resp.write(sse.encode(orjson.dumps(tail_chunk)))
    except GatewayError as err:
        # Content may already be on the wire: never close cleanly with [DONE] after this.
        fail(ctx, err)
        return sse.encode(orjson.dumps(err.envelope()))
    return sse.DONE


def _held_back_entirely(obj: dict[str, Any]) -> bool:
    """True when redaction held back all of a chunk's text and nothing else is in it."""
    if obj.get("usage"):
        return False
    for choice in obj.get("choices") or ():
        delta = choice.get("delta") or {}
        if choice.get("finish_reason") is not None or delta.get("content") or len(delta) > 1:
            return False
        if delta and "content" not in delta:
            return False
    return True
