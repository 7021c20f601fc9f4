"""The audit sink: takes events off the request path and writes them in batches.

``submit(event)`` is what the request path calls: one ``deque.append``, no lock, no I/O.
A writer thread drains the queue every ``flush_interval`` (or as soon as ``max_batch``
events wait), chains the batch in submission order and commits it in one transaction.

Modes:

* **batched** (default): the response does not wait for the audit write. A ``kill -9`` (or
  power loss) loses at most the events submitted since the last committed batch: about
  ``flush_interval`` (50 ms) of traffic plus the batch being written, more if the writer
  was behind (``queue_depth``). A clean shutdown (SIGINT/SIGTERM → ``close``) loses nothing.
* **strict**: ``await commit(event)`` returns only once the event's batch is committed
  (SQLite WAL, ``synchronous=FULL``: on disk, fsync'd). Concurrent commits share one
  transaction (group commit). Send the response after ``commit`` returns and no client
  ever sees a response whose audit record could still be lost.

Overload (``max_queue`` events waiting, i.e. the disk is failing or far too slow): the sink
never drops an event and never blocks the event loop (blocking would stall every
connection, health checks included, without making the disk faster). ``submit`` still
queues the event, counts an ``overflow`` and logs an ERROR (at most every 5 s), and
``overloaded`` turns true: the request handler should then refuse new requests with 503
until the writer catches up — backpressure on callers, not silent loss.

Write failures (disk full, I/O error, lock timeout): the batch stays in memory, an ERROR is
logged on every attempt, and the writer retries with backoff (50 ms → 5 s) in order. An
event that fails on its own while a trivial event succeeds is replaced by an
``audit_write_error`` record (and logged in full) so it cannot block the log forever.

``close()`` flushes everything and joins the writer. If the store still refuses writes after
``close_timeout``, the unwritten events are spilled to ``audit-spill-*.jsonl`` in the state
dir (re-imported, in order, by the next sink that starts there) or, if even that fails,
logged as ``AUDIT-SPILL`` lines on the error log.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import contextlib
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import orjson

from keeptrusts.audit.query import iso
from keeptrusts.audit.store import AuditStore, open_store

log = logging.getLogger("keeptrusts.audit")

SPILL_GLOB = "audit-spill-*.jsonl"
_RETRY_MIN, _RETRY_MAX = 0.05, 5.0
_ISOLATE_AFTER = 3  # consecutive failures of a batch before looking for a poison event
HEAD_SYNC_INTERVAL = 0.2  # seconds: how far the head file may lag the store under load

_Item = tuple[Mapping[str, Any] | None, concurrent.futures.Future | None]


class AuditUnavailable(Exception):
    """A strict-mode commit did not complete in time; the event is still queued."""


class AuditSink:
    def __init__(
        self,
        store: AuditStore,
        *,
        strict: bool = False,
        flush_interval: float = 0.05,
        max_batch: int = 512,
        max_queue: int = 100_000,
        close_timeout: float = 30.0,
        spill_dir: Path | str | None = None,
        close_store: bool = True,
    ) -> None:
        if max_batch < 1 or max_queue < max_batch or flush_interval <= 0:
            raise ValueError("need max_batch >= 1, max_queue >= max_batch, flush_interval > 0")
        self.store = store
        self.strict = strict
        self.flush_interval = flush_interval
        self.max_batch = max_batch
        self.max_queue = max_queue
        self.close_timeout = close_timeout
        self.spill_dir = Path(spill_dir) if spill_dir else getattr(store, "dir", None)
        self._close_store = close_store
        self._q: deque[_Item] = deque()
        self._pending: list[_Item] = []
        self._wake = threading.Event()
        self._closing = False
        self._abandon = False
        self._closed = False
        self._close_lock = threading.Lock()
        self._late_lock = threading.Lock()
        # Counters (read them; the writer thread updates them).
        self.written = 0
        self.batches = 0
        self.errors = 0
        self.overflows = 0
        self.purges = 0
        self.last_error: str | None = None
        self._failing = False
        self._last_overflow_log = 0.0
        self._retention_days: float | None = None
        self._retention_interval = 3600.0
        self._next_purge = 0.0
        self._last_head_sync = 0.0
        self._recover_spills()
        self._thread = threading.Thread(target=self._run, name="kt-audit-writer", daemon=True)
        self._thread.start()
        # Daemon thread + atexit: the interpreter never hangs on the writer, and a forgotten
        # close() still flushes at a normal exit.
        atexit.register(self.close)

    # -- hot path --------------------------------------------------------------------------

    def submit(self, event: Mapping[str, Any]) -> None:
        """Queue ``event`` for writing. O(1), never blocks, never drops."""
        q = self._q
        q.append((event, None))
        if len(q) >= self.max_batch:
            if not self._wake.is_set():
                self._wake.set()
            if len(q) >= self.max_queue:
                self._overflow()
        if self._closed:
            self._drain_late()

    async def commit(self, event: Mapping[str, Any], *, timeout: float | None = None) -> int:
        """Queue ``event`` and return its ``seq`` once its batch is committed.

        With ``timeout``, raise :class:`AuditUnavailable` if that takes longer (the event
        stays queued and is still written). Cancelling the caller does not unqueue it.
        """
        fut = self.submit_future(event)
        waiter = asyncio.shield(asyncio.wrap_future(fut))
        if timeout is None:
            return await waiter
        try:
            return await asyncio.wait_for(waiter, timeout)
        except TimeoutError:
            raise AuditUnavailable(
                f"audit record not committed within {timeout:g}s "
                f"({self.queue_depth} events queued; last error: {self.last_error})"
            ) from None

    def submit_future(self, event: Mapping[str, Any] | None) -> concurrent.futures.Future:
        """Queue ``event`` now and return a future for its ``seq``, set once its batch is
        committed; ``None`` queues a flush marker (its future gets the batch's last seq).

        Synchronous, so a caller outside the event loop (the ``--workers`` supervisor
        feeding events from worker processes) keeps its submission order.
        """
        fut: concurrent.futures.Future = concurrent.futures.Future()
        self._q.append((event, fut))
        self._wake.set()
        if len(self._q) >= self.max_queue:
            self._overflow()
        if self._closed:
            self._drain_late()
        return fut

    @property
    def queue_depth(self) -> int:
        return len(self._q) + len(self._pending)

    @property
    def degraded(self) -> bool:
        """True while events do not reach the store as they should: its writes are failing
        (events held in memory), or it is spooling them locally (database unreachable)."""
        return bool(self._failing or getattr(self.store, "degraded", False))

    def health(self) -> dict[str, Any]:
        """For ``/health``: ``status`` ok or degraded, and the store's own report."""
        store_health = getattr(self.store, "health", None)
        return {
            "status": "degraded" if self.degraded else "ok",
            "queue_depth": self.queue_depth,
            "last_error": self.last_error if self._failing else None,
            **(store_health() if callable(store_health) else {}),
        }

    @property
    def overloaded(self) -> bool:
        """True while ``max_queue`` events wait: refuse new requests (503) until false."""
        return len(self._q) >= self.max_queue

    def stats(self) -> dict[str, Any]:
        return {
            "mode": "strict" if self.strict else "batched",
            "queue_depth": self.queue_depth,
            "written": self.written,
            "batches": self.batches,
            "errors": self.errors,
            "overflows": self.overflows,
            "purges": self.purges,
            "last_error": self.last_error,
            "head_seq": self.store.head().seq,
        }

    def _overflow(self) -> None:
        self.overflows += 1
        now = time.monotonic()
        if now - self._last_overflow_log >= 5.0:
            self._last_overflow_log = now
            log.error(
                "AUDIT QUEUE FULL: %d events waiting (max_queue %d, last write error: %s); "
                "nothing is dropped but memory grows, refuse new requests until it drains",
                len(self._q),
                self.max_queue,
                self.last_error,
            )

    # -- flushing and shutdown -------------------------------------------------------------

    def flush(self, timeout: float | None = None) -> int:
        """Block until everything submitted so far is committed; return the head ``seq``."""
        fut: concurrent.futures.Future = concurrent.futures.Future()
        self._q.append((None, fut))
        self._wake.set()
        if self._closed:
            self._drain_late()
        return fut.result(timeout)

    async def aflush(self) -> int:
        fut: concurrent.futures.Future = concurrent.futures.Future()
        self._q.append((None, fut))
        self._wake.set()
        if self._closed:
            self._drain_late()
        return await asyncio.wrap_future(fut)

    def close(self) -> None:
        """Flush everything, stop the writer and close the store. Idempotent."""
        with self._close_lock:
            if self._closed:
                return
            self._closing = True
            self._wake.set()
            self._thread.join(self.close_timeout)
            if self._thread.is_alive():
                log.critical(
                    "audit writer could not flush %d event(s) within %.0fs (last error: %s)",
                    self.queue_depth,
                    self.close_timeout,
                    self.last_error,
                )
                self._abandon = True
                self._wake.set()
                self._thread.join(15.0)
                self._spill(self._pending + list(self._q))
                self._pending = []
                self._q.clear()
            self._closed = True
            self._drain_late()  # anything queued while the writer was stopping
            atexit.unregister(self.close)
            if self._close_store:
                self.store.close()

    async def aclose(self) -> None:
        await asyncio.to_thread(self.close)

    def _drain_late(self) -> None:
        """Write what was queued after the writer stopped, here and now (shutdown race)."""
        with self._late_lock:
            items: list[_Item] = []
            while True:
                try:
                    items.append(self._q.popleft())
                except IndexError:
                    break
            if not items:
                return
            events = [e for e, _ in items if e is not None]
            if events:
                log.warning("%d audit event(s) submitted after close; writing now", len(events))
            try:
                head = self.store.append(events)
            except Exception as exc:
                log.critical("audit event(s) after close could not be written: %r", exc)
                self._spill(items)
                for _, fut in items:
                    if fut is not None and not fut.done():
                        fut.set_exception(AuditUnavailable(f"audit store closed: {exc!r}"))
                return
            self._finish(items, head.seq - len(events))

    # -- retention -------------------------------------------------------------------------

    def start_retention(self, days: float | None, *, interval: float = 3600.0) -> None:
        """Purge events older than ``days`` now and then every ``interval`` seconds.

        The purge runs on the writer thread between batches, so it is ordered with the
        writes; ``days`` of None or 0 turns retention off.
        """
        if days is not None and days < 0:
            raise ValueError("retention days must be positive")
        self._retention_days = days or None
        self._retention_interval = interval
        self._next_purge = 0.0
        self._wake.set()

    def _maybe_purge(self) -> None:
        days = self._retention_days
        if not days or time.monotonic() < self._next_purge:
            return
        try:
            result = self.store.purge(days)
        except Exception as exc:
            self.errors += 1
            self.last_error = f"retention purge: {exc!r}"
            log.error("audit retention purge failed (retrying in 60s): %r", exc)
            self._next_purge = time.monotonic() + min(60.0, self._retention_interval)
            return
        if result is not None:
            self.purges += 1
        self._next_purge = time.monotonic() + self._retention_interval

    # -- writer thread ---------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            try:
                self._loop()
                return
            except BaseException:  # a bug here must not stop auditing
                log.critical("audit writer crashed; restarting", exc_info=True)
                time.sleep(0.1)

    def _loop(self) -> None:
        q = self._q
        failures = 0
        while True:
            if self._abandon:
                return
            if not self._pending:
                self._maybe_purge()
                if not q:
                    if self._closing:
                        self._sync_head()
                        return
                    woke = self._wake.wait(self.flush_interval)
                    self._wake.clear()
                    if not woke and not q:
                        self._sync_head()  # idle: bring the head file up to date
                    continue
                take = min(len(q), self.max_batch)
                self._pending = [q.popleft() for _ in range(take)]
            events = [e for e, _ in self._pending if e is not None]
            try:
                head = self.store.append(events, sync_head=False) if events else self.store.head()
            except Exception as exc:
                failures += 1
                self.errors += 1
                self.last_error = repr(exc)
                self._failing = True
                delay = min(_RETRY_MAX, _RETRY_MIN * 2 ** (failures - 1))
                log.error(
                    "AUDIT WRITE FAILED (attempt %d): %r; %d event(s) held in memory, "
                    "retrying in %.2fs",
                    failures,
                    exc,
                    self.queue_depth,
                    delay,
                )
                if failures >= _ISOLATE_AFTER and len(events) > 0 and self._isolate():
                    failures = 0
                    continue
                self._wake.wait(delay)
                self._wake.clear()
                continue
            if failures:
                log.warning("audit writes recovered after %d failed attempt(s)", failures)
                failures = 0
            self._failing = False
            done, self._pending = self._pending, []
            self._finish(done, head.seq - len(events))
            if time.monotonic() - self._last_head_sync >= HEAD_SYNC_INTERVAL:
                self._sync_head()

    def _sync_head(self) -> None:
        """Persist the secondary head record (the head file: one more fsync).

        Done when the writer goes idle, and at least every ``HEAD_SYNC_INTERVAL`` under
        load, never between a commit and the release of its strict-mode waiters. The head
        *record* inside the store is always updated in the same transaction as the events.
        """
        self._last_head_sync = time.monotonic()
        try:
            self.store.sync_head()
        except Exception as exc:
            log.error("cannot persist the audit head record: %r", exc)

    def _finish(self, items: list[_Item], before: int) -> None:
        """Count a committed batch; resolve its futures (events: their seq, markers: the
        batch's last seq)."""
        seq = before
        futures: list[tuple[concurrent.futures.Future, int | None]] = []
        for event, fut in items:
            if event is not None:
                seq += 1
            if fut is not None:
                futures.append((fut, seq if event is not None else None))
        self.written += seq - before
        self.batches += 1
        for fut, own in futures:
            with contextlib.suppress(concurrent.futures.InvalidStateError):
                fut.set_result(seq if own is None else own)

    def _isolate(self) -> bool:
        """Write the pending batch one event at a time to find an event that cannot be stored.

        Returns True if progress was made. An event that fails while a stand-in record for
        it succeeds is replaced by that stand-in (and logged in full); if the stand-in fails
        too the store itself is failing and the batch waits for the next retry.
        """
        progressed = False
        while self._pending:
            item = self._pending[0]
            event = item[0]
            if event is not None:
                try:
                    head = self.store.append([event])
                except Exception as exc:
                    get = event.get if isinstance(event, Mapping) else {}.get
                    stub = {
                        "id": str(get("id")),
                        "timestamp": get("timestamp")
                        if isinstance(get("timestamp"), str)
                        else iso(time.time()),
                        "event_type": "audit_write_error",
                        "verdict": None,
                        "reason_code": "audit_write_error",
                        "error": repr(exc)[:500],
                    }
                    try:
                        head = self.store.append([stub])
                    except Exception:
                        return progressed
                    log.critical("audit event could not be stored, replaced by a stub: %r", event)
            else:
                head = self.store.head()
            self._pending.pop(0)
            self._finish([item], head.seq - (event is not None))
            progressed = True
        return progressed

    # -- spill files -----------------------------------------------------------------------

    def _spill(self, items: list[_Item]) -> None:
        events = [e for e, _ in items if e is not None]
        if not events:
            return
        data = b"".join(orjson.dumps(e, default=str) + b"\n" for e in events)
        if self.spill_dir is not None:
            name = f"audit-spill-{time.time_ns():020d}-{os.getpid()}.jsonl"
            path = Path(self.spill_dir) / name
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                try:
                    os.write(fd, data)
                    os.fsync(fd)
                finally:
                    os.close(fd)
                log.critical("spilled %d unwritten audit event(s) to %s", len(events), path)
                return
            except OSError as exc:
                log.critical("cannot spill audit events to %s: %s", path, exc)
        for line in data.splitlines():
            log.critical("AUDIT-SPILL %s", line.decode())

    def _recover_spills(self) -> None:
        if self.spill_dir is None or not Path(self.spill_dir).is_dir():
            return
        for path in sorted(Path(self.spill_dir).glob(SPILL_GLOB)):
            try:
                lines = path.read_bytes().splitlines()
            except OSError as exc:
                log.error("cannot read audit spill file %s: %s", path, exc)
                continue
            n = 0
            for line in lines:
                if not line.strip():
                    continue
                try:
                    event = orjson.loads(line)
                except orjson.JSONDecodeError:
                    event = {
                        "event_type": "audit_spill_unreadable",
                        "raw": line.decode(errors="replace"),
                    }
                if not isinstance(event, dict):
                    event = {"event_type": "audit_spill_unreadable", "raw": repr(event)}
                event["recovered_from"] = path.name
                self._q.append((event, None))
                n += 1
            fut: concurrent.futures.Future = concurrent.futures.Future()
            fut.add_done_callback(lambda _f, p=path: p.unlink(missing_ok=True))
            self._q.append((None, fut))
            log.warning("re-importing %d audit event(s) from %s", n, path)


def open_sink(
    state_dir: Path | str,
    *,
    strict: bool = False,
    retention_days: float | None = None,
    database_url: str | None = None,
    instance_id: str | None = None,
    **options: Any,
) -> AuditSink:
    """The gateway's audit sink, retention started if asked: on ``<state_dir>/audit.db``,
    or on PostgreSQL when ``database_url`` is given (spooling to the state dir during an
    outage)."""
    store = open_store(state_dir, database_url=database_url, instance_id=instance_id)
    sink = AuditSink(store, strict=strict, **options)
    if retention_days:
        sink.start_retention(retention_days)
    return sink
