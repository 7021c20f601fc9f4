"""What rate limits and budgets cost per request: reserve (before the upstream call) and
reconcile (after it), in process and on Redis.

    python bench/limits_cost.py [--requests 20000] [--redis-url URL] [--concurrency 64]

Each request is a chat completion (a system and a user message, ~600 characters,
``max_tokens`` 256) from one key, checked against a typical section: the key's requests
and tokens per minute, its role's daily budget and a default requests per minute (four
counters), and against a single counter. Limits are set high enough that nothing is
refused. Sequential figures are the added latency per request; the concurrent run shows
Redis throughput with many requests in flight. Redis keys use a random prefix and are
deleted afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
import uuid
from typing import Any

from keeptrusts.config.model import Target
from keeptrusts.context import Attempt, Identity, RequestContext
from keeptrusts.limits import ENV_REDIS_URL, Limiter
from keeptrusts.routing.router import Route

TARGET = Target(id="openai-gpt4o", provider="openai", model="gpt-4o", base_url="https://x/v1")
ROUTE = Route("gpt-4o", (TARGET,))
BIG = 10**12
TYPICAL = {
    "keys": {"team-a": {"requests_per_minute": BIG, "tokens_per_minute": BIG}},
    "roles": {"analyst": {"budget": {"usd": 10**6, "period": "day"}}},
    "default": {"requests_per_minute": BIG},
}
SINGLE = {"keys": {"team-a": {"requests_per_minute": BIG}}}


def request(i: int) -> RequestContext:
    body = {
        "model": "gpt-4o",
        "max_tokens": 256,
        "messages": [
            {"role": "system", "content": "You are a helpful assistant. " * 6},
            {"role": "user", "content": f"Question {i}: " + "summarise this paragraph. " * 17},
        ],
    }
    ctx = RequestContext(f"req_{i}", "chat.completions", body, "gpt-4o", False, {})
    ctx.identity = Identity(key_id="key_01", name="team-a", role="analyst", source="key")
    ctx.route = ROUTE
    return ctx


def answered(ctx: RequestContext) -> RequestContext:
    ctx.target = TARGET
    ctx.attempts.append(Attempt(TARGET.id, "openai", "ok", 200, 1.0))
    ctx.usage = {"prompt_tokens": 140, "completion_tokens": 90, "total_tokens": 230}
    return ctx


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


async def sequential(limiter: Limiter, n: int) -> dict[str, float]:
    reserve, settle = [], []
    for i in range(n):
        ctx = request(i)
        t0 = time.perf_counter()
        await limiter.reserve(ctx)
        t1 = time.perf_counter()
        await limiter.reconcile(answered(ctx))
        t2 = time.perf_counter()
        reserve.append((t1 - t0) * 1e6)
        settle.append((t2 - t1) * 1e6)
    return {
        "reserve_p50_us": statistics.median(reserve),
        "reserve_p99_us": pct(reserve, 0.99),
        "reconcile_p50_us": statistics.median(settle),
        "reconcile_p99_us": pct(settle, 0.99),
    }


async def concurrent(limiter: Limiter, n: int, concurrency: int) -> float:
    sem = asyncio.Semaphore(concurrency)

    async def one(i: int) -> None:
        async with sem:
            ctx = request(i)
            await limiter.reserve(ctx)
            await limiter.reconcile(answered(ctx))

    t0 = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(n)))
    return n / (time.perf_counter() - t0)


async def cleanup(url: str, prefix: str) -> None:
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(url)
    keys = [k async for k in client.scan_iter(match=prefix + "*", count=1000)]
    if keys:
        await client.delete(*keys)
    await client.aclose()


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--requests", type=int, default=20000)
    ap.add_argument("--redis-url", default=os.environ.get(ENV_REDIS_URL))
    ap.add_argument("--concurrency", type=int, default=64)
    args = ap.parse_args()
    rows: list[tuple[str, dict[str, Any]]] = []
    for name, section in (("typical (4 counters)", TYPICAL), ("single counter", SINGLE)):
        limiter = Limiter.from_config(section, None, env={})
        assert limiter is not None
        await sequential(limiter, 1000)  # warm up
        rows.append((f"memory, {name}", await sequential(limiter, args.requests)))
        await limiter.close()
    if args.redis_url:
        prefix = f"kt-bench:{uuid.uuid4().hex}:"
        for name, section in (("typical (4 counters)", TYPICAL), ("single counter", SINGLE)):
            limiter = Limiter.from_config({**section, "key_prefix": prefix}, args.redis_url, env={})
            assert limiter is not None
            await limiter.start()
            await sequential(limiter, 500)
            stats = await sequential(limiter, max(2000, args.requests // 5))
            stats["concurrent_req_per_s"] = await concurrent(
                limiter, max(5000, args.requests // 2), args.concurrency
            )
            rows.append((f"redis, {name}", stats))
            await limiter.close()
        await cleanup(args.redis_url, prefix)
    for name, stats in rows:
        cells = "  ".join(f"{k}={v:,.1f}" for k, v in stats.items())
        print(f"{name:32s} {cells}")


if __name__ == "__main__":
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    asyncio.run(main())
