"""JSON and error responses, written the same way by every handler."""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from keeptrusts.errors import GatewayError

JSON = "application/json"


def json_response(
    data: Any, *, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    return web.Response(body=orjson.dumps(data), status=status, content_type=JSON, headers=headers)


def error_response(
    err: GatewayError, *, request_id: str | None = None, extra_headers: dict | None = None
) -> web.Response:
    headers = dict(err.headers)
    if request_id:
        headers["x-request-id"] = request_id
    if extra_headers:
        headers.update(extra_headers)
    return json_response(err.envelope(), status=err.status, headers=headers)
