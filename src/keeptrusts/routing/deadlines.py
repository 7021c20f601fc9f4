"""Deadlines for many concurrent attempts, watched by one timer.

``asyncio.timeout`` around every upstream attempt costs a timer handle and a context
manager (about 5 µs on uvloop, more than the rest of the router's bookkeeping per
request). Here an attempt costs two dict operations, and one timer wakes every ``TICK``
seconds while attempts are in flight, cancelling the tasks whose deadline has passed. The
price is precision: a deadline fires up to ``TICK`` late, which is nothing next to the
total and first-token timeouts it enforces (seconds).

Usage mirrors ``asyncio.timeout``: ``start(task, when)`` before the await; on
``CancelledError``, ``end(task)`` says whether the deadline caused it (then
``task.uncancel()`` tells whether anyone else also cancelled the task); ``end`` always
runs once the attempt is over.
"""

from __future__ import annotations

import asyncio
from typing import Any

TICK = 0.05


class Deadlines:
    __slots__ = ("_due", "_expired", "_timer")

    def __init__(self) -> None:
        self._due: dict[asyncio.Task[Any], float] = {}
        self._expired: set[asyncio.Task[Any]] = set()
        self._timer: asyncio.TimerHandle | None = None

    def start(self, task: asyncio.Task[Any], when: float) -> None:
        """Cancel ``task`` once the loop's clock passes ``when`` (unless ``end`` comes first)."""
        self._due[task] = when
        if self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(TICK, self._sweep)

    def end(self, task: asyncio.Task[Any]) -> bool:
        """Stop watching ``task``; True if its deadline passed and cancelled it."""
        self._due.pop(task, None)
        if self._expired and task in self._expired:
            self._expired.discard(task)
            return True
        return False

    def _sweep(self) -> None:
        loop = asyncio.get_running_loop()
        now = loop.time()
        late = [task for task, when in self._due.items() if when <= now]
        for task in late:
            del self._due[task]
            self._expired.add(task)
            task.cancel()
        self._timer = loop.call_later(TICK, self._sweep) if self._due else None
