"""The HTTP application: routes only. Handlers live in their own modules."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from aiohttp import web

from keeptrusts.console import add_console_routes
from keeptrusts.errors import GatewayError
from keeptrusts.server.admin import add_admin_routes
from keeptrusts.server.chat import chat_completions
from keeptrusts.server.embeddings import embeddings
from keeptrusts.server.lifecycle import request_id
from keeptrusts.server.messages import messages
from keeptrusts.server.responses import error_response, json_response
from keeptrusts.server.responses_api import responses

if TYPE_CHECKING:
    from keeptrusts.runtime import Gateway


async def health(request: web.Request) -> web.Response:
    gw: Gateway = request.app["gateway"]
    return json_response(gw.health())


async def list_models(request: web.Request) -> web.Response:
    gw: Gateway = request.app["gateway"]
    created = int(gw.started)
    data = [
        {"id": name, "object": "model", "created": created, "owned_by": "keeptrusts"}
        for name in gw.router.model_names()
    ]
    return json_response({"object": "list", "data": data})


async def metrics(request: web.Request) -> web.Response:
    gw: Gateway = request.app["gateway"]
    return web.Response(body=gw.metrics.render(), content_type="text/plain", charset="utf-8")


async def not_found(request: web.Request) -> web.Response:
    return error_response(
        GatewayError(
            f"Unknown endpoint {request.method} {request.path}",
            status=404,
            type="invalid_request_error",
            code="unknown_endpoint",
        )
    )


@web.middleware
async def _method_errors(request: web.Request, handler):  # type: ignore[no-untyped-def]
    try:
        return await handler(request)
    except web.HTTPMethodNotAllowed:
        return error_response(
            GatewayError(
                f"Method {request.method} is not allowed on {request.path}",
                status=405,
                type="invalid_request_error",
                code="method_not_allowed",
            )
        )


async def _ensure_request_id(request: web.Request, response: web.StreamResponse) -> None:
    """Every response carries ``x-request-id``: the API handlers set it; this covers the rest."""
    if "x-request-id" not in response.headers:
        response.headers["x-request-id"] = request_id(request)


def build_app(gateway: Gateway) -> web.Application:
    """Return the aiohttp application serving ``gateway``; start/close hook its lifecycle."""
    app = web.Application(
        client_max_size=gateway.settings.max_body_bytes + 1, middlewares=[_method_errors]
    )
    app["gateway"] = gateway
    app.on_response_prepare.append(_ensure_request_id)
    app["started_monotonic"] = time.monotonic()
    app.router.add_post("/v1/chat/completions", chat_completions)
    app.router.add_post("/chat/completions", chat_completions)
    app.router.add_post("/v1/messages", messages)
    app.router.add_post("/v1/embeddings", embeddings)
    app.router.add_post("/embeddings", embeddings)
    app.router.add_post("/v1/responses", responses)
    app.router.add_post("/responses", responses)
    app.router.add_get("/v1/models", list_models)
    app.router.add_get("/models", list_models)
    app.router.add_get("/health", health)
    app.router.add_get("/metrics", metrics)
    add_admin_routes(app)
    add_console_routes(app)
    app.router.add_route("*", "/{tail:.*}", not_found)

    async def lifecycle(_: web.Application):  # type: ignore[no-untyped-def]
        await gateway.start()
        yield
        await gateway.close()

    app.cleanup_ctx.append(lifecycle)
    return app
