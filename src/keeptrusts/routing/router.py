"""From a requested model name to the targets that may serve it, and the attempts over them.

A model name reaches every target that lists it as its id, its model or an alias; several
such targets form a group tried in order (fallback) on errors a retry can fix: 429, 5xx,
timeouts and connection failures. Never on other 4xx, and never after a policy block, since
those happen before the router runs.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp

from keeptrusts.config.model import GatewayConfig, Target
from keeptrusts.context import Attempt, RequestContext
from keeptrusts.errors import ModelNotFound, ServiceUnavailable, UpstreamError
from keeptrusts.providers import registry
from keeptrusts.providers.base import Call, Chunk, Provider


@dataclass(frozen=True, slots=True)
class Route:
    model: str
    targets: tuple[Target, ...]


class Router:
    """Built once per config; resolves models and runs the attempts of one request."""

    def __init__(self, config: GatewayConfig, http: aiohttp.ClientSession) -> None:
        self.http = http
        self._groups: dict[str, list[Target]] = {}
        for target in config.targets:
            for name in target.names():
                self._groups.setdefault(name, []).append(target)
        self._providers: dict[str, Provider] = {
            t.provider: registry.get(t.provider)() for t in config.targets
        }

    def model_names(self) -> list[str]:
        return list(self._groups)

    def resolve(self, model: str) -> Route:
        """Return the route for ``model`` or raise 404 listing the models that exist."""
        targets = self._groups.get(model)
        if not targets:
            names = ", ".join(self._groups) or "none configured"
            raise ModelNotFound(
                f"The model {model!r} does not exist on this gateway. Available models: {names}",
                param="model",
            )
        return Route(model, tuple(targets))

    def _available(self, route: Route) -> list[Target]:
        ready = [t for t in route.targets if t.available]
        if not ready:
            why = "; ".join(f"{t.id}: {t.unavailable}" for t in route.targets)
            raise ServiceUnavailable(f"No target can serve model {route.model!r} ({why})")
        return ready

    def _call(self, ctx: RequestContext, target: Target) -> Call:
        body = ctx.body
        if target.model and body.get("model") != target.model:
            body = {**body, "model": target.model}
        return Call(
            body=body,
            target=target,
            http=self.http,
            request_id=ctx.request_id,
            client_auth=ctx.client_auth,
            stream=ctx.stream,
        )

    async def complete(self, ctx: RequestContext, route: Route) -> dict[str, Any]:
        """Run attempts in order until one answers; return the OpenAI-shaped completion."""
        last: UpstreamError | None = None
        for target in self._available(route):
            started = time.perf_counter()
            try:
                result = await self._providers[target.provider].complete(self._call(ctx, target))
            except UpstreamError as exc:
                self._record(ctx, target, started, exc)
                last = exc
                if not exc.retryable:
                    raise
                continue
            self._record(ctx, target, started, None)
            ctx.target = target
            return result
        assert last is not None
        raise last

    async def open_stream(
        self, ctx: RequestContext, route: Route
    ) -> tuple[Chunk, AsyncIterator[Chunk]]:
        """Return the first chunk and the rest of a stream.

        A failure before the first chunk falls through to the next target, invisible to the
        client; after it, the caller ends the stream with an error event.
        """
        last: UpstreamError | None = None
        for target in self._available(route):
            started = time.perf_counter()
            stream = self._providers[target.provider].stream(self._call(ctx, target))
            try:
                first = await anext(stream)
            except StopAsyncIteration:
                exc = UpstreamError(f"target {target.id} sent an empty stream", status=502)
                self._record(ctx, target, started, exc)
                last = exc
                continue
            except UpstreamError as exc:
                self._record(ctx, target, started, exc)
                await stream.aclose()
                last = exc
                if not exc.retryable:
                    raise
                continue
            self._record(ctx, target, started, None)
            ctx.target = target
            return first, stream
        assert last is not None
        raise last

    @staticmethod
    def _record(
        ctx: RequestContext, target: Target, started: float, exc: UpstreamError | None
    ) -> None:
        ms = (time.perf_counter() - started) * 1000.0
        ctx.upstream_ms += ms
        outcome = "ok" if exc is None else (exc.code or f"http_{exc.status}")
        ctx.attempts.append(
            Attempt(target.id, target.provider, outcome, None if exc else 200, round(ms, 3))
        )
        if exc is not None:
            ctx.attempts[-1].status = exc.status
