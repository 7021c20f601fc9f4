"""Run CPU-heavy detector work without stalling the event loop.

Short texts are scored inline (a thread hop costs more than the work); long ones go to the
gateway's bounded thread pool so other requests keep flowing while they are scanned.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TypeVar

from keeptrusts.policies.base import PolicyEnv

T = TypeVar("T")
# Above this many characters a scan is moved off the event loop.
INLINE_MAX_CHARS = 2000


async def run_detector(env: PolicyEnv, size: int, fn: Callable[[], T]) -> T:
    if size <= INLINE_MAX_CHARS or env.executor is None:
        return fn()
    return await asyncio.get_running_loop().run_in_executor(env.executor, fn)
