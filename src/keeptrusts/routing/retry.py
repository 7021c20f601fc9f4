"""Which upstream errors a retry can fix, how long to wait, and what ``Retry-After`` says.

Retried: 429, 5xx, timeouts and connection failures, narrowed by ``retry_on``. Never
retried: any other 4xx (the request is at fault and would fail on every target) and a
policy block (the chain raises it before or after the router runs, never inside it).
"""

from __future__ import annotations

import email.utils
import random
import time

from keeptrusts.errors import UpstreamError, UpstreamTimeout, UpstreamUnreachable
from keeptrusts.routing import metrics
from keeptrusts.routing.settings import RetryPolicy


def error_kind(exc: UpstreamError) -> str:
    """The outcome an upstream error is recorded as (audit attempt, metrics)."""
    if isinstance(exc, UpstreamTimeout):
        return metrics.TIMEOUT
    if isinstance(exc, UpstreamUnreachable):
        return metrics.CONNECTION
    if exc.status == 429:
        return metrics.RATE_LIMITED
    if exc.status >= 500:
        return metrics.SERVER_ERROR
    return metrics.CLIENT_ERROR


def target_failed(exc: UpstreamError) -> bool:
    """Whether the error says the target is unhealthy (counts towards its breaker)."""
    return isinstance(exc, (UpstreamTimeout, UpstreamUnreachable)) or exc.status >= 500


def should_retry(policy: RetryPolicy, exc: UpstreamError) -> bool:
    if isinstance(exc, UpstreamTimeout):
        return "timeout" in policy.kinds
    if isinstance(exc, UpstreamUnreachable):
        return "connection" in policy.kinds
    if exc.status == 429:
        return "rate_limit" in policy.kinds
    if exc.status >= 500:
        return "server_error" in policy.kinds or exc.status in policy.statuses
    return False


def backoff_base(policy: RetryPolicy, tries: int) -> float:
    """The un-jittered wait before retrying a target already tried ``tries`` times."""
    if tries <= 0:
        return 0.0
    grown = policy.backoff_initial * policy.backoff_multiplier ** (tries - 1)
    return min(policy.backoff_max, grown)


def jittered(policy: RetryPolicy, base: float, rng: random.Random) -> float:
    if policy.jitter == "full":
        return rng.uniform(0.0, base)
    if policy.jitter == "equal":
        return base / 2 + rng.uniform(0.0, base / 2)
    return base


def retry_after(exc: UpstreamError, *, cap: float) -> float | None:
    """Seconds from the error's ``Retry-After`` (delta-seconds or HTTP-date), capped."""
    value = exc.headers.get("retry-after")
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        seconds = when.timestamp() - time.time()
    if seconds != seconds or seconds <= 0:  # NaN or past
        return None
    return min(seconds, cap)
