"""``POST /v1/chat/completions``: parse once, run the chain, route, answer (JSON or SSE)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import orjson
from aiohttp import web

from keeptrusts import sse
from keeptrusts.context import RequestContext
from keeptrusts.errors import GatewayError, InvalidRequest, PayloadTooLarge, UpstreamError
from keeptrusts.providers.base import Chunk
from keeptrusts.server.responses import error_response, json_response
from keeptrusts.server.validate import check_chat_request

if TYPE_CHECKING:
    from keeptrusts.runtime import Gateway

SSE_HEADERS = {
    "content-type": "text/event-stream; charset=utf-8",
    "cache-control": "no-cache",
    "x-accel-buffering": "no",
}


async def read_json(request: web.Request, limit: int) -> Any:
    """Read and parse the body once; 413 past ``limit``, 400 if it is not JSON."""
    if request.content_length is not None and request.content_length > limit:
        raise PayloadTooLarge(f"Request body exceeds the gateway limit of {limit} bytes.")
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge as exc:
        raise PayloadTooLarge(f"Request body exceeds the gateway limit of {limit} bytes.") from exc
    if len(raw) > limit:
        raise PayloadTooLarge(f"Request body exceeds the gateway limit of {limit} bytes.")
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequest(
            f"The request body is not valid JSON: {exc.msg} at position {exc.pos}.",
            code="invalid_json",
        ) from exc


def request_id(request: web.Request) -> str:
    """The client's ``x-request-id`` (bounded), or a new one."""
    return (request.headers.get("x-request-id") or f"req_{uuid.uuid4().hex}")[:128]


def new_context(
    request: web.Request, endpoint: str, body: dict[str, Any], rid: str
) -> RequestContext:
    return RequestContext(
        request_id=rid,
        endpoint=endpoint,
        body=body,
        model=body.get("model", ""),
        stream=bool(body.get("stream")),
        headers=dict(request.headers),
        client_auth=request.headers.get("authorization"),
    )


def timing_headers(ctx: RequestContext) -> dict[str, str]:
    return {
        "x-request-id": ctx.request_id,
        "x-keeptrusts-overhead-ms": f"{ctx.overhead_ms():.3f}",
        "x-keeptrusts-policy-ms": f"{ctx.policy_ms:.3f}",
    }


async def chat_completions(request: web.Request) -> web.StreamResponse:
    gw: Gateway = request.app["gateway"]
    ctx: RequestContext | None = None
    rid = request_id(request)
    try:
        body = await read_json(request, gw.settings.max_body_bytes)
        check_chat_request(body)
        ctx = new_context(request, "chat.completions", body, rid)
        gw.begin()
        gw.authenticate(ctx)
        ctx.route = gw.router.resolve(ctx.model)
        await gw.chain.run_input(ctx)
        if ctx.stream:
            return await _stream(request, gw, ctx, ctx.route)
        result = await gw.router.complete(ctx, ctx.route)
        ctx.usage = result.get("usage")
        await gw.chain.run_output(ctx, result)
        return json_response(result, headers=timing_headers(ctx))
    except GatewayError as err:
        if ctx is None:
            return error_response(err, request_id=rid)
        ctx.status = err.status
        ctx.error = err.code or err.type
        return error_response(err, request_id=ctx.request_id, extra_headers=timing_headers(ctx))
    finally:
        if ctx is not None:
            gw.finish(ctx)


async def _stream(request: web.Request, gw: Gateway, ctx: RequestContext, route: Any) -> Any:
    first, rest = await gw.router.open_stream(ctx, route)
    redactor = gw.chain.stream(ctx)
    resp = web.StreamResponse(headers={**SSE_HEADERS, **timing_headers(ctx)})
    try:
        await resp.prepare(request)
        await _pump(resp, ctx, first, rest, redactor)
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
) -> None:
    """Forward chunks as they arrive; end with [DONE], or with an error event on failure."""
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
        ctx.status = err.status
        ctx.error = err.code or err.type
        await resp.write(sse.encode(orjson.dumps(err.envelope())))
        await resp.write_eof()
        return
    await resp.write(sse.DONE)
    await resp.write_eof()


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


__all__ = ["UpstreamError", "chat_completions", "new_context", "read_json", "timing_headers"]
