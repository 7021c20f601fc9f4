"""In-process counters for one gateway instance.

Check-and-reserve is one synchronous function: with no ``await`` inside, no other request
can run between a check and its reservation, so a concurrent burst cannot overshoot.
"""

from __future__ import annotations

from collections.abc import Sequence

# (key, previous window's key or None, previous window's weight, limit, cost, ttl seconds)
Check = tuple[str, str | None, float, int, int, float]
# (index of the check that failed, current count, previous window's count)
Denial = tuple[int, int, int]

SWEEP_SECONDS = 60.0


class MemoryBackend:
    kind = "memory"
    is_async = False

    def __init__(self) -> None:
        self._counts: dict[str, list[float]] = {}  # key -> [count, expires at]
        self._next_sweep = 0.0

    def _get(self, key: str, now: float) -> int:
        entry = self._counts.get(key)
        if entry is None or entry[1] <= now:
            return 0
        return int(entry[0])

    def reserve(self, checks: Sequence[Check], now: float) -> Denial | None:
        """Reserve every check's cost, or none of them and return the first that failed."""
        if now >= self._next_sweep:
            self._sweep(now)
        get = self._get
        for i, (key, prev_key, weight, limit, cost, _) in enumerate(checks):
            cur = get(key, now)
            prev = get(prev_key, now) if prev_key is not None else 0
            if cur + prev * weight + cost > limit:
                return i, cur, prev
        counts = self._counts
        for key, _, _, _, cost, ttl in checks:
            entry = counts.get(key)
            if entry is None or entry[1] <= now:
                counts[key] = [cost, now + ttl]
            else:
                entry[0] += cost
        return None

    def adjust(self, deltas: Sequence[tuple[str, int]], now: float) -> None:
        """Add each delta to its counter if the counter still exists (never below zero)."""
        counts = self._counts
        for key, delta in deltas:
            entry = counts.get(key)
            if entry is not None and entry[1] > now:
                entry[0] = max(0, entry[0] + delta)

    def _sweep(self, now: float) -> None:
        self._next_sweep = now + SWEEP_SECONDS
        expired = [k for k, (_, exp) in self._counts.items() if exp <= now]
        for k in expired:
            del self._counts[k]

    def __len__(self) -> int:
        return len(self._counts)

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        self._counts.clear()
