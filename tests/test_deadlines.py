"""One timer for every attempt's deadline: timeouts fire, other cancellations stay theirs."""

from __future__ import annotations

import asyncio
import time

import pytest

from keeptrusts.deadlines import TICK, Deadlines


async def _within(d: Deadlines, seconds: float, aw):  # type: ignore[no-untyped-def]
    return await d.within(aw, seconds)


async def test_deadline_cancels_late_work_within_a_tick() -> None:
    d = Deadlines()
    started = time.perf_counter()
    with pytest.raises(TimeoutError):
        await _within(d, 0.1, asyncio.sleep(5))
    assert 0.1 <= time.perf_counter() - started < 0.1 + 3 * TICK


async def test_work_done_in_time_is_untouched_and_the_timer_stops() -> None:
    d = Deadlines()
    assert await _within(d, 1.0, asyncio.sleep(0.01, result="ok")) == "ok"
    await asyncio.sleep(2 * TICK)
    assert d._timer is None and not d._due


async def test_someone_elses_cancel_is_not_a_timeout() -> None:
    d = Deadlines()
    task = asyncio.ensure_future(_within(d, 5.0, asyncio.sleep(5)))
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_many_concurrent_deadlines_each_fire_once() -> None:
    d = Deadlines()
    results = await asyncio.gather(
        *(_within(d, 0.05 * (i % 3 + 1), asyncio.sleep(0.01 if i % 2 else 5)) for i in range(30)),
        return_exceptions=True,
    )
    assert sum(isinstance(r, TimeoutError) for r in results) == 15
    assert sum(r is None for r in results) == 15
