"""Counters in Redis, shared by every gateway instance of a fleet.

Each request runs ONE Lua script that checks every counter that applies to it and, only if
all have room, reserves on all of them. Redis runs a script atomically, so instances
checking at the same moment cannot both take the last unit: a burst cannot overshoot.
Reconciling runs a second script that corrects counters that still exist (never creating
one, never going below zero).

Counters are plain integer keys with a TTL: ``<prefix><kind>:<entry>:[<caller>:]<metric>:
<window or period>``. A script touches several keys, so on Redis Cluster give the prefix a
hash tag (``{kt}:limits:``) to keep them in one slot.

Any Redis failure (refused, timed out, script error) raises ``BackendError``; the limiter
applies ``on_backend_error``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from typing import Any

from keeptrusts.limits.memory import Check, Denial

RESERVE_LUA = """
local n = #KEYS / 2
for i = 1, n do
  local a = (i - 1) * 4
  local weight = tonumber(ARGV[a + 1])
  local cost = tonumber(ARGV[a + 3])
  local cur = tonumber(redis.call('GET', KEYS[2 * i - 1]) or '0')
  local prev = 0
  if weight > 0 then
    prev = tonumber(redis.call('GET', KEYS[2 * i]) or '0')
  end
  if cur + prev * weight + cost > tonumber(ARGV[a + 2]) then
    return {i, cur, prev}
  end
end
for i = 1, n do
  local a = (i - 1) * 4
  redis.call('INCRBY', KEYS[2 * i - 1], ARGV[a + 3])
  redis.call('PEXPIRE', KEYS[2 * i - 1], ARGV[a + 4])
end
return {0}
"""

ADJUST_LUA = """
for i = 1, #KEYS do
  if redis.call('EXISTS', KEYS[i]) == 1 then
    if redis.call('INCRBY', KEYS[i], ARGV[i]) < 0 then
      redis.call('SET', KEYS[i], 0, 'KEEPTTL')
    end
  end
end
return 0
"""


class BackendError(Exception):
    """The counter store could not be reached or failed."""


class RedisBackend:
    kind = "redis"
    is_async = True

    def __init__(self, url: str, *, timeout: float = 0.5, max_connections: int = 64) -> None:
        self.url = url
        self.timeout = timeout
        self.max_connections = max_connections
        self._client: Any = None
        self._reserve: Any = None
        self._adjust: Any = None
        self._errors: tuple[type[BaseException], ...] = (OSError, asyncio.TimeoutError)
        self._closed = False

    def _connect(self) -> None:
        if self._closed:
            raise BackendError("the limits store was closed")
        import redis.asyncio as aioredis
        from redis.asyncio.retry import Retry
        from redis.backoff import NoBackoff
        from redis.exceptions import RedisError

        # Fail fast: a dead Redis must cost a request milliseconds, not a retry loop.
        pool = aioredis.BlockingConnectionPool.from_url(
            self.url,
            max_connections=self.max_connections,
            timeout=max(self.timeout * 4, 2.0),
            socket_timeout=self.timeout,
            socket_connect_timeout=self.timeout,
            retry=Retry(NoBackoff(), 0),
        )
        self._client = aioredis.Redis(connection_pool=pool, retry=Retry(NoBackoff(), 0))
        self._reserve = self._client.register_script(RESERVE_LUA)
        self._adjust = self._client.register_script(ADJUST_LUA)
        self._errors = (RedisError, OSError, asyncio.TimeoutError)

    async def start(self) -> None:
        """Connect and load the scripts; raise ``BackendError`` if Redis is unreachable."""
        if self._client is None:
            self._connect()
        try:
            await self._client.ping()
        except self._errors as exc:
            raise BackendError(_describe(exc)) from exc

    async def reserve(self, checks: Sequence[Check], now: float) -> Denial | None:
        if self._client is None:
            self._connect()
        keys: list[str] = []
        args: list[Any] = []
        for key, prev_key, weight, limit, cost, ttl in checks:
            keys.append(key)
            keys.append(prev_key or key)
            args.append(repr(weight) if prev_key else "0")
            args.append(limit)
            args.append(cost)
            args.append(int(ttl * 1000) + 1)
        try:
            res = await self._reserve(keys=keys, args=args)
        except self._errors as exc:
            raise BackendError(_describe(exc)) from exc
        if res[0] == 0:
            return None
        return int(res[0]) - 1, int(res[1]), int(res[2])

    async def adjust(self, deltas: Sequence[tuple[str, int]], now: float) -> None:
        if self._client is None:
            self._connect()
        try:
            await self._adjust(keys=[k for k, _ in deltas], args=[d for _, d in deltas])
        except self._errors as exc:
            raise BackendError(_describe(exc)) from exc

    async def close(self) -> None:
        self._closed = True
        if self._client is not None:
            client, self._client = self._client, None
            with contextlib.suppress(*self._errors):
                await client.aclose(close_connection_pool=True)


def _describe(exc: BaseException) -> str:
    # Never the URL: it may carry a password.
    text = str(exc).splitlines()[0][:200] if str(exc) else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
