"""``POST /v1/chat/completions``: run the chain, route, answer as JSON or SSE."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import orjson
from aiohttp import web

from keeptrusts import sse
from keeptrusts.context import RequestContext
from keeptrusts.errors import GatewayError
from keeptrusts.providers.base import Chunk, Frames
from keeptrusts.routing.streams import Item
from keeptrusts.server.lifecycle import fail, openai_error, serve, serve_stream, timing_headers
from keeptrusts.server.responses import json_response
from keeptrusts.server.validate import check_chat_request

if TYPE_CHECKING:
    from keeptrusts.runtime import Gateway


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
    async def pump(resp: web.StreamResponse, first: Chunk, rest: Any, redactor: Any) -> bytes:
        return await _pump(resp, ctx, first, rest, redactor)

    return await serve_stream(
        request,
        ctx,
        record=gw.record,
        headers=timing_headers(ctx),
        pump=pump,
        error_frame=lambda err: sse.encode(orjson.dumps(err.envelope())),
        relay=True,
    )


async def _pump(
    resp: web.StreamResponse,
    ctx: RequestContext,
    first: Item,
    rest: AsyncIterator[Item],
    redactor: Any,
) -> bytes:
    """Forward the stream as it arrives; return the final frame: [DONE], or an error event."""
    try:
        if type(first) is Frames:
            await _relay(resp, ctx, first, rest)  # type: ignore[arg-type]
        else:
            await _forward(resp, ctx, first, rest, redactor)  # type: ignore[arg-type]
    except GatewayError as err:
        # Content may already be on the wire: never close cleanly with [DONE] after this.
        fail(ctx, err)
        return sse.encode(orjson.dumps(err.envelope()))
    return sse.DONE


async def _relay(
    resp: web.StreamResponse, ctx: RequestContext, first: Frames, rest: AsyncIterator[Frames]
) -> None:
    """Upstream bytes, untouched: one write per upstream read (no output policy runs)."""
    frames: Frames | None = first
    while frames is not None:
        if frames.usage:
            ctx.usage = frames.usage
        await resp.write(frames.data)
        frames = await anext(rest, None)


async def _forward(
    resp: web.StreamResponse,
    ctx: RequestContext,
    first: Chunk,
    rest: AsyncIterator[Chunk],
    redactor: Any,
) -> None:
    """Parsed chunks, through the output policies' redactor when there is one."""
    chunk: Chunk | None = first
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
