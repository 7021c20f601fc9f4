"""Routing building blocks in isolation: strategies, breaker, limiter, retry rules, streams."""

from __future__ import annotations

import asyncio
import email.utils
import random
import time
from collections import Counter

import pytest

from keeptrusts.config.model import Price, Target
from keeptrusts.errors import UpstreamError, UpstreamTimeout, UpstreamUnreachable
from keeptrusts.routing.breaker import Breaker
from keeptrusts.routing.limits import Limiter, Overloaded, QueueTimeout
from keeptrusts.routing.retry import (
    backoff_base,
    error_kind,
    jittered,
    retry_after,
    should_retry,
    target_failed,
)
from keeptrusts.routing.settings import BreakerSettings, RetryPolicy, RoutingSettings
from keeptrusts.routing.state import TargetState
from keeptrusts.routing.strategies import make
from keeptrusts.routing.streams import carries_content
from tests.routing.util import FakeClock


def _targets(n: int, **kw) -> list[Target]:  # type: ignore[no-untyped-def]
    return [
        Target(id=f"t{i}", provider="openai", model=f"m{i}", base_url="http://x", **kw)
        for i in range(n)
    ]


def _strategy(name: str, targets: list[Target], *, weights=None, settings=None, seed=1, clock=None):  # type: ignore[no-untyped-def]
    settings = settings or RoutingSettings()
    states = {t.id: TargetState(t, settings) for t in targets}
    strat = make(
        name,
        states=states,
        weights=weights or {},
        settings=settings,
        rng=random.Random(seed),
        clock=clock or FakeClock(),
    )
    return strat, states


def _first_picks(strat, targets, n: int) -> Counter:  # type: ignore[no-untyped-def]
    return Counter(strat.order(targets)[0].id for _ in range(n))


# --- strategies ------------------------------------------------------------------------------


def test_ordered_keeps_list_order() -> None:
    ts = _targets(3)
    strat, _ = _strategy("ordered", ts)
    assert [t.id for t in strat.order(ts)] == ["t0", "t1", "t2"]


def test_round_robin_rotates_evenly() -> None:
    ts = _targets(3)
    strat, _ = _strategy("round_robin", ts)
    orders = [[t.id for t in strat.order(ts)] for _ in range(3)]
    assert orders == [["t0", "t1", "t2"], ["t1", "t2", "t0"], ["t2", "t0", "t1"]]
    assert _first_picks(strat, ts, 999) == {"t0": 333, "t1": 333, "t2": 333}


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_weighted_70_30_within_5_percent_over_1000(seed: int) -> None:
    ts = _targets(2)
    strat, _ = _strategy("weighted", ts, weights={"t0": 70, "t1": 30}, seed=seed)
    picks = _first_picks(strat, ts, 1000)
    assert abs(picks["t0"] / 1000 - 0.70) <= 0.05, picks
    # The fallback after the weighted pick is the other target.
    assert {t.id for t in strat.order(ts)} == {"t0", "t1"}


def test_weighted_uses_target_weight_and_never_picks_zero() -> None:
    ts = [
        *_targets(2, weight=3.0),
        Target(id="z", provider="openai", model="z", base_url="x", weight=0),
    ]
    strat, _ = _strategy("weighted", ts, seed=5)
    picks = _first_picks(strat, ts, 600)
    assert picks["z"] == 0 and abs(picks["t0"] - 300) < 50
    assert strat.order(ts)[-1].id == "z"  # weight 0 is the last resort


def test_least_busy_prefers_fewest_in_flight_and_rotates_ties() -> None:
    ts = _targets(3)
    strat, states = _strategy("least_busy", ts)
    states["t0"].limiter.in_flight = 4
    states["t1"].limiter.in_flight = 1
    states["t2"].limiter.in_flight = 2
    assert [t.id for t in strat.order(ts)] == ["t1", "t2", "t0"]
    for s in states.values():
        s.limiter.in_flight = 0
    assert set(_first_picks(strat, ts, 6).values()) == {2}


