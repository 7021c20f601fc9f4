"""Per-target counters and latency: what ``/keeptrusts/providers/metrics`` reports and what
``lowest_latency`` routes on.

Latency is that of a successful attempt: the whole answer for a JSON response, the time to
the first content chunk for a stream. Two views are kept, both bounded:

* the last ``RECENT`` samples, for p50/p99 (sorted only when the metrics are read);
* a time window (``window`` seconds, at most ``WINDOW_MAX`` samples) with a running sum,
  for the mean ``lowest_latency`` compares in O(1) per request.
"""

from __future__ import annotations

import math
from collections import deque
from typing import Any

RECENT = 1024
WINDOW_MAX = 4096

# Attempt outcomes, as written in the audit event and counted under ``errors``.
OK = "ok"
RATE_LIMITED = "rate_limited"
SERVER_ERROR = "server_error"
CLIENT_ERROR = "client_error"
TIMEOUT = "timeout"
CONNECTION = "connection_error"
EMPTY_STREAM = "empty_stream"
STREAM_CUT = "stream_cut"
SHED = "shed"
QUEUE_TIMEOUT = "queue_timeout"
CANCELLED = "cancelled"


class TargetStats:
    __slots__ = (
        "errors",
        "recent",
        "requests",
        "retries",
        "successes",
        "window",
        "window_seconds",
        "window_sum",
    )

    def __init__(self, window_seconds: float) -> None:
        self.window_seconds = window_seconds
        self.requests = 0  # upstream attempts started
        self.successes = 0
        self.retries = 0  # attempts that were not the first of their request
        self.errors: dict[str, int] = {}
        self.recent: deque[float] = deque(maxlen=RECENT)
        self.window: deque[tuple[float, float]] = deque()
        self.window_sum = 0.0

    def started(self, *, retry: bool) -> None:
        self.requests += 1
        if retry:
            self.retries += 1

    def error(self, kind: str) -> None:
        self.errors[kind] = self.errors.get(kind, 0) + 1

    def success(self, ms: float, now: float) -> None:
        self.successes += 1
        self.sample(ms, now)

    def sample(self, ms: float, now: float) -> None:
        """Record a latency without counting a success (a stream's time to first token;
        whether it succeeds is known only when it ends)."""
        self.recent.append(ms)
        self.window.append((now, ms))
        self.window_sum += ms
        if len(self.window) > WINDOW_MAX:
            self.window_sum -= self.window.popleft()[1]

    def mean_latency(self, now: float) -> tuple[float, int]:
        """Mean latency (ms) and sample count over the window ending at ``now``."""
        window, cutoff = self.window, now - self.window_seconds
        while window and window[0][0] < cutoff:
            self.window_sum -= window.popleft()[1]
        n = len(window)
        if n == 0:
            self.window_sum = 0.0  # no float drift survives an empty window
            return 0.0, 0
        return self.window_sum / n, n

    def snapshot(self) -> dict[str, Any]:
        ordered = sorted(self.recent)
        return {
            "requests": self.requests,
            "successes": self.successes,
            "errors": dict(self.errors),
            "errors_total": sum(self.errors.values()),
            "retries": self.retries,
            "latency_ms": {
                "p50": _percentile(ordered, 0.50),
                "p99": _percentile(ordered, 0.99),
                "samples": len(ordered),
            },
        }


def _percentile(ordered: list[float], q: float) -> float | None:
    """Nearest-rank percentile of sorted samples; None without samples."""
    if not ordered:
        return None
    rank = max(0, min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1))
    return round(ordered[rank], 3)
