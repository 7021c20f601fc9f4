"""From a requested model name to the targets that may serve it, and the attempts over them.

A model name reaches every target that lists it as its id, its model or an alias, or the
members of a named model group (``providers.model_groups``); those targets form a group.
The group's strategy (``routing.strategies``) orders them for each request; the router
then walks that order:

* untried targets first, immediately, in strategy order (fallback);
* once every target was tried and ``max_retries`` allows more, the target that can be
  retried soonest, after exponential backoff with jitter or its ``Retry-After``;
* targets with an open breaker, or cooling down after a 429, are skipped; a target whose
  concurrency cap and queue are full is skipped, and if all are, the request is shed with
  503 and ``Retry-After``.

Retried: 429, 5xx, timeouts and connection failures (narrowed by ``retry_on``). Never
another 4xx, and never a policy block: the chain raises those before or after the router
runs. Streams fall back only until the first content chunk (``routing.streams``).

Every attempt (target, outcome, status, latency) is appended to ``ctx.attempts``, which
the audit event records.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
import random
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from keeptrusts.config.model import GatewayConfig, Target
from keeptrusts.context import Attempt, RequestContext
from keeptrusts.deadlines import Deadlines
from keeptrusts.errors import (
    GatewayError,
    ModelNotFound,
    ServiceUnavailable,
    UpstreamError,
    UpstreamTimeout,
)
from keeptrusts.providers import registry
from keeptrusts.providers.base import Call, Provider
from keeptrusts.providers.http1 import HttpClient
from keeptrusts.providers.relay import Frames
from keeptrusts.routing import metrics
from keeptrusts.routing.limits import Overloaded, QueueTimeout
from keeptrusts.routing.retry import (
    backoff_base,
    error_kind,
    jittered,
    retry_after,
    should_retry,
    target_failed,
)
from keeptrusts.routing.settings import RoutingSettings, compile_routing
from keeptrusts.routing.state import TargetState
from keeptrusts.routing.strategies import Strategy, make
from keeptrusts.routing.streams import Item, Tail, close, malformed, read_head

log = logging.getLogger("keeptrusts.routing")
SHED_RETRY_AFTER = "1"


@dataclass(frozen=True, slots=True)
class Route:
    model: str
    targets: tuple[Target, ...]


class _Plan:
    """The attempts of one request: which target next, and after how long a wait."""

    __slots__ = ("attempts", "excluded", "last", "max_attempts", "order", "router", "shed", "tried")

    def __init__(self, router: Router, order: list[Target], max_attempts: int) -> None:
        self.router = router
        self.order = order
        self.max_attempts = max_attempts
        self.attempts = 0
        self.tried: dict[str, int] = {}
        self.excluded: set[str] = set()
        self.last: UpstreamError | None = None
        self.shed = 0

    def next(self, now: float) -> tuple[Target, float] | None:
        """The next target and the seconds to wait first; None when nothing is left."""
        if self.attempts >= self.max_attempts:
            return None
        states, policy = self.router._states, self.router.settings.retry
        best: Target | None = None
        best_wait = float("inf")
        for t in self.order:
            if t.id in self.excluded:
                continue
            state = states[t.id]
            if not state.breaker.ready(now):
                continue
            tries = self.tried.get(t.id, 0)
            cool = state.cooldown_left(now)
            if tries == 0 and cool == 0.0:
                return t, 0.0
            if self.attempts == 0:
                continue  # only a retry waits; a first attempt never does
            wait = max(cool, backoff_base(policy, tries))
            if wait < best_wait:
                best, best_wait = t, wait
        if best is None or best_wait > policy.max_wait:
            return None
        base = backoff_base(policy, self.tried.get(best.id, 0))
        cool = states[best.id].cooldown_left(now)
        return best, max(cool, jittered(policy, base, self.router.rng))

    def failure(self, model: str, now: float) -> GatewayError:
        """The error to answer with when no attempt is left."""
        if self.last is not None:
            return self.last
        if self.shed:
            return ServiceUnavailable(
                f"Every target for model {model!r} is at its concurrency limit; retry shortly.",
                code="overloaded",
                headers={"retry-after": SHED_RETRY_AFTER},
            )
        states = self.router._states
        cooling = [states[t.id].cooldown_left(now) for t in self.order]
        opened = [states[t.id].breaker.retry_in(now) for t in self.order]
        waits = [max(c, o) for c, o in zip(cooling, opened, strict=True)]
        after = str(max(1, round(min(waits, default=1.0))))
        if any(cooling) and not any(opened):
            return UpstreamError(
                f"Every target for model {model!r} is rate limited; retry after {after}s.",
                status=429,
                code="rate_limited",
                headers={"retry-after": after},
            )
        return ServiceUnavailable(
            f"Every target for model {model!r} is failing (circuit open); retry after {after}s.",
            code="circuit_open",
            headers={"retry-after": after},
        )


class Router:
    """Built once per config; resolves models and runs the attempts of one request."""

    def __init__(
        self,
        config: GatewayConfig,
        http: HttpClient,
        *,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.http = http
        # Problems in the routing config were reported when it was loaded.
        self.settings: RoutingSettings = compile_routing(config.routing, config.targets)[0]
        self.rng = rng or random.Random()
        self.clock = clock
        self._states = {t.id: TargetState(t, self.settings) for t in config.targets}
        self._call_targets = {t.id: self._effective(t) for t in config.targets}
        self._providers: dict[str, Provider] = {
            t.provider: registry.get(t.provider)() for t in config.targets
        }
        self._groups: dict[str, tuple[Target, ...]] = {}
        self._strategies: dict[str, Strategy] = {}
        for target in config.targets:
            for name in target.names():
                self._groups[name] = (*self._groups.get(name, ()), target)
        for name in self._groups:
            self._strategies[name] = self._strategy(self.settings.strategy)
        by_id = {t.id: t for t in config.targets}
        for g in self.settings.groups:
            targets = tuple(by_id[i] for i in g.target_ids if i in by_id)
            if targets:
                self._groups[g.name] = targets
                self._strategies[g.name] = self._strategy(
                    g.strategy or self.settings.strategy, g.weights
                )
        self._default = self._strategy(self.settings.strategy)
        self._deadlines = Deadlines()

    def _strategy(self, name: str, weights: Mapping[str, float] | None = None) -> Strategy:
        return make(
            name,
            states=self._states,
            weights=weights or {},
            settings=self.settings,
            rng=self.rng,
            clock=self.clock,
        )

    def _effective(self, target: Target) -> Target:
        """The target as attempts use it: ``fallback.max_latency_ms`` caps its first byte."""
        cap = self.settings.max_latency
        to = target.timeouts
        if cap is None or (to.first_byte <= cap and (to.first_token or 0) <= cap):
            return target
        timeouts = dataclasses.replace(
            to, first_byte=min(to.first_byte, cap), first_token=min(to.first_token or cap, cap)
        )
        return dataclasses.replace(target, timeouts=timeouts)

    # --- resolving ------------------------------------------------------------------------

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
        return Route(model, targets)

    def _available(self, route: Route) -> list[Target]:
        ready = [t for t in route.targets if t.available]
        if not ready:
            why = "; ".join(f"{t.id}: {t.unavailable}" for t in route.targets)
            raise ServiceUnavailable(f"No target can serve model {route.model!r} ({why})")
        return ready

    def _plan(self, route: Route) -> _Plan:
        strategy = self._strategies.get(route.model, self._default)
        order = strategy.order(self._available(route))
        if not order:
            raise ServiceUnavailable(
                f"No target for model {route.model!r} is within max_cost_per_1k "
                f"({self.settings.max_cost_per_1k})"
            )
        return _Plan(self, order, self.settings.retry.attempts(len(order)))

    # --- attempts ---------------------------------------------------------------------------

    async def complete(self, ctx: RequestContext, route: Route) -> dict[str, Any]:
        """Run attempts until one answers; return the OpenAI-shaped completion."""
        plan = self._plan(route)
        while True:
            picked = await self._admit(ctx, plan)
            if picked is None:
                raise plan.failure(route.model, self.clock())
            target, state, probe = picked
            call_target = self._call_targets[target.id]
            provider = self._providers[target.provider]
            started = time.perf_counter()
            exc: UpstreamError | None = None
            try:
                result = await self._deadlines.within(
                    provider.complete(self._call(ctx, call_target)), call_target.timeouts.total
                )
            except TimeoutError:
                exc = UpstreamTimeout(
                    f"target {target.id} did not answer within its total timeout "
                    f"({call_target.timeouts.total}s)"
                )
            except UpstreamError as e:
                exc = e
            except Exception as e:
                exc = malformed(target.id, e)
            except BaseException:
                state.limiter.release()
                self._abandoned(ctx, state, probe, started)
                raise
            state.limiter.release()
            if exc is not None:
                self._failed(ctx, plan, state, probe, started, exc)
                continue
            self._succeeded(ctx, state, probe, started)
            ctx.target = target
            return result

    async def open_stream(
        self, ctx: RequestContext, route: Route, *, relay: bool = False
    ) -> tuple[Item, AsyncIterator[Item]]:
        """Return the first item and the rest of a stream.

        A failure before the first content chunk (role-only chunks are held back) falls
        through to the next target, invisible to the client; after it, the caller ends
        the stream with an error event. With ``relay`` (the caller can forward OpenAI SSE
        untouched), a target whose provider speaks it streams ``Frames``, the head as one.
        """
        plan = self._plan(route)
        loop = self._deadlines.loop
        while True:
            picked = await self._admit(ctx, plan)
            if picked is None:
                raise plan.failure(route.model, self.clock())
            target, state, probe = picked
            call_target = self._call_targets[target.id]
            to = call_target.timeouts
            ttft = min(to.first_token or to.first_byte, to.total)
            started = time.perf_counter()
            deadline = loop.time() + to.total
            provider = self._providers[target.provider]
            call = self._call(ctx, call_target)
            relayed = relay and provider.openai_wire
            stream = provider.relay(call) if relayed else provider.stream(call)
            exc: UpstreamError | None = None
            try:
                head = await self._deadlines.within(read_head(stream), ttft)
            except TimeoutError:
                exc = UpstreamTimeout(f"target {target.id} sent no content within {ttft}s")
            except StopAsyncIteration:
                exc = UpstreamError(f"target {target.id} sent an empty stream", status=502)
            except UpstreamError as e:
                exc = e
            except Exception as e:
                exc = malformed(target.id, e)
            except BaseException:
                await close(stream)
                state.limiter.release()
                self._abandoned(ctx, state, probe, started)
                raise
            if exc is not None:
                await close(stream)
                state.limiter.release()
                self._failed(ctx, plan, state, probe, started, exc)
                continue
            # The breaker's verdict and the success count wait for the end of the stream:
            # a target that keeps dying mid-answer must still trip its breaker.
            ms = self._record(ctx, target, started, metrics.OK, 200)
            state.stats.sample(ms, self.clock())
            ctx.target = target
            on_end = functools.partial(self._stream_ended, state, probe, ctx.attempts[-1])
            if len(head) > 1 and type(head[0]) is Frames:
                head = [Frames.join(head)]  # type: ignore[arg-type]
            rest = Tail(
                head[1:], stream, deadline=deadline, target_id=target.id, on_end=on_end, loop=loop
            )
            return head[0], rest

    async def _admit(
        self, ctx: RequestContext, plan: _Plan
    ) -> tuple[Target, TargetState, bool] | None:
        """Pick the next target, wait if the plan says so, and take a slot and the breaker's
        permission; return the target, its state and whether it is a half-open probe."""
        while True:
            picked = plan.next(self.clock())
            if picked is None:
                return None
            target, wait = picked
            state = self._states[target.id]
            if wait > 0:
                await self._sleep(ctx, wait)
            if not state.limiter.try_acquire():
                queued = time.perf_counter()
                try:
                    await state.limiter.acquire()
                except (Overloaded, QueueTimeout) as exc:
                    kind = metrics.SHED if isinstance(exc, Overloaded) else metrics.QUEUE_TIMEOUT
                    plan.excluded.add(target.id)
                    plan.shed += 1
                    state.stats.error(kind)
                    self._record(ctx, target, queued, kind, 503)
                    continue
                ctx.upstream_ms += (time.perf_counter() - queued) * 1000.0
            probe = state.breaker.acquire(self.clock())
            if probe is None:  # opened while we waited
                state.limiter.release()
                plan.excluded.add(target.id)
                continue
            state.stats.started(retry=plan.attempts > 0)
            plan.attempts += 1
            plan.tried[target.id] = plan.tried.get(target.id, 0) + 1
            return target, state, probe

    @staticmethod
    async def _sleep(ctx: RequestContext, seconds: float) -> None:
        # Waiting for a retry is not gateway overhead: count it with the upstream time.
        started = time.perf_counter()
        await asyncio.sleep(seconds)
        ctx.upstream_ms += (time.perf_counter() - started) * 1000.0

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
            extra_headers=ctx.trace.headers() if ctx.trace is not None else None,
        )

    # --- outcomes ---------------------------------------------------------------------------

    def _succeeded(
        self, ctx: RequestContext, state: TargetState, probe: bool, started: float
    ) -> None:
        ms = self._record(ctx, state.target, started, metrics.OK, 200)
        state.stats.success(ms, self.clock())
        state.breaker.success(probe)

    def _failed(
        self,
        ctx: RequestContext,
        plan: _Plan,
        state: TargetState,
        probe: bool,
        started: float,
        exc: UpstreamError,
    ) -> None:
        """Account for a failed attempt; re-raise ``exc`` unless a retry may fix it."""
        kind = error_kind(exc)
        self._record(ctx, state.target, started, kind, exc.status)
        state.stats.error(kind)
        now = self.clock()
        if kind == metrics.RATE_LIMITED:
            pause = retry_after(exc, cap=self.settings.retry.max_cooldown)
            if pause:
                state.cool_until = max(state.cool_until, now + pause)
            state.breaker.release(probe)
        elif target_failed(exc):
            opens = state.breaker.opens
            state.breaker.failure(now, probe)
            if state.breaker.opens != opens:
                log.warning(
                    "target %s: circuit open for %ss after %s",
                    state.target.id,
                    state.breaker.cooldown,
                    kind,
                )
        else:
            state.breaker.success(probe)  # the target answered; the request was at fault
        plan.last = exc
        if not should_retry(self.settings.retry, exc):
            raise exc

    def _abandoned(
        self, ctx: RequestContext, state: TargetState, probe: bool, started: float
    ) -> None:
        self._record(ctx, state.target, started, metrics.CANCELLED, None)
        state.stats.error(metrics.CANCELLED)
        state.breaker.release(probe)

    def _stream_ended(
        self,
        state: TargetState,
        probe: bool,
        attempt: Attempt,
        error: UpstreamError | None,
        completed: bool,
    ) -> None:
        """A stream that started ended: completed, cut by an error, or closed by the client
        (which says nothing against the target)."""
        state.limiter.release()
        if error is None:
            state.stats.successes += 1
            state.breaker.success(probe)
            return
        attempt.outcome = metrics.STREAM_CUT
        attempt.status = error.status
        state.stats.error(metrics.STREAM_CUT)
        if target_failed(error):
            state.breaker.failure(self.clock(), probe)
        else:
            state.breaker.success(probe)

    @staticmethod
    def _record(
        ctx: RequestContext, target: Target, started: float, outcome: str, status: int | None
    ) -> float:
        ms = (time.perf_counter() - started) * 1000.0
        ctx.upstream_ms += ms
        ctx.attempts.append(
            Attempt(target.id, target.provider, outcome, status, round(ms, 3), started)
        )
        return ms

    # --- reporting --------------------------------------------------------------------------

    def breaker_states(self) -> dict[str, str]:
        """Each target's breaker state: closed, open, half_open or disabled."""
        now = self.clock()
        return {
            tid: s.breaker.current(now) if s.breaker.enabled else "disabled"
            for tid, s in self._states.items()
        }

    def metrics(self) -> dict[str, Any]:
        """Per-target counters, latency, in-flight and breaker state, plus the groups."""
        now = self.clock()
        groups = {
            name: {
                "strategy": self._strategies[name].name,
                "targets": [t.id for t in targets],
            }
            for name, targets in self._groups.items()
            if len(targets) > 1 or any(g.name == name for g in self.settings.groups)
        }
        return {
            "strategy": self.settings.strategy,
            "targets": {tid: s.snapshot(now) for tid, s in self._states.items()},
            "groups": groups,
        }
