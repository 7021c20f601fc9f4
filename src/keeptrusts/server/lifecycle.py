"""One request's life around a handler: parse, context, errors, metrics and audit.

Every endpoint (chat, messages, embeddings) runs through ``serve``: it reads the body once,
builds the ``RequestContext``, turns ``GatewayError`` into the endpoint's error shape, and
records the request. In strict durability mode the audit event is committed before the
response leaves (streams commit before their final frame), so no client sees an answer
whose record could still be lost.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any

import orjson
from aiohttp import web

from keeptrusts.context import RequestContext
from keeptrusts.errors import GatewayError, InvalidRequest, PayloadTooLarge, ServiceUnavailable
from keeptrusts.server.compat import for_client
from keeptrusts.server.responses import error_response

if TYPE_CHECKING:
    from keeptrusts.runtime import Gateway

ErrorRenderer = Callable[[GatewayError, str, "RequestContext | None"], web.Response]
Runner = Callable[[web.Request, "Gateway", RequestContext], Awaitable[web.StreamResponse]]
Parser = Callable[[Any], dict[str, Any]]


def request_id(request: web.Request) -> str:
    """The client's ``x-request-id`` (bounded), or a new one."""
    rid = request.headers.get("x-request-id")
    if rid:
        return rid[:128]
    # Time-ordered like event ids (48-bit ms, 80 random bits): the audit log's request_id
    # index then grows at its end instead of touching random pages on every commit. Unique,
    # not secret: getrandbits avoids a syscall per request.
    return f"req_{int(time.time() * 1000):012x}{random.getrandbits(80):020x}"


async def read_json(request: web.Request, limit: int) -> Any:
    """Read and parse the body once; 413 past ``limit``, 400 if it is not JSON."""
    too_large = f"Request body exceeds the gateway limit of {limit} bytes."
    if request.content_length is not None and request.content_length > limit:
        raise PayloadTooLarge(too_large)
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge as exc:
        raise PayloadTooLarge(too_large) from exc
    if len(raw) > limit:
        raise PayloadTooLarge(too_large)
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequest(
            f"The request body is not valid JSON: {exc.msg} at position {exc.pos}.",
            code="invalid_json",
        ) from exc


def timing_headers(ctx: RequestContext) -> dict[str, str]:
    return {
        "x-request-id": ctx.request_id,
        "x-keeptrusts-overhead-ms": f"{ctx.overhead_ms():.3f}",
        "x-keeptrusts-policy-ms": f"{ctx.policy_ms:.3f}",
    }


def openai_error(err: GatewayError, rid: str, ctx: RequestContext | None) -> web.Response:
    """Render ``err`` in OpenAI's envelope, with timing headers once a context exists."""
    extra = timing_headers(ctx) if ctx is not None else None
    return error_response(err, request_id=rid, extra_headers=extra)


SSE_HEADERS = {
    "content-type": "text/event-stream; charset=utf-8",
    "cache-control": "no-cache",
    "x-accel-buffering": "no",
}
AUDIT_FAILED = ServiceUnavailable(
    "The audit record could not be committed (strict durability).", code="audit_unavailable"
)
# (response, first chunk, the rest, redactor or None) -> the final frame to send.
Pump = Callable[[web.StreamResponse, Any, AsyncIterator[Any], Any], Awaitable[bytes]]


async def serve_stream(
    request: web.Request,
    ctx: RequestContext,
    *,
    record: Callable[[RequestContext], Awaitable[bool]],
    headers: dict[str, str],
    pump: Pump,
    error_frame: Callable[[GatewayError], bytes],
    relay: bool = False,
) -> web.StreamResponse:
    """Open the upstream stream, send it through ``pump`` and finish it.

    The audit event is recorded before the final frame (so strict durability holds for
    streams too), and a client that goes away closes the upstream connection. ``relay``:
    the client reads OpenAI SSE, so with no output policy a target speaking it may stream
    its bytes untouched (``providers.relay``).
    """
    redactor = ctx.gen.chain.stream(ctx)
    first, rest = await ctx.gen.router.open_stream(ctx, ctx.route, relay=relay and redactor is None)
    try:
        resp = web.StreamResponse(headers={**SSE_HEADERS, **headers})
        await resp.prepare(request)
        last = await pump(resp, first, rest, redactor)
        if not await record(ctx):
            last = error_frame(AUDIT_FAILED)
        await resp.write_eof(last)  # the last frame and the end of the body: one write
    except (ConnectionResetError, asyncio.CancelledError):
        ctx.status = 499
        ctx.error = "client_disconnected"
        raise
    finally:
        await rest.aclose()
    return resp


def fail(ctx: RequestContext, err: GatewayError) -> None:
    """Record ``err`` as the request's outcome."""
    ctx.status = err.status
    ctx.error = err.code or err.type


async def serve(
    request: web.Request,
    *,
    endpoint: str,
    parse: Parser,
    run: Runner,
    render_error: ErrorRenderer,
) -> web.StreamResponse:
    gw: Gateway = request.app["gateway"]
    rid = request_id(request)
    ctx: RequestContext | None = None
    try:
        try:
            body = parse(await read_json(request, gw.settings.max_body_bytes))
            ctx = RequestContext(
                request_id=rid,
                endpoint=endpoint,
                body=body,
                model=body.get("model", ""),
                stream=bool(body.get("stream")),
                headers=request.headers,  # type: ignore[arg-type]
                client_auth=request.headers.get("authorization"),
                gen=gw.gen,
            )
            gw.begin(ctx)
            if gw.tracing is not None:
                gw.tracing.begin(ctx, request.headers)
            if gw.overloaded():
                raise ServiceUnavailable(
                    "The audit log is behind; refusing new requests until it catches up.",
                    code="audit_backlog",
                    headers={"retry-after": "1"},
                )
            response = await run(request, gw, ctx)
        except GatewayError as err:
            err = for_client(request, err)
            if ctx is None:
                return render_error(err, rid, None)
            fail(ctx, err)
            response = render_error(err, rid, ctx)
        if response.prepared:  # a stream: it recorded itself before its last frame
            return response
        if not await gw.record(ctx):
            return render_error(
                ServiceUnavailable(
                    "The audit record could not be committed (strict durability); the "
                    "request was processed but its answer is withheld.",
                    code="audit_unavailable",
                ),
                rid,
                ctx,
            )
        return response
    finally:
        if ctx is not None:
            gw.finish(ctx)
