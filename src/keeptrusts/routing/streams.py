"""Stream helpers: read ahead to the first content chunk, then hand over the rest.

A stream may fall back to another target only while the client has seen nothing that
matters. OpenAI (and our Anthropic translation) opens with a role-only delta
(``{"role": "assistant", "content": ""}``), so "the first chunk arrived" is not "the
answer started": an upstream that dies right after the role chunk must still fall back.
``read_head`` therefore buffers such preamble chunks (at most ``HEAD_LIMIT``) until one
carries content, a tool call, a finish reason or usage; the router bounds that wait with
the target's time-to-first-token timeout. After the head, failures reach the server,
which ends the stream with an SSE error event instead of ``[DONE]``.

A stream's items are parsed ``Chunk``s, or ``Frames`` (upstream bytes relayed as they
are, see ``providers.relay``); nothing here looks inside them beyond "has content".
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import AsyncIterator, Callable
from typing import Any

from keeptrusts.errors import UpstreamError, UpstreamTimeout
from keeptrusts.providers.base import Chunk
from keeptrusts.providers.relay import Frames
from keeptrusts.providers.wire import carries_content

HEAD_LIMIT = 8
log = logging.getLogger("keeptrusts.routing")
Item = Chunk | Frames

__all__ = ["HEAD_LIMIT", "Item", "Tail", "carries_content", "close", "has_content", "read_head"]


def has_content(item: Item) -> bool:
    """Whether a stream item is more than preamble."""
    if type(item) is Frames:
        return item.content
    return carries_content(item.obj)  # type: ignore[union-attr]


async def read_head(stream: AsyncIterator[Item]) -> list[Item]:
    """Items up to and including the first with content; raise StopAsyncIteration if the
    stream ends before any item."""
    head: list[Item] = []
    while True:
        try:
            chunk = await anext(stream)
        except StopAsyncIteration:
            if head:
                return head  # a complete stream that said nothing: pass it on
            raise
        head.append(chunk)
        if len(head) >= HEAD_LIMIT or has_content(chunk):
            return head


class Tail:
    """The rest of a stream after the head: an async iterator with ``aclose``.

    A class rather than an async generator because closing a generator that never started
    skips its ``finally``; here ``aclose`` always closes the upstream stream and runs
    ``on_end(error, completed)`` exactly once, however the stream ends: completed, failed,
    or dropped by the client. An unexpected exception from a provider's translation
    becomes a 502 upstream error, so the server can still end the stream with an error
    event.

    The total timeout is one timer per stream, not one per chunk (``asyncio.timeout``
    around every read costs microseconds per chunk): at the loop-time ``deadline`` it
    cancels the read in progress, or marks the stream so the next read fails.

    One task reads a tail (the request handler's): it is looked up once, not per read.
    """

    __slots__ = (
        "_cleanup",
        "_ended",
        "_error",
        "_expired",
        "_head",
        "_loop",
        "_on_end",
        "_reading",
        "_stream",
        "_target_id",
        "_task",
        "_timer",
    )

    def __init__(
        self,
        head: list[Item],
        stream: AsyncIterator[Item],
        *,
        deadline: float,
        target_id: str,
        on_end: Callable[[UpstreamError | None, bool], None],
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        self._head = deque(head)
        self._stream = stream
        self._target_id = target_id
        self._on_end = on_end
        self._ended = False
        self._error: UpstreamError | None = None
        self._expired = False
        self._cleanup: asyncio.Future[Any] | None = None
        self._reading: asyncio.Task[Any] | None = None
        self._task: asyncio.Task[Any] | None = None
        self._loop = loop or asyncio.get_running_loop()
        self._timer = self._loop.call_at(deadline, self._expire)

    def __aiter__(self) -> Tail:
        return self

    async def __anext__(self) -> Item:
        if self._head:
            return self._head.popleft()
        if self._ended:
            # After a failure the stream never looks complete (that would mean [DONE]).
            if self._error is not None:
                raise self._error
            raise StopAsyncIteration
        if self._expired:
            raise await self._timed_out()
        task = self._task
        if task is None:
            task = self._task = asyncio.current_task(self._loop)
        self._reading = task
        try:
            chunk = await anext(self._stream)
        except StopAsyncIteration:
            self._reading = None
            await self._finish(None, completed=True)
            raise
        except UpstreamError as exc:
            self._reading = None
            await self._finish(exc)
            raise
        except asyncio.CancelledError:
            self._reading = None
            # Our timer's cancellation, and nobody else's: a timeout, not a disconnect.
            if self._expired and task is not None and task.uncancel() == 0:
                raise await self._timed_out() from None
            await self._finish(None)
            raise
        except Exception as exc:
            self._reading = None
            err = malformed(self._target_id, exc)
            await self._finish(err)
            raise err from exc
        except BaseException:
            self._reading = None
            await self._finish(None)
            raise
        self._reading = None
        return chunk

    async def aclose(self) -> None:
        await self._finish(None)

    def _expire(self) -> None:
        self._expired = True
        if self._reading is not None:
            self._reading.cancel()
        elif not self._ended:
            # Nobody is reading: finish now, so a stream its consumer forgot to close
            # still frees its slot and upstream connection at the deadline.
            self._cleanup = asyncio.ensure_future(self._timed_out())

    async def _timed_out(self) -> UpstreamError:
        err = UpstreamTimeout(
            f"target {self._target_id} did not finish the stream within its total timeout"
        )
        await self._finish(err)
        return err

    async def _finish(self, error: UpstreamError | None, *, completed: bool = False) -> None:
        if self._ended:
            return
        self._ended = True
        self._error = error
        self._timer.cancel()
        self._head.clear()
        try:
            await close(self._stream)
        finally:
            self._on_end(error, completed)


async def close(stream: AsyncIterator[Any]) -> None:
    """Close a provider stream (an async generator), closing its upstream connection."""
    aclose = getattr(stream, "aclose", None)
    if aclose is not None:
        try:
            await aclose()
        except Exception:
            log.debug("closing an upstream stream failed", exc_info=True)


def malformed(target_id: str, exc: BaseException) -> UpstreamError:
    """A provider failed on what the upstream sent: report it as a 502 from that target."""
    log.warning(
        "target %s: unexpected %s from the provider", target_id, type(exc).__name__, exc_info=exc
    )
    return UpstreamError(
        f"target {target_id} sent a response the gateway could not read ({type(exc).__name__})",
        status=502,
        code="upstream_malformed",
    )
