"""A per-target concurrency cap with a bounded wait queue.

At most ``cap`` requests are in flight to a target; up to ``max_queue`` more wait, each for
at most ``timeout`` seconds, and are handed a slot in arrival order as one frees up. When
the queue is full a request is refused at once (``Overloaded``) rather than held: memory
stays bounded under a burst, and the router falls through to another target or sheds the
request with 503 and ``Retry-After``.

Without a cap the limiter only counts in-flight requests (``least_busy`` and the metrics
read the count). One event loop owns it, so plain integers and futures suffice.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque


class Overloaded(Exception):
    """The target's slots and queue are full."""


class QueueTimeout(Exception):
    """A queued request waited ``timeout`` seconds without getting a slot."""


class Limiter:
    __slots__ = ("_waiters", "cap", "in_flight", "max_queue", "timeout")

    def __init__(self, cap: int | None, max_queue: int = 0, timeout: float = 10.0) -> None:
        self.cap = cap
        self.max_queue = max_queue
        self.timeout = timeout
        self.in_flight = 0
        self._waiters: deque[asyncio.Future[None]] = deque()

    @property
    def queued(self) -> int:
        return len(self._waiters)

    @property
    def load(self) -> int:
        """In flight plus waiting: what ``least_busy`` compares."""
        return self.in_flight + len(self._waiters)

    def has_room(self) -> bool:
        """Whether a request would get a slot or a place in the queue right now."""
        return self.cap is None or self.in_flight < self.cap or self.queued < self.max_queue

    def try_acquire(self) -> bool:
        if self.cap is None or (self.in_flight < self.cap and not self._waiters):
            self.in_flight += 1
            return True
        return False

    async def acquire(self) -> None:
        """Take a slot, waiting in the queue if there is room; raise if there is none."""
        if self.try_acquire():
            return
        if len(self._waiters) >= self.max_queue:
            raise Overloaded
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(fut)
        try:
            await asyncio.wait_for(asyncio.shield(fut), self.timeout)
        except BaseException as exc:
            if fut.done() and not fut.cancelled():
                # The slot was handed over just as we gave up: pass it on.
                self.release()
            else:
                fut.cancel()
                self._remove(fut)
            if isinstance(exc, TimeoutError):
                raise QueueTimeout from None
            raise

    def release(self) -> None:
        """Free a slot, handing it straight to the oldest waiter if there is one."""
        while self._waiters:
            fut = self._waiters.popleft()
            if not fut.done():
                fut.set_result(None)  # in_flight is unchanged: the slot changes hands
                return
        self.in_flight -= 1

    def _remove(self, fut: asyncio.Future[None]) -> None:
        with contextlib.suppress(ValueError):
            self._waiters.remove(fut)
