"""Run CPU-heavy detector work without stalling the event loop.

Short texts (up to ``INLINE_MAX_CHARS``) are scanned inline: moving them costs more than
the work. Inline scans that become due in the same turn of the event loop after its first
one run back to back in one callback (see ``_run_due``). Long ones go to a **scan process**,
one per gateway process, started on the first long text; until it is ready (about a second)
or if it dies, they go to the gateway's thread pool instead, one at a time.
``KEEPTRUSTS_SCAN_PROCESS=0`` keeps every long scan in threads.

Why a process: the detectors are Python, and a scan holds the GIL. The event loop (uvloop)
takes the GIL again for every callback, and waits for it up to the interpreter's switch
interval (5 ms) each time, longer when two scans compete for it; C calls on a long text
(regexes, Unicode normalisation) hold it for several milliseconds regardless. Measured with
``bench/detector_cost.py`` (2 shared cores): while other clients' long prompts were scanned in
two threads, short requests' p50 rose 3-4x and p99 4-9x; with the scan process, about 1-2x.
A process has its own GIL, so the loop only shares the CPU with it (at a lower priority), and
on a machine with a free core not even that. It costs ~120 MB per gateway process.

What crosses to the scan process is a module-level function and its arguments (texts and
plain config values), so the same function runs inline, in a thread or in the process with
the same result; each process keeps its own loaded detectors.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import itertools
import logging
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import Executor, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any, TypeVar

from keeptrusts.policies.base import PolicyEnv

T = TypeVar("T")
log = logging.getLogger(__name__)

# Above this many characters a scan is moved off the event loop (~2 ms of work inline).
INLINE_MAX_CHARS = 2000
# While a scan runs in a thread, the loop gets the GIL back after this long, not after 5 ms.
THREAD_SWITCH_INTERVAL = 0.0005
# The scan process runs at a lower priority: a short request's few milliseconds of work on
# the event loop preempt a long scan (which gets about a quarter of a core shared with a
# busy event loop; all of a free one).
SCAN_PROCESS_NICE = 5
# After a scan process dies, wait this long before starting another one.
RESTART_AFTER_S = 10.0
SCAN_PROCESS_ENV = "KEEPTRUSTS_SCAN_PROCESS"


async def run_detector(
    env: PolicyEnv,
    size: int,
    fn: Callable[..., T],
    *args: Any,
    batch: Callable[[list[tuple[Any, ...]]], list[T]] | None = None,
) -> T:
    """``fn(*args)``, inline if ``size`` (characters) is small, else off the event loop.

    ``fn`` may run in another process when it is a module-level function (and ``args``
    pickle); any other callable runs in the gateway's thread pool. ``batch``, if given,
    computes ``[fn(*a) for a in arg_tuples]`` in one go; it serves inline scans due
    together (if it raises, each scan runs alone, so an error stays with its request).
    """
    loop = asyncio.get_running_loop()
    if size <= INLINE_MAX_CHARS or env.executor is None:
        due = _DUE.get(loop)
        if due is None:
            # The first scan of this loop turn runs now: a lone request pays no extra trip
            # through the loop (on a busy loop each trip is as long as its other work).
            # Scans due later in the same turn are gathered and run at its end.
            _DUE[loop] = []
            loop.call_soon(_run_due, loop)
            return fn(*args)
        fut: asyncio.Future[T] = loop.create_future()
        due.append((fn, args, batch, fut))
        return await fut
    if _portable(fn):
        pool = _SCANNER.ready(fn, args)
        if pool is not None:
            try:
                return await loop.run_in_executor(pool, fn, *args)
            except BrokenProcessPool:
                _SCANNER.broken(pool)  # the scan runs again below, in a thread
    return await loop.run_in_executor(env.executor, _one_at_a_time, fn, args)


# Scans due on each running loop (an entry exists only until its callback runs).
_Due = tuple[Callable[..., Any], tuple[Any, ...], Callable[..., list[Any]] | None, Any]
_DUE: dict[asyncio.AbstractEventLoop, list[_Due]] = {}


def _run_due(loop: asyncio.AbstractEventLoop) -> None:
    """Run the inline scans that became due during the last turn of the loop after its
    first one, each detector's together.

    Same results and the same work as running each one inside its request's task, but
    back to back instead of between each request's parsing, routing, other policies and
    upstream call, so the detector's code and tables stay in the CPU caches from one scan
    to the next, and a detector with a ``batch`` form does its numpy work once for all.
    Under load (``bench/``, seed Pattern B chain, 32 connections) that took about a fifth
    off the detectors' CPU time per request.
    """
    due = [item for item in _DUE.pop(loop, []) if not item[3].done()]  # done: cancelled
    due.sort(key=lambda item: id(item[0]))  # stable: arrival order within a detector
    try:
        for _fn, group in itertools.groupby(due, key=lambda item: item[0]):
            _run_group(list(group))
    except BaseException:  # KeyboardInterrupt, SystemExit: nobody waits any more
        for *_, fut in due:
            fut.cancel()
        raise


def _run_group(group: list[_Due]) -> None:
    """One detector's scans: in one batch call when it has one, else one by one."""
    batch = group[0][2]
    if batch is not None and len(group) > 1:
        try:
            results = batch([args for _fn, args, _b, _fut in group])
            if len(results) != len(group):
                raise ValueError(f"{len(results)} results for {len(group)} scans")
        except Exception:
            results = None  # below, one by one: each request gets its own result or error
        if results is not None:
            for (*_, fut), result in zip(group, results, strict=True):
                fut.set_result(result)
            return
    for fn, args, _batch, fut in group:
        try:
            result = fn(*args)
        except Exception as exc:
            fut.set_exception(exc)
        else:
            fut.set_result(result)


