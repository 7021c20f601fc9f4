"""What the router knows about one target while it runs: breaker, limiter, stats, cooldown.

One ``TargetState`` per target id, shared by every group the target belongs to, built
with the router and dropped with it on a config reload.
"""

from __future__ import annotations

from typing import Any

from keeptrusts.config.model import Target
from keeptrusts.routing.breaker import Breaker
from keeptrusts.routing.limits import Limiter
from keeptrusts.routing.metrics import TargetStats
from keeptrusts.routing.settings import RoutingSettings


class TargetState:
    __slots__ = ("breaker", "cool_until", "limiter", "stats", "target")

    def __init__(self, target: Target, settings: RoutingSettings) -> None:
        self.target = target
        self.breaker = Breaker(settings.breaker)
        cap = target.max_concurrency or settings.max_concurrency
        queue = target.max_queue if target.max_queue is not None else settings.max_queue
        self.limiter = Limiter(
            cap,
            max_queue=(cap or 0) if queue is None else queue,
            timeout=target.queue_timeout or settings.queue_timeout,
        )
        self.stats = TargetStats(settings.latency_window)
        # Set by a 429 with Retry-After: no traffic before this (monotonic) time.
        self.cool_until = 0.0

    def cooldown_left(self, now: float) -> float:
        return self.cool_until - now if self.cool_until > now else 0.0

    def snapshot(self, now: float) -> dict[str, Any]:
        t, b = self.target, self.breaker
        return {
            "provider": t.provider,
            "model": t.model,
            "status": t.status(),
            **self.stats.snapshot(),
            "in_flight": self.limiter.in_flight,
            "queued": self.limiter.queued,
            "max_concurrency": self.limiter.cap,
            "breaker": {
                "state": b.current(now) if b.enabled else "disabled",
                "consecutive_failures": b.failures,
                "opened": b.opens,
                "half_opens_in_s": round(b.retry_in(now), 3),
            },
            "cooldown_s": round(self.cooldown_left(now), 3),
        }
