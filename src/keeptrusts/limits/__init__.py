"""Rate limits and budgets: requests and tokens per minute, USD per day or month.

Per key, per role, per model and a default (``limits`` in the policy config, see
docs/limits.md). Before the upstream call the gateway reserves what the request may use
(one request, its estimated prompt tokens plus ``max_tokens``, and their cost) on every
counter that applies, atomically: all or nothing, so concurrent bursts cannot overshoot.
After the call the reservation is corrected with the real usage, or refunded in full if
the upstream never answered. Denials are 429 with ``Retry-After``.

Counters live in process (one instance) or in Redis (a fleet: ``--redis-url`` /
``KEEPTRUSTS_REDIS_URL`` / ``limits.redis_url``). If Redis fails, ``on_backend_error``
decides: ``open`` lets requests through (a warning is logged, and the audit event says
so) or ``closed`` answers 503 ``limits_unavailable``.

Gateway hooks::

    limiter = Limiter.from_config(config.limits, redis_url)   # None: no limits section
    await limiter.start()
    await limiter.reserve(ctx)      # after the input policies, before the upstream call
    limiter.settle(ctx)             # when the request is finished (sync, never raises)
    await limiter.close()
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from keeptrusts.context import PolicyResult, RequestContext
from keeptrusts.errors import GatewayError
from keeptrusts.limits import estimate
from keeptrusts.limits.memory import Check, MemoryBackend
from keeptrusts.limits.prices import NANO, ModelPrice, PriceBook
from keeptrusts.limits.redis_backend import BackendError, RedisBackend
from keeptrusts.limits.rules import BUDGET, REQUESTS, TOKENS, Bucket, Planner
from keeptrusts.limits.windows import WINDOW, iso, whole_seconds, window, window_retry_after

log = logging.getLogger("keeptrusts.limits")

ENV_REDIS_URL = "KEEPTRUSTS_REDIS_URL"
STATE_KEY = "limits"
POLICY_NAME = "limits"
# After a backend failure, requests skip the backend (and apply on_backend_error) this long.
BACKEND_RETRY_SECONDS = 1.0
WARN_EVERY_SECONDS = 30.0
# Keep a window's counter until the next window is over (it is then the previous one).
_WINDOW_TTL_MARGIN = 5.0
_PERIOD_TTL_MARGIN = 3600.0
# Attempt outcomes after which the upstream may have produced (and billed) tokens.
_PRODUCED = frozenset({"ok", "stream_cut"})

__all__ = [
    "ENV_REDIS_URL",
    "Limiter",
    "LimitsUnavailable",
    "RateLimited",
    "Reservation",
]


class RateLimited(GatewayError):
    """429: a rate limit or budget would be exceeded."""

    status = 429
    type = "rate_limit"
    code = "rate_limit_exceeded"


class LimitsUnavailable(GatewayError):
    """503: the counter store failed and ``on_backend_error`` is ``closed``."""

    status = 503
    type = "service_unavailable"
    code = "limits_unavailable"


@dataclass(slots=True)
class Reservation:
    """What a request reserved: (counter key, metric, amount) per counter."""

    charges: list[tuple[str, str, int]]
    prompt_tokens: int
    completion_tokens: int
    cost_nano: int
    price: ModelPrice | None


def _usage_tokens(usage: Any) -> tuple[int, int] | None:
    if not isinstance(usage, Mapping):
        return None
    prompt = usage.get("prompt_tokens", usage.get("input_tokens"))
    completion = usage.get("completion_tokens", usage.get("output_tokens"))
    if prompt is None and completion is None:
        total = usage.get("total_tokens")
        return (int(total), 0) if isinstance(total, int) else None
    try:
        return int(prompt or 0), int(completion or 0)
    except (TypeError, ValueError):
        return None


def _validated(config_limits: Mapping[str, Any] | Any) -> dict[str, Any]:
    if hasattr(config_limits, "model_dump"):
        return config_limits.model_dump()
    from keeptrusts.config.schema import LimitsModel

    return LimitsModel.model_validate(dict(config_limits)).model_dump()


def _has_rules(limits: Mapping[str, Any]) -> bool:
    return bool(limits.get("keys") or limits.get("roles") or limits.get("models")) or bool(
        limits.get("default")
    )


class Limiter:
    def __init__(
        self,
        limits: Mapping[str, Any],
        backend: MemoryBackend | RedisBackend,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.backend = backend
        self.clock = clock
        self._sync = not backend.is_async
        self._down_until = 0.0
        self._last_warning = -WARN_EVERY_SECONDS
        self._suppressed = 0
        self._pending: set[asyncio.Task[None]] = set()
        self._closed = False
        self._apply(limits)

    def _apply(self, limits: Mapping[str, Any]) -> None:
        self.limits = limits
        self.fail_open = limits.get("on_backend_error", "open") == "open"
        self.planner = Planner(limits, str(limits.get("key_prefix") or "keeptrusts:limits:"))
        self.prices = PriceBook(limits.get("prices"))
        self.counter = estimate.count_chars
        if limits.get("token_estimator") == "tiktoken":
            self.counter = estimate.tiktoken_counter() or estimate.count_chars
        self._route_prices: dict[tuple, ModelPrice | None] = {}

    @classmethod
    def from_config(
        cls,
        config_limits: Mapping[str, Any] | Any | None,
        redis_url: str | None = None,
        *,
        env: Mapping[str, str] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> Limiter | None:
        """The limiter for a config's ``limits`` section; None when it has no rule.

        The counter store is Redis when a URL is given: ``redis_url`` (``--redis-url``),
        else ``$KEEPTRUSTS_REDIS_URL``, else ``limits.redis_url``; in process otherwise.
        """
        if config_limits is None:
            return None
        limits = _validated(config_limits)
        if not _has_rules(limits):
            return None
        env = os.environ if env is None else env
        url = redis_url or env.get(ENV_REDIS_URL) or limits.get("redis_url")
        backend: MemoryBackend | RedisBackend
        if url:
            backend = RedisBackend(url, timeout=float(limits.get("redis_timeout", 0.5)))
        else:
            backend = MemoryBackend()
        return cls(limits, backend, clock=clock)

    @classmethod
    async def reload(
        cls,
        current: Limiter | None,
        config_limits: Mapping[str, Any] | Any | None,
        redis_url: str | None = None,
        *,
        env: Mapping[str, str] | None = None,
    ) -> Limiter | None:
        """The limiter after a config reload. Rules and prices change in place and the
        counters (and the Redis connection) carry over; a new ``limits.redis_url`` takes
        effect at the next start. Returns None (closing ``current``) when the new config
        has no rule."""
        limits = _validated(config_limits) if config_limits is not None else None
        if limits is None or not _has_rules(limits):
            if current is not None:
                await current.close()
            return None
        if current is None:
            new = cls.from_config(limits, redis_url, env=env)
            if new is not None:
                await new.start()
            return new
        if limits.get("redis_url") != current.limits.get("redis_url"):
            log.warning("limits: a new limits.redis_url takes effect when the gateway restarts")
        current._apply(limits)
        return current

    def describe(self) -> str:
        """One line for the startup banner (never the Redis URL: it may hold a password)."""
        rules = self.planner.rules
        n = len(rules["key"]) + len(rules["role"]) + len(rules["model"])
        n += rules["default"] is not None
        where = "in Redis" if self.backend.kind == "redis" else "in process"
        mode = "fail open" if self.fail_open else "fail closed"
        return f"{n} rule(s), counters {where} ({mode} if the store is down)"

    @property
    def active(self) -> bool:
        """False when the section defines no rule (nothing to check)."""
        return not self.planner.empty

    # --- lifecycle ----------------------------------------------------------------------

    async def start(self) -> None:
        """Connect to the counter store; an unreachable Redis is logged, not fatal."""
        try:
            await self.backend.start()
        except BackendError as exc:
            mode = "allowed (fail open)" if self.fail_open else "refused with 503 (fail closed)"
            log.warning("limits: Redis is unreachable (%s); requests will be %s", exc, mode)

    async def close(self) -> None:
        """Wait briefly for pending reconciliations, then close the counter store."""
        if self._closed:
            return
        if self._pending:
            await asyncio.wait(list(self._pending), timeout=2.0)
        self._closed = True
        await self.backend.close()

    # --- before the upstream call -------------------------------------------------------

    async def reserve(self, ctx: RequestContext) -> Reservation | None:
        """Reserve the request's estimated use on every counter that applies.

        Raises ``RateLimited`` (429) if any counter lacks room, ``LimitsUnavailable`` (503)
        if the store failed and the mode is closed. Returns None when nothing applies or
        the store failed open. The reservation is also kept in ``ctx.state["limits"]``.
        """
        plan = self.planner.plan(ctx)
        if not plan.buckets:
            return None
        now = self.clock()
        prompt = completion = cost = 0
        price = None
        if plan.needs_tokens:
            body = ctx.body
            prompt = estimate.prompt_tokens(body, self.counter)
            if ctx.endpoint != "embeddings":
                completion = estimate.completion_tokens(body, plan.default_max_tokens)
            price = self._price(ctx)
            if price is not None:
                cost = price.cost_nano(prompt, completion)
        tokens = prompt + completion
        checks: list[Check] = []
        charges: list[tuple[str, str, int]] = []
        used: list[Bucket] = []
        idx, elapsed = window(now)
        for b in plan.buckets:
            if b.metric == REQUESTS:
                amount = 1
            elif b.metric == TOKENS:
                amount = tokens
            else:
                if price is None:
                    continue  # unknown price: the budget does not count this request
                amount = cost
            if amount > b.limit:
                self._deny(ctx, b, amount, 0, 0, elapsed, now, too_big=True)
            if b.period is None:
                key = f"{b.key}:{idx}"
                ttl = (idx + 2) * WINDOW - now + _WINDOW_TTL_MARGIN
                checks.append(
                    (key, f"{b.key}:{idx - 1}", 1.0 - elapsed / WINDOW, b.limit, amount, ttl)
                )
            else:
                label, end = b.period.at(now)
                key = f"{b.key}:{label}"
                checks.append((key, None, 0.0, b.limit, amount, end - now + _PERIOD_TTL_MARGIN))
            charges.append((key, b.metric, amount))
            used.append(b)
        if not checks:
            return None
        if self._sync:
            denial = self.backend.reserve(checks, now)
        else:
            if time.monotonic() < self._down_until:
                return self._backend_failed(ctx, None)
            try:
                denial = await self.backend.reserve(checks, now)
            except BackendError as exc:
                self._down_until = time.monotonic() + BACKEND_RETRY_SECONDS
                return self._backend_failed(ctx, exc)
        if denial is not None:
            i, cur, prev = denial
            self._deny(ctx, used[i], checks[i][4], cur, prev, elapsed, now)
        res = Reservation(charges, prompt, completion, cost, price)
        ctx.state[STATE_KEY] = res
        return res

    def _price(self, ctx: RequestContext) -> ModelPrice | None:
        targets = getattr(ctx.route, "targets", None) or ()
        key = (ctx.model, *(t.id for t in targets))
        if key in self._route_prices:
            return self._route_prices[key]
        if len(self._route_prices) >= 10_000:
            self._route_prices.clear()
        price = self._route_prices[key] = self.prices.for_route(ctx.model, ctx.route)
        return price

    def _deny(
        self,
        ctx: RequestContext,
        b: Bucket,
        amount: int,
        cur: int,
        prev: int,
        elapsed: float,
        now: float,
        *,
        too_big: bool = False,
    ) -> None:
        headers: dict[str, str] = {}
        if b.metric == BUDGET:
            assert b.period is not None
            _, end = b.period.at(now)
            wait = end - now
            code = "budget_exceeded"
            per = "daily" if b.period.kind == "day" else "monthly"
            limit_usd = b.limit / NANO
            if too_big:
                message = (
                    f"Budget exceeded: this request may cost up to ${amount / NANO:.4f}, more "
                    f"than the whole {per} budget of ${limit_usd:.2f} for {b.who}. Lower "
                    "max_tokens or shorten the prompt."
                )
            else:
                message = (
                    f"Budget exceeded: {b.who} has a {per} budget of ${limit_usd:.2f}; "
                    f"${cur / NANO:.4f} is spent or reserved and this request may cost up to "
                    f"${amount / NANO:.4f}. The budget resets at {iso(end)}."
                )
            headers["x-should-retry"] = "false"
        else:
            code = "rate_limit_exceeded"
            if too_big and b.metric == REQUESTS:
                wait = WINDOW
                message = f"Rate limit exceeded: {b.who} allows no requests (0 per minute)."
                headers["x-should-retry"] = "false"
            elif too_big:
                wait = WINDOW
                message = (
                    f"Rate limit exceeded: this request needs up to {amount} tokens (prompt "
                    f"plus max_tokens), more than the {b.limit} tokens per minute allowed for "
                    f"{b.who}. Lower max_tokens or shorten the prompt."
                )
                headers["x-should-retry"] = "false"
            else:
                wait = window_retry_after(cur, prev, elapsed, b.limit, amount)
                retry = f"Retry in {whole_seconds(wait)} s."
                if b.metric == REQUESTS:
                    message = (
                        f"Rate limit exceeded: {b.who} allows {b.limit} requests per minute. "
                        + retry
                    )
                else:
                    message = (
                        f"Rate limit exceeded: {b.who} allows {b.limit} tokens per minute and "
                        f"this request reserves up to {amount} (prompt plus max_tokens). " + retry
                    )
        headers["retry-after"] = str(whole_seconds(wait))
        ctx.policy_results.append(
            PolicyResult(POLICY_NAME, "input", "block", reason=message, reason_code=code)
        )
        raise RateLimited(message, code=code, headers=headers)

    def _backend_failed(self, ctx: RequestContext, exc: BackendError | None) -> None:
        now = time.monotonic()
        if exc is None:
            self._suppressed += 1
        else:
            if now - self._last_warning >= WARN_EVERY_SECONDS:
                more = f" ({self._suppressed} more failures since the last warning)"
                log.warning(
                    "limits: Redis failed (%s); requests are %s%s",
                    exc,
                    "allowed without limits (on_backend_error: open)"
                    if self.fail_open
                    else "refused with 503 (on_backend_error: closed)",
                    more if self._suppressed else "",
                )
                self._last_warning = now
                self._suppressed = 0
            else:
                self._suppressed += 1
        if self.fail_open:
            ctx.policy_results.append(
                PolicyResult(
                    POLICY_NAME,
                    "input",
                    "log",
                    reason="limits not enforced: the counter store is unavailable",
                    reason_code="limits_unavailable",
                )
            )
            return None
        ctx.policy_results.append(
            PolicyResult(
                POLICY_NAME,
                "input",
                "error",
                reason="the counter store is unavailable",
                reason_code="limits_unavailable",
            )
        )
        raise LimitsUnavailable(
            "Rate limits cannot be checked right now (the limits store is unavailable); "
            "retry shortly.",
            headers={"retry-after": "1"},
        )

    # --- after the call -----------------------------------------------------------------

    def deltas(self, ctx: RequestContext, res: Reservation) -> list[tuple[str, int]]:
        """Corrections to the reserved amounts, from the request's real usage."""
        usage = _usage_tokens(ctx.usage)
        if usage is None:
            if any(a.outcome in _PRODUCED for a in ctx.attempts):
                return []  # answered without usage (a stream without include_usage): keep
            # The upstream never answered: refund everything.
            return [(key, -amount) for key, _, amount in res.charges if amount]
        prompt, completion = usage
        target_price = self.prices.for_target(ctx.model, ctx.target) or res.price
        actual = {
            REQUESTS: 1,
            TOKENS: prompt + completion,
            BUDGET: target_price.cost_nano(prompt, completion) if target_price else 0,
        }
        out = []
        for key, metric, amount in res.charges:
            delta = actual[metric] - amount
            if delta:
                out.append((key, delta))
        return out

    async def reconcile(self, ctx: RequestContext, reservation: Reservation | None = None) -> None:
        """Correct the reservation with ``ctx.usage`` (refund all if nothing was produced)."""
        res = reservation or ctx.state.get(STATE_KEY)
        if not isinstance(res, Reservation):
            return
        ctx.state.pop(STATE_KEY, None)
        if self._closed:
            return
        deltas = self.deltas(ctx, res)
        if not deltas:
            return
        if self._sync:
            self.backend.adjust(deltas, self.clock())
            return
        try:
            await self.backend.adjust(deltas, self.clock())
        except BackendError as exc:
            log.warning("limits: could not reconcile a reservation (%s)", exc)

    def settle(self, ctx: RequestContext) -> None:
        """``reconcile`` for a synchronous caller (``Gateway.finish``): inline in process,
        a background task with Redis. Never raises."""
        res = ctx.state.get(STATE_KEY)
        if not isinstance(res, Reservation):
            return
        if self._closed:
            ctx.state.pop(STATE_KEY, None)
            return
        try:
            if self._sync:
                ctx.state.pop(STATE_KEY, None)
                deltas = self.deltas(ctx, res)
                if deltas:
                    self.backend.adjust(deltas, self.clock())
                return
            task = asyncio.get_running_loop().create_task(self.reconcile(ctx, res))
            ctx.state.pop(STATE_KEY, None)
            self._pending.add(task)
            task.add_done_callback(self._pending.discard)
        except Exception:  # accounting must never fail a request
            log.exception("limits: reconcile failed")
