"""``POST /v1/responses``: not served; a clear 501 pointing at chat completions.

OpenAI's Responses API carries server-side state (``previous_response_id``, stored
responses, built-in tools, reasoning items) that a translation onto chat completions
cannot reproduce faithfully, so the gateway refuses it rather than answer differently.
"""

from __future__ import annotations

import contextlib

from aiohttp import web

from keeptrusts.errors import GatewayError
from keeptrusts.server.lifecycle import request_id
from keeptrusts.server.responses import error_response

MESSAGE = (
    "The Responses API (POST /v1/responses) is not supported by this gateway. "
    "Use POST /v1/chat/completions (or POST /v1/messages for Anthropic clients)."
)


async def responses(request: web.Request) -> web.Response:
    rid = request_id(request)
    with contextlib.suppress(web.HTTPException):
        await request.read()  # drain the body so the connection stays usable
    err = GatewayError(
        MESSAGE,
        status=501,
        type="invalid_request_error",
        code="not_implemented",
        # OpenAI SDKs retry 5xx by default; this answer never changes.
        headers={"x-should-retry": "false"},
    )
    return error_response(err, request_id=rid)
