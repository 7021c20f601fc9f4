"""A circuit breaker per target: closed → open → half-open → closed.

``failure_threshold`` consecutive failures (5xx, timeouts, connection errors) open it; an
open target gets no traffic for ``cooldown`` seconds. It then half-opens and lets
``half_open_probes`` requests through; if all of them succeed it closes, and any failure
opens it again for another cooldown (/docs/advanced/circuit-breaker-retry).

Only requests that were let through as probes decide a half-open breaker: an answer to a
request sent before the breaker opened says nothing about the target now. A 429 or an
upstream 4xx is not a failure of the target (see ``Router``).

The state advances lazily when asked, from the clock passed in: no timers, no locks
(everything runs on one event loop).
"""

from __future__ import annotations

from typing import Literal

from keeptrusts.routing.settings import BreakerSettings

State = Literal["closed", "open", "half_open"]


class Breaker:
    __slots__ = (
        "cooldown",
        "enabled",
        "failures",
        "opened_at",
        "opens",
        "probes",
        "probing",
        "state",
        "successes",
        "threshold",
    )

    def __init__(self, settings: BreakerSettings) -> None:
        self.enabled = settings.enabled
        self.threshold = settings.failure_threshold
        self.cooldown = settings.cooldown
        self.probes = settings.half_open_probes
        self.state: State = "closed"
        self.failures = 0  # consecutive, while closed
        self.opened_at = 0.0
        self.opens = 0  # how many times it opened, for metrics
        self.probing = 0  # probes in flight while half-open
        self.successes = 0  # probe successes while half-open

    def current(self, now: float) -> State:
        """The state at ``now``: an open breaker whose cooldown is over is half-open."""
        if self.state == "open" and now >= self.opened_at + self.cooldown:
            self.state = "half_open"
            self.probing = self.successes = 0
        return self.state

    def ready(self, now: float) -> bool:
        """Whether a request may be sent now (without reserving a probe)."""
        if not self.enabled:
            return True
        state = self.current(now)
        if state == "closed":
            return True
        return state == "half_open" and self.probing < self.probes

    def acquire(self, now: float) -> bool | None:
        """Admit one request: None if refused, else whether it is a half-open probe."""
        if not self.ready(now):
            return None
        if self.state == "half_open":
            self.probing += 1
            return True
        return False

    def success(self, probe: bool) -> None:
        if self.state == "closed":
            self.failures = 0
        elif self.state == "half_open" and probe:
            self.probing -= 1
            self.successes += 1
            if self.successes >= self.probes:
                self.state = "closed"
                self.failures = 0

    def failure(self, now: float, probe: bool) -> None:
        if not self.enabled:
            return
        if self.state == "closed":
            self.failures += 1
            if self.failures >= self.threshold:
                self._open(now)
        elif self.state == "half_open" and probe:
            self._open(now)

    def release(self, probe: bool) -> None:
        """A probe ended without a verdict (cancelled, rate limited): free its slot."""
        if probe and self.state == "half_open":
            self.probing -= 1

    def retry_in(self, now: float) -> float:
        """Seconds until an open breaker half-opens (0 when it is not open)."""
        if self.current(now) != "open":
            return 0.0
        return max(0.0, self.opened_at + self.cooldown - now)

    def _open(self, now: float) -> None:
        self.state = "open"
        self.opened_at = now
        self.opens += 1
        self.failures = 0
        self.probing = self.successes = 0
