"""The provider seam: one class per upstream API, registered under one name.

A provider turns an OpenAI chat-completions request body into its native call and the
native answer back into OpenAI's shape (``chat.completion`` and ``chat.completion.chunk``).
Most providers are HTTP APIs and subclass ``HttpProvider``, which owns the HTTP exchange,
error mapping and SSE parsing; they only supply the pure mapping methods. A provider that
needs no network (``demo``) implements ``complete`` and ``stream`` directly.

The router and server never name a provider: they look it up in ``providers.registry``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import orjson

from keeptrusts import __version__
from keeptrusts.config.model import Target
from keeptrusts.errors import UpstreamError, UpstreamTimeout, UpstreamUnreachable
from keeptrusts.providers.http1 import ConnectError, HttpClient, Response
from keeptrusts.providers.relay import Frames, RelayScanner
from keeptrusts.providers.wire import carries_content, error_from_body
from keeptrusts.sse import SSEEvent, SSEParser

__all__ = [
    "Call",
    "Chunk",
    "Frames",
    "HttpProvider",
    "Provider",
    "StreamTranslator",
    "UpstreamRequest",
    "bearer_headers",
    "carries_content",
    "error_from_body",
]


USER_AGENT = f"keeptrusts/{__version__}"


@dataclass(slots=True)
class Chunk:
    """One ``chat.completion.chunk``. ``raw`` is the upstream's own bytes when unchanged,
    so a pass-through stream is never re-serialised."""

    obj: dict[str, Any]
    raw: bytes | None = None

    def encode(self) -> bytes:
        return self.raw if self.raw is not None else orjson.dumps(self.obj)


@dataclass(slots=True)
class UpstreamRequest:
    url: str
    headers: dict[str, str]
    body: bytes


@dataclass(slots=True)
class Call:
    """What a provider needs for one attempt against one target."""

    body: dict[str, Any]
    target: Target
    http: HttpClient
    request_id: str
    # The client's Authorization header, forwarded only to targets without a secret.
    client_auth: str | None = None
    stream: bool = False
    usage: dict[str, Any] | None = field(default=None)
    # Propagated as-is to the upstream (e.g. W3C ``traceparent``).
    extra_headers: dict[str, str] | None = None


class Provider:
    """Base class: subclasses set ``name`` and implement ``complete`` and ``stream``."""

    name: ClassVar[str]
    default_base_url: ClassVar[str | None] = None
    # Environment variable read for the key when a target names no secret.
    default_key_env: ClassVar[str | None] = None
    # Providers with no network need no base_url.
    needs_base_url: ClassVar[bool] = True
    # The native stream is OpenAI's chat-completion SSE: ``relay`` can hand it to an
    # OpenAI client byte for byte.
    openai_wire: ClassVar[bool] = False

    async def complete(self, call: Call) -> dict[str, Any]:
        raise NotImplementedError

    def stream(self, call: Call) -> AsyncIterator[Chunk]:
        raise NotImplementedError

    def relay(self, call: Call) -> AsyncIterator[Frames]:
        """The stream as upstream frames (``providers.relay``); only with ``openai_wire``."""
        raise NotImplementedError


class StreamTranslator:
    """Per-stream state that maps native SSE events to OpenAI chunks."""

    done: bool = False

    def feed(self, event: SSEEvent) -> Iterable[Chunk]:
        raise NotImplementedError


class HttpProvider(Provider):
    """A provider reached over HTTP; subclasses supply the pure mapping methods."""

    def build_request(self, call: Call) -> UpstreamRequest:
        raise NotImplementedError

    def parse_response(self, data: dict[str, Any], call: Call) -> dict[str, Any]:
        raise NotImplementedError

    def translator(self, call: Call) -> StreamTranslator:
        raise NotImplementedError

    def parse_error(self, status: int, body: bytes) -> UpstreamError:
        """Map a native error body to an ``UpstreamError`` that keeps status and message."""
        return error_from_body(status, body)

    def _post(self, call: Call) -> Any:
        """The upstream POST (an ``async with`` context); the router bounds the whole
        attempt by the target's total timeout."""
        req = self.build_request(call)
        req.headers.setdefault("user-agent", USER_AGENT)
        t = call.target.timeouts
        # The read timeout bounds the wait for the first byte and every gap after it.
        return call.http.post(
            req.url, data=req.body, headers=req.headers, timeout=(t.connect, t.first_byte)
        )

    async def _check(self, resp: Response) -> None:
        """Raise the mapped upstream error for an HTTP error status."""
        if resp.status >= 400:
            err = self.parse_error(resp.status, await resp.read())
            _keep_retry_after(err, resp)
            raise err

    async def complete(self, call: Call) -> dict[str, Any]:
        async with _mapped_errors(call.target), self._post(call) as resp:
            body = await resp.read()
            if resp.status >= 400:
                err = self.parse_error(resp.status, body)
                _keep_retry_after(err, resp)
                raise err
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise UpstreamError(
                f"target {call.target.id} returned a body that is not JSON", status=502
            ) from exc
        return self.parse_response(data, call)

    async def stream(self, call: Call) -> AsyncIterator[Chunk]:
        translator = self.translator(call)
        parser = SSEParser()
        async with _mapped_errors(call.target), self._post(call) as resp:
            await self._check(resp)
            async for data in resp.content.iter_any():
                for event in parser.feed(data):
                    for chunk in translator.feed(event):
                        yield chunk
                if translator.done:
                    return
            for event in parser.close():
                for chunk in translator.feed(event):
                    yield chunk
        if not translator.done:
            raise UpstreamUnreachable(
                f"target {call.target.id} ended the stream before it was complete"
            )

    async def relay(self, call: Call) -> AsyncIterator[Frames]:
        """One ``Frames`` per upstream read that completes frames: one write downstream."""
        if not self.openai_wire:
            raise NotImplementedError(f"{self.name} streams are not OpenAI's wire format")
        scanner = RelayScanner()
        async with _mapped_errors(call.target), self._post(call) as resp:
            await self._check(resp)
            async for data in resp.content.iter_any():
                frames = scanner.feed(data)
                if frames is not None:
                    yield frames
                if scanner.error is not None:
                    raise scanner.error
                if scanner.done:
                    return
            frames = scanner.close()
            if frames is not None:
                yield frames
            if scanner.error is not None:
                raise scanner.error
        if not scanner.done:
            raise UpstreamUnreachable(
                f"target {call.target.id} ended the stream before it was complete"
            )


