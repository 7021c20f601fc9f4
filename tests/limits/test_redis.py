"""The Redis backend: a fleet shares counters; a failing Redis fails open or closed."""

from __future__ import annotations

import asyncio
import logging
import socket
import time

import pytest

from keeptrusts.limits import Limiter, LimitsUnavailable, RateLimited, Reservation
from keeptrusts.limits.redis_backend import RedisBackend
from tests.limits.helpers import answered, burst, ctx, try_reserve

redis = pytest.importorskip("redis")

RPM_60 = {"keys": {"ci-bot": {"requests_per_minute": 60}}}


def _dead_url() -> str:
    with socket.socket() as s:  # a port nothing listens on: connections are refused
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"redis://127.0.0.1:{port}/0"


async def test_two_instances_share_one_limit(redis_url: str, redis_prefix: str) -> None:
    limits = {**RPM_60, "key_prefix": redis_prefix}
    a = Limiter.from_config(limits, redis_url, env={})
    b = Limiter.from_config(limits, redis_url, env={})
    assert a.backend is not b.backend
    try:
        await a.start()
        await b.start()
        contexts = [ctx() for _ in range(120)]
        results = await asyncio.gather(
            *(try_reserve(a if i % 2 else b, c) for i, c in enumerate(contexts))
        )
        ok = [r for r in results if isinstance(r, Reservation)]
        assert len(ok) == 60
        assert all(isinstance(r, RateLimited) for r in results if not isinstance(r, Reservation))
    finally:
        await a.close()
        await b.close()


async def test_two_instances_share_one_budget(redis_url: str, redis_prefix: str) -> None:
    limits = {"roles": {"developer": {"budget": {"usd": 0.05}}}, "key_prefix": redis_prefix}
    a = Limiter.from_config(limits, redis_url, env={})
    b = Limiter.from_config(limits, redis_url, env={})
    try:
        results = await asyncio.gather(
            *(try_reserve(a if i % 2 else b, ctx(key_id=f"k{i}")) for i in range(200))
        )
        ok = [r for r in results if isinstance(r, Reservation)]
        assert len(ok) == 49  # $0.001015 reserved each: 49 fit in $0.05
        assert sum(r.cost_nano for r in ok) <= 50_000_000
    finally:
        await a.close()
        await b.close()


async def test_every_counter_expires(redis_url: str, redis_prefix: str) -> None:
    limits = {
        "keys": {"ci-bot": {"requests_per_minute": 5, "tokens_per_minute": 10_000}},
        "roles": {"developer": {"budget": {"usd": 1, "period": "month"}}},
        "default": {"budget": {"usd": 1}},
        "key_prefix": redis_prefix,
    }
    limiter = Limiter.from_config(limits, redis_url, env={})
    try:
        c = ctx()
        await limiter.reserve(c)
        await limiter.reconcile(answered(c, 3, 4))
        failed = ctx()
        await limiter.reserve(failed)
        await limiter.reconcile(failed)  # refunded to zero, never deleted or negative
    finally:
        await limiter.close()
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    keys = list(client.scan_iter(match=redis_prefix + "*"))
    assert len(keys) == 4  # rpm, tpm, monthly role budget, daily default budget
    for k in keys:
        ttl = client.ttl(k)
        assert 0 < ttl <= 32 * 86400 + 3600, (k, ttl)
        assert int(client.get(k)) >= 0
    assert client.get(next(k for k in keys if k.endswith(tuple("0123456789")) and ":rpm:" in k))
    client.close()


async def test_redis_down_fails_open_with_one_warning(caplog) -> None:
    limiter = Limiter.from_config(RPM_60, _dead_url(), env={})
    assert isinstance(limiter.backend, RedisBackend)
    try:
        with caplog.at_level(logging.WARNING, logger="keeptrusts.limits"):
            await limiter.start()
            started = time.perf_counter()
            contexts = [ctx() for _ in range(100)]
            for c in contexts:
                assert await limiter.reserve(c) is None
            elapsed = time.perf_counter() - started
    finally:
        await limiter.close()
    assert elapsed < 1.0  # refused connections fail fast; later ones skip Redis for a while
    assert contexts[0].policy_results[-1].verdict == "log"
    assert contexts[0].policy_results[-1].reason_code == "limits_unavailable"
    failures = [r for r in caplog.records if "Redis failed" in r.getMessage()]
    assert len(failures) == 1
    assert "on_backend_error: open" in failures[0].getMessage()


async def test_redis_down_fails_closed() -> None:
    limits = {**RPM_60, "on_backend_error": "closed"}
    limiter = Limiter.from_config(limits, _dead_url(), env={})
    try:
        for _ in range(3):
            c = ctx()
            with pytest.raises(LimitsUnavailable) as info:
                await limiter.reserve(c)
            err = info.value
            assert (err.status, err.code, err.type) == (
                503,
                "limits_unavailable",
                "service_unavailable",
            )
            assert err.headers["retry-after"] == "1"
            assert c.policy_results[-1].verdict == "error"
    finally:
        await limiter.close()


async def test_redis_recovers_after_an_outage(redis_url: str, redis_prefix: str) -> None:
    limits = {**RPM_60, "key_prefix": redis_prefix, "on_backend_error": "closed"}
    limiter = Limiter.from_config(limits, _dead_url(), env={})
    try:
        with pytest.raises(LimitsUnavailable):
            await limiter.reserve(ctx())
        # The same limiter, its store back (here: pointed at a live Redis).
        await limiter.backend.close()
        limiter.backend = RedisBackend(redis_url)
        limiter._down_until = 0.0
        assert isinstance(await limiter.reserve(ctx()), Reservation)
    finally:
        await limiter.close()


async def test_settle_runs_in_the_background_and_close_waits(
    redis_url: str, redis_prefix: str
) -> None:
    limits = {"keys": {"ci-bot": {"requests_per_minute": 1}}, "key_prefix": redis_prefix}
    limiter = Limiter.from_config(limits, redis_url, env={})
    other = Limiter.from_config(limits, redis_url, env={})
    try:
        c = ctx()
        await limiter.reserve(c)
        c.status = 502
        limiter.settle(c)
        assert limiter._pending
        await limiter.close()  # waits for the refund
        ok, _ = await burst(other, [ctx()])
        assert ok == 1
    finally:
        await limiter.close()
        await other.close()


def test_the_url_never_reaches_a_message() -> None:
    from keeptrusts.limits.redis_backend import _describe

    err = redis.exceptions.ConnectionError("Error 111 connecting to 127.0.0.1:6379.")
    assert "redis://" not in _describe(err)