def test_lowest_latency_measures_first_then_prefers_fastest() -> None:
    clock = FakeClock()
    settings = RoutingSettings(min_samples=3, latency_window=60)
    ts = _targets(2)
    strat, states = _strategy("lowest_latency", ts, settings=settings, clock=clock)
    for _ in range(3):
        states["t0"].stats.success(400.0, clock())
    # t1 has no samples yet: it goes first so it gets measured.
    assert strat.order(ts)[0].id == "t1"
    for _ in range(3):
        states["t1"].stats.success(50.0, clock())
    assert [t.id for t in strat.order(ts)] == ["t1", "t0"]
    # The window rolls: t1's samples age out, so it is measured again before it is trusted.
    clock.advance(30)
    for _ in range(3):
        states["t0"].stats.success(100.0, clock())
    clock.advance(31)
    assert strat.order(ts)[0].id == "t1"


def test_cost_orders_by_blended_price_and_caps() -> None:
    cheap = Target(id="cheap", provider="openai", model="a", base_url="x", price=Price(0.1, 0.4))
    dear = Target(id="dear", provider="openai", model="b", base_url="x", price=Price(2.5, 10))
    unknown = Target(id="unknown", provider="openai", model="c", base_url="x")
    ts = [unknown, dear, cheap]
    strat, _ = _strategy("cost", ts)
    assert [t.id for t in strat.order(ts)] == ["cheap", "dear", "unknown"]
    capped, _ = _strategy("cost", ts, settings=RoutingSettings(max_cost_per_1k=1.0))
    assert [t.id for t in capped.order(ts)] == ["cheap", "unknown"]


# --- breaker ---------------------------------------------------------------------------------


def test_breaker_open_half_open_closed() -> None:
    clock = FakeClock()
    b = Breaker(BreakerSettings(failure_threshold=3, cooldown=10, half_open_probes=2))
    for _ in range(2):
        assert b.acquire(clock()) is False
        b.failure(clock(), False)
    b.success(False)  # a success resets the consecutive count
    for _ in range(3):
        b.failure(clock(), False)
    assert b.current(clock()) == "open" and b.acquire(clock()) is None
    assert b.retry_in(clock()) == 10
    clock.advance(10)
    assert b.current(clock()) == "half_open"
    # Limited probes: two may go, a third waits.
    assert b.acquire(clock()) is True and b.acquire(clock()) is True
    assert b.acquire(clock()) is None
    b.success(True)
    assert b.current(clock()) == "half_open"
    b.success(True)
    assert b.current(clock()) == "closed"


def test_breaker_probe_failure_reopens_and_stale_answers_do_not_count() -> None:
    clock = FakeClock()
    b = Breaker(BreakerSettings(failure_threshold=1, cooldown=5, half_open_probes=1))
    b.failure(clock(), False)
    clock.advance(5)
    assert b.acquire(clock()) is True
    b.success(False)  # an answer to a request sent before the breaker opened
    assert b.current(clock()) == "half_open"
    b.failure(clock(), True)
    assert b.current(clock()) == "open" and b.opens == 2
    clock.advance(5)
    probe = b.acquire(clock())
    b.release(probe)  # cancelled: the probe slot frees, no verdict
    assert b.acquire(clock()) is True


def test_disabled_breaker_never_opens() -> None:
    b = Breaker(BreakerSettings(enabled=False, failure_threshold=1))
    for _ in range(10):
        b.failure(0.0, False)
    assert b.ready(0.0)


# --- limiter ---------------------------------------------------------------------------------


async def test_limiter_caps_queues_and_sheds() -> None:
    lim = Limiter(2, max_queue=1, timeout=5)
    await lim.acquire()
    await lim.acquire()
    waiter = asyncio.create_task(lim.acquire())
    await asyncio.sleep(0)
    assert lim.queued == 1 and lim.in_flight == 2
    with pytest.raises(Overloaded):
        await lim.acquire()  # slots and queue full: refused at once
    lim.release()  # handed to the waiter
    await waiter
    assert lim.in_flight == 2 and lim.queued == 0
    lim.release()
    lim.release()
    assert lim.in_flight == 0