def _keep_retry_after(err: UpstreamError, resp: Response) -> None:
    retry_after = resp.headers.get("retry-after")
    if retry_after:
        err.headers["retry-after"] = retry_after


class _mapped_errors:
    """Turn connection failures and timeouts into our upstream errors, naming the target
    only (never the URL, which may carry a key in its query)."""

    def __init__(self, target: Target) -> None:
        self.target = target

    async def __aenter__(self) -> None:
        return None

    async def __aexit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> bool:
        if exc is None or isinstance(exc, UpstreamError):
            return False
        tid = self.target.id
        if isinstance(exc, asyncio.TimeoutError):
            raise UpstreamTimeout(f"target {tid} timed out") from exc
        if isinstance(exc, ConnectError):
            raise UpstreamUnreachable(f"target {tid} is unreachable") from exc
        if isinstance(exc, OSError):  # ConnectionError: reset, closed early, not HTTP
            raise UpstreamUnreachable(f"connection to target {tid} failed") from exc
        return False


def bearer_headers(call: Call, *, header: str = "authorization", prefix: str = "Bearer ") -> dict:
    """Return the auth header for a target: its own secret, else the client's."""
    t = call.target
    header = (t.api_key_header or header).lower()
    prefix = t.api_key_prefix if t.api_key_prefix is not None else prefix
    if t.api_key:
        return {header: f"{prefix}{t.api_key}"}
    if call.client_auth and header == "authorization":
        return {"authorization": call.client_auth}
    return {}
