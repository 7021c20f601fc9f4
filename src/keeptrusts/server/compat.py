"""Adjustments for clients that do not follow the OpenAI error conventions.

LiteLLM's router calls upstreams through the OpenAI SDK in raw-response mode and retries
every 409 itself, ignoring ``x-should-retry: false`` (``litellm.utils.should_retry``), so
behind LiteLLM (the seed's Pattern A) each policy block would be sent again twice. For
requests made in that mode a 409 block is answered as 400 with the same body: LiteLLM
does not retry a 400 and hands the error to its own client. Direct SDK clients, which
honour ``x-should-retry``, still get 409.
"""

from __future__ import annotations

from aiohttp import web

from keeptrusts.errors import GatewayError, PolicyViolation

RAW_RESPONSE_HEADER = "x-stainless-raw-response"


def for_client(request: web.Request, err: GatewayError) -> GatewayError:
    """Return ``err``, with a 409 block turned into 400 for retry-ignoring SDK wrappers."""
    if (
        isinstance(err, PolicyViolation)
        and err.status == 409
        and request.headers.get(RAW_RESPONSE_HEADER) == "true"
    ):
        err.status = 400
    return err