async def test_limiter_queue_timeout_and_cancel_free_their_place() -> None:
    lim = Limiter(1, max_queue=2, timeout=0.05)
    await lim.acquire()
    with pytest.raises(QueueTimeout):
        await lim.acquire()
    assert lim.queued == 0
    task = asyncio.create_task(lim.acquire())
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert lim.queued == 0
    lim.release()
    assert lim.in_flight == 0


def test_uncapped_limiter_only_counts() -> None:
    lim = Limiter(None)
    for _ in range(100):
        assert lim.try_acquire()
    assert lim.in_flight == 100 and lim.has_room()


# --- retry rules -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("exc", "retried", "kind", "unhealthy"),
    [
        (UpstreamError("x", status=429), True, "rate_limited", False),
        (UpstreamError("x", status=500), True, "server_error", True),
        (UpstreamError("x", status=503), True, "server_error", True),
        (UpstreamTimeout("x"), True, "timeout", True),
        (UpstreamUnreachable("x"), True, "connection_error", True),
        (UpstreamError("x", status=400), False, "client_error", False),
        (UpstreamError("x", status=401), False, "client_error", False),
        (UpstreamError("x", status=404), False, "client_error", False),
        (UpstreamError("x", status=422), False, "client_error", False),
    ],
)
def test_what_is_retried(exc: UpstreamError, retried: bool, kind: str, unhealthy: bool) -> None:
    assert should_retry(RetryPolicy(), exc) is retried
    assert error_kind(exc) == kind
    assert target_failed(exc) is unhealthy


def test_retry_on_narrows() -> None:
    policy = RetryPolicy(kinds=frozenset({"timeout"}), statuses=frozenset({503}))
    assert should_retry(policy, UpstreamTimeout("x"))
    assert should_retry(policy, UpstreamError("x", status=503))
    assert not should_retry(policy, UpstreamError("x", status=500))
    assert not should_retry(policy, UpstreamError("x", status=429))
    assert not should_retry(policy, UpstreamUnreachable("x"))


def test_backoff_grows_exponentially_with_jitter_and_a_cap() -> None:
    policy = RetryPolicy(backoff_initial=0.1, backoff_max=1.0, backoff_multiplier=2)
    assert [backoff_base(policy, n) for n in range(6)] == [0, 0.1, 0.2, 0.4, 0.8, 1.0]
    rng = random.Random(3)
    waits = [jittered(policy, 0.8, rng) for _ in range(200)]
    assert all(0.4 <= w <= 0.8 for w in waits) and len(set(waits)) > 100  # equal jitter
    full = RetryPolicy(jitter="full")
    assert all(0 <= jittered(full, 0.8, rng) <= 0.8 for _ in range(50))


def test_retry_after_seconds_and_http_date() -> None:
    err = UpstreamError("x", status=429, headers={"retry-after": "2.5"})
    assert retry_after(err, cap=60) == 2.5
    err.headers["retry-after"] = "9999"
    assert retry_after(err, cap=60) == 60
    err.headers["retry-after"] = email.utils.formatdate(time.time() + 30, usegmt=True)
    assert 25 < retry_after(err, cap=60) <= 30  # type: ignore[operator]
    err.headers["retry-after"] = "soon"
    assert retry_after(err, cap=60) is None


# --- streams ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("chunk", "content"),
    [
        ({"choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]}, False),
        ({"choices": [{"index": 0, "delta": {"role": "assistant", "refusal": None}}]}, False),
        ({"choices": [], "prompt_filter_results": []}, False),
        ({"choices": [{"index": 0, "delta": {"content": "Hi"}}]}, True),
        ({"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0}]}}]}, True),
        ({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}, True),
        ({"choices": [], "usage": {"total_tokens": 3}}, True),
    ],
)
def test_first_content_chunk(chunk: dict, content: bool) -> None:
    assert carries_content(chunk) is content