def _portable(fn: Callable[..., Any]) -> bool:
    """Whether another process can import ``fn`` by name (no lambda, closure or method)."""
    return inspect.isfunction(fn) and fn.__qualname__ == fn.__name__ != "<lambda>"


_THREAD_SCAN = threading.Lock()


def _one_at_a_time(fn: Callable[..., T], args: tuple[Any, ...]) -> T:
    """A scan in the thread pool. Threads add no throughput to GIL-bound work, only
    contention, so scans run one at a time, with a short switch interval meanwhile."""
    with _THREAD_SCAN:
        previous = sys.getswitchinterval()
        sys.setswitchinterval(min(previous, THREAD_SWITCH_INTERVAL))
        try:
            return fn(*args)
        finally:
            sys.setswitchinterval(previous)


def _scan_process_init(parent: int) -> None:
    # A terminal's Ctrl-C reaches the whole process group; the gateway shuts this down.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # If the gateway dies without shutting it down (kill -9), exit too: this process holds
    # both ends of its task queue, so it would never see the queue close. (``parent`` comes
    # from the gateway: it may be gone already by the time this runs.)

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(0)

    threading.Thread(target=watch, name="kt-scan-parent-watch", daemon=True).start()
    # When the event loop and a scan want the same core, the loop goes first.
    with contextlib.suppress(AttributeError, OSError):
        os.nice(SCAN_PROCESS_NICE)


class _Scanner:
    """The scan process: started on first use, used once it has run each function once."""

    def __init__(self) -> None:
        self._lock = threading.RLock()  # a done callback may run inside submit()
        self._pool: ProcessPoolExecutor | None = None
        self._warm: dict[str, bool] = {}  # function -> its first call in the process is done
        self._pid = 0  # the process that owns the pool (a forked child must not use it)
        self._not_before = 0.0

    def enabled(self) -> bool:
        return os.environ.get(SCAN_PROCESS_ENV, "1").strip().lower() not in ("0", "off", "no")

    def ready(self, fn: Callable[..., Any], args: tuple[Any, ...]) -> Executor | None:
        """The pool if ``fn`` has run there already; else start that (once) and say None."""
        key = f"{fn.__module__}.{fn.__qualname__}"
        with self._lock:
            pool = self._pool if self._pid == os.getpid() else None
            if pool is not None and self._warm.get(key):
                return pool
            if pool is None:
                if not self.enabled() or time.monotonic() < self._not_before:
                    return None
                pool = self._start()
            if key not in self._warm:
                # The first call loads the detectors in the new process (about a second):
                # run it there for nothing, and this request's scan in a thread meanwhile.
                self._warm[key] = False
                try:
                    pool.submit(fn, *args).add_done_callback(
                        lambda f, key=key, pool=pool: self._warmed(pool, key, f)
                    )
                except (BrokenProcessPool, RuntimeError):
                    self.broken(pool)
            return None

    def _start(self) -> ProcessPoolExecutor:
        # spawn, not fork: the gateway has threads (audit writer, thread pool) to not copy.
        pool = ProcessPoolExecutor(
            max_workers=1,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_scan_process_init,
            initargs=(os.getpid(),),
        )
        self._pool, self._pid, self._warm = pool, os.getpid(), {}
        return pool

    def _warmed(self, pool: ProcessPoolExecutor, key: str, fut: Any) -> None:
        exc = fut.exception() if not fut.cancelled() else None
        if isinstance(exc, BrokenProcessPool):
            self.broken(pool)
            return
        with self._lock:
            if self._pool is pool:
                # A scan that raised still loaded the process; the caller sees the error.
                self._warm[key] = True

    def broken(self, pool: Executor) -> None:
        with self._lock:
            if self._pool is pool:
                log.warning(
                    "the scan process died; long scans run in threads for %.0f s", RESTART_AFTER_S
                )
                self._not_before = time.monotonic() + RESTART_AFTER_S
                self._stop(pool)

    def _stop(self, pool: Executor) -> None:
        if self._pool is pool:
            self._pool, self._warm = None, {}
        pool.shutdown(wait=False, cancel_futures=True)


_SCANNER = _Scanner()
