"""Deadlines for many concurrent awaits (upstream attempts, policy hooks), one timer.

``asyncio.timeout`` costs a timer handle and a context manager per await (about 5 µs on
uvloop: more than the rest of the router's bookkeeping per request, and a policy chain
bounds every hook). Here an await costs two dict operations, and one timer wakes every
``TICK`` seconds while any is in flight, cancelling the tasks whose deadline has passed.
The price is precision: a deadline fires up to ``TICK`` late, which is nothing next to the
timeouts it enforces (a target's total and first-token timeouts, a policy's bound: seconds).

``await deadlines.within(aw, seconds)`` is ``async with asyncio.timeout(seconds): await aw``.
Underneath, ``start(task, when)`` comes before the await; on ``CancelledError``,
``end(task)`` says whether the deadline caused it (then ``task.uncancel()`` tells whether
anyone else also cancelled the task); ``end`` always runs once the attempt is over.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any, TypeVar

TICK = 0.05
T = TypeVar("T")


class Deadlines:
    __slots__ = ("_due", "_expired", "_loop", "_timer")

    def __init__(self) -> None:
        self._due: dict[asyncio.Task[Any], float] = {}
        self._expired: set[asyncio.Task[Any]] = set()
        self._timer: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The running event loop, looked up once. In Python 3.11 every
        ``asyncio.get_running_loop()`` and ``asyncio.current_task()`` makes a ``getpid()``
        system call (asyncio checks for a fork); ``current_task(loop)`` does not."""
        loop = self._loop
        if loop is None or not loop.is_running():
            loop = self._loop = asyncio.get_running_loop()
        return loop

    def start(self, task: asyncio.Task[Any], when: float) -> None:
        """Cancel ``task`` once the loop's clock passes ``when`` (unless ``end`` comes first)."""
        self._due[task] = when
        if self._timer is None:
            self._timer = self.loop.call_later(TICK, self._sweep)

    def end(self, task: asyncio.Task[Any]) -> bool:
        """Stop watching ``task``; True if its deadline passed and cancelled it."""
        self._due.pop(task, None)
        if self._expired and task in self._expired:
            self._expired.discard(task)
            return True
        return False

    async def within(
        self, aw: Awaitable[T], seconds: float, task: asyncio.Task[Any] | None = None
    ) -> T:
        """Await ``aw``; TimeoutError once ``seconds`` have passed (up to ``TICK`` later).
        ``task``: the current task, when the caller already knows it."""
        loop = self.loop
        if task is None:
            task = asyncio.current_task(loop)
        if task is None:  # not in a task: nothing to cancel, no deadline
            return await aw
        self.start(task, loop.time() + seconds)
        try:
            return await aw
        except asyncio.CancelledError:
            # Our deadline's cancellation, and nobody else's: a timeout, not a disconnect.
            if self.end(task) and task.uncancel() == 0:
                raise TimeoutError from None
            raise
        finally:
            self.end(task)

    def _sweep(self) -> None:
        loop = self.loop
        now = loop.time()
        late = [task for task, when in self._due.items() if when <= now]
        for task in late:
            del self._due[task]
            self._expired.add(task)
            task.cancel()
        self._timer = loop.call_later(TICK, self._sweep) if self._due else None
