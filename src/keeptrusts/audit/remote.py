"""The audit sink of a worker process (``kt gateway run --workers N``) and its other end.

One audit log has one writer: the SQLite store is one hash chain per database, so worker
processes never open it. A worker's gateway gets a :class:`RemoteSink` instead, with the
interface the request path uses (``submit``, ``commit``, ``queue_depth``, ``overloaded``,
``health``), and the supervisor feeds what its workers send into the one real
:class:`~keeptrusts.audit.sink.AuditSink` through a :class:`SinkHost`.

The channel is a Unix stream socket per worker carrying length-prefixed orjson frames
(4-byte big-endian length, then a JSON object with a type ``t``):

worker → supervisor
    ``e``: events, ``i`` = ``[[cid, event], ...]`` in submission order; ``cid`` 0 for a
    batched event, else the id a strict ``commit`` waits on.
    ``f``: flush ``id``: acknowledge once everything sent before it is committed.
    ``ready``, ``reload``: worker control messages (handled by the supervisor).
supervisor → worker
    ``a``: acknowledgements, ``ok`` = ``[[cid, seq], ...]``, ``err`` = ``[[cid, reason]]``,
    sent once the event's batch is committed.
    ``s``: the real sink's status (``overloaded``, ``health``, ``stats``), a few times a
    second, which the worker reports as its own.
    Anything else (``reload``) goes to the worker's ``on_control`` callback.

The request path never blocks: ``submit`` is one ``deque.append``; a writer thread encodes
and sends frames (batched events at most ``flush_interval`` late, commits at once) and a
reader thread resolves commits. The supervisor reads each worker's frames in order and
queues them on its sink in that order, so per-worker order is the log's order.

Nothing acknowledged is lost: a strict ``commit`` returns only after the supervisor's
sink committed the event; ``close`` (a draining worker) sends everything, then waits
until the supervisor has committed it. If the supervisor is gone, events that cannot be
sent are spilled to ``audit-spill-*.jsonl`` in the state dir (the next sink that starts
there re-imports them) and waiting commits fail with :class:`AuditUnavailable` (503).
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import contextlib
import itertools
import logging
import os
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from keeptrusts.audit.sink import AuditUnavailable

if TYPE_CHECKING:
    from keeptrusts.audit.sink import AuditSink

log = logging.getLogger("keeptrusts.audit")

HEADER_BYTES = 4
MAX_FRAME = 64 * 1024 * 1024
_DUMPS_OPTS = orjson.OPT_NON_STR_KEYS


def _default(obj: Any) -> Any:
    # As the store's canonical JSON does, so an event hashes the same after the trip.
    if isinstance(obj, (set, frozenset, tuple)):
        return list(obj)
    if isinstance(obj, bytes):
        return obj.decode("utf-8", "replace")
    return str(obj)


def encode(msg: Mapping[str, Any]) -> bytes:
    """One frame: the length, then the message as JSON."""
    body = orjson.dumps(msg, option=_DUMPS_OPTS, default=_default)
    if len(body) > MAX_FRAME:
        raise ValueError(f"frame of {len(body)} bytes exceeds {MAX_FRAME}")
    return len(body).to_bytes(HEADER_BYTES, "big") + body


def _recv_exactly(sock: socket.socket, n: int) -> bytes | None:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(min(n - len(buf), 1 << 20))
        if not chunk:
            return None
        buf += chunk
    return bytes(buf)


def recv_frame(sock: socket.socket) -> dict[str, Any] | None:
    """Read one frame from a blocking socket; None at end of stream."""
    header = _recv_exactly(sock, HEADER_BYTES)
    if header is None:
        return None
    n = int.from_bytes(header, "big")
    if n > MAX_FRAME:
        raise OSError(f"audit channel: frame of {n} bytes exceeds {MAX_FRAME}")
    body = _recv_exactly(sock, n)
    if body is None:
        return None
    msg = orjson.loads(body)
    if not isinstance(msg, dict):
        raise OSError("audit channel: a frame is not a JSON object")
    return msg


class _Control(dict):
    """A control message queued with the events (kept in order with them)."""


# Queue items: (cid, event) — cid None: batched event; cid int: a strict commit; or
# (cid, _Control) — a control frame (cid: a flush waiting on its acknowledgement).
_Item = tuple[int | None, Any]


class RemoteSink:
    """A worker's audit sink: events go to the supervisor, which writes the one log."""

    def __init__(
        self,
        sock: socket.socket,
        *,
        state_dir: Path | str,
        database_url: str | None = None,
        flush_interval: float = 0.02,
        max_batch: int = 512,
        max_queue: int = 100_000,
        close_timeout: float = 10.0,
        on_control: Callable[[dict[str, Any]], None] | None = None,
        on_lost: Callable[[str], None] | None = None,
    ) -> None:
        sock.setblocking(True)
        self._sock = sock
        self.state_dir = Path(state_dir)
        self.database_url = database_url
        self.strict = False
        self.flush_interval = flush_interval
        self.max_batch = max_batch
        self.max_queue = max_queue
        self.close_timeout = close_timeout
        self._on_control = on_control
        self._on_lost = on_lost
        self._q: deque[_Item] = deque()
        self._wake = threading.Event()
        self._ids = itertools.count(1)
        self._waiters: dict[int, concurrent.futures.Future] = {}
        self._status: dict[str, Any] = {}
        self._lost: str | None = None
        self._lost_lock = threading.Lock()
        self._closing = False
        self._closed = False
        self._close_lock = threading.Lock()
        self._store: Any = None
        self._store_lock = threading.Lock()
        self._last_overflow_log = 0.0
        self.sent = 0
        self.spilled = 0
        self.overflows = 0
        self._writer = threading.Thread(
            target=self._write_loop, name="kt-audit-remote", daemon=True
        )
        self._reader = threading.Thread(target=self._read_loop, name="kt-audit-acks", daemon=True)
        self._writer.start()
        self._reader.start()
        atexit.register(self.close)

    # -- hot path --------------------------------------------------------------------------

    def submit(self, event: Mapping[str, Any]) -> None:
        """Queue ``event`` for the supervisor. O(1), never blocks, never drops."""
        q = self._q
        q.append((None, event))
        if len(q) >= self.max_batch:
            if not self._wake.is_set():
                self._wake.set()
            if len(q) >= self.max_queue:
                self._overflow()
        if self._closed:
            self._drain_late()

    async def commit(self, event: Mapping[str, Any], *, timeout: float | None = None) -> int:
        """Queue ``event`` and return its ``seq`` once the supervisor committed its batch.

        With ``timeout``, raise :class:`AuditUnavailable` if that takes longer (the event
        is still sent and written). Cancelling the caller does not unqueue it.
        """
        fut = self._queue_waiting(event)
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

    def _queue_waiting(self, item: Any) -> concurrent.futures.Future:
        cid = next(self._ids)
        fut: concurrent.futures.Future = concurrent.futures.Future()
        self._waiters[cid] = fut
        self._q.append((cid, item))
        self._wake.set()
        if len(self._q) >= self.max_queue:
            self._overflow()
        if self._closed:
            self._drain_late()
        return fut

    def send_control(self, msg: Mapping[str, Any]) -> None:
        """Send a control message to the supervisor, in order with the events."""
        self._q.append((None, _Control(msg)))
        self._wake.set()

    # -- state -----------------------------------------------------------------------------

    @property
    def queue_depth(self) -> int:
        """Events not yet sent here, plus those the supervisor's sink has not written."""
        return len(self._q) + int(self._status.get("queue_depth") or 0)

    @property
    def overloaded(self) -> bool:
        """True while this worker or the supervisor's sink has ``max_queue`` events waiting."""
        return len(self._q) >= self.max_queue or bool(self._status.get("overloaded"))

    @property
    def degraded(self) -> bool:
        health = self._status.get("health") or {}
        return self._lost is not None or health.get("status") == "degraded"

    @property
    def last_error(self) -> str | None:
        if self._lost is not None:
            return self._lost
        return (self._status.get("health") or {}).get("last_error")

    def health(self) -> dict[str, Any]:
        """The supervisor's sink health as last reported, with this worker's queue added."""
        health = dict(self._status.get("health") or {"status": "ok", "last_error": None})
        health["queue_depth"] = self.queue_depth
        health["worker_queue_depth"] = len(self._q)
        if self._lost is not None:
            health["status"] = "degraded"
            health["last_error"] = self._lost
        return health

    def stats(self) -> dict[str, Any]:
        stats = dict(self._status.get("stats") or {"mode": "batched"})
        stats["queue_depth"] = self.queue_depth
        stats["worker_sent"] = self.sent
        if self._lost is not None:
            stats["last_error"] = self._lost
        return stats

    @property
    def store(self) -> Any:
        """The audit log, read-only (admin API and console reads); the supervisor writes."""
        with self._store_lock:
            if self._store is None:
                from keeptrusts.audit.store import open_store

                self._store = open_store(
                    self.state_dir, readonly=True, database_url=self.database_url
                )
            return self._store

    def _overflow(self) -> None:
        self.overflows += 1
        now = time.monotonic()
        if now - self._last_overflow_log >= 5.0:
            self._last_overflow_log = now
            log.error(
                "AUDIT QUEUE FULL in worker %d: %d events not yet sent to the supervisor "
                "(max_queue %d); nothing is dropped, refusing new requests until it drains",
                os.getpid(),
                len(self._q),
                self.max_queue,
            )

    # -- flushing and shutdown -------------------------------------------------------------

    def flush(self, timeout: float | None = None) -> int:
        """Block until everything queued so far is committed by the supervisor."""
        fut = self._queue_waiting(_Control(t="f"))
        return fut.result(timeout)

    async def aflush(self) -> int:
        return await asyncio.wrap_future(self._queue_waiting(_Control(t="f")))

    def close(self) -> None:
        """Send everything, wait until the supervisor committed it, stop. Idempotent."""
        with self._close_lock:
            if self._closed:
                return
            if self._lost is None:
                try:
                    self.flush(self.close_timeout)
                except (concurrent.futures.TimeoutError, AuditUnavailable) as exc:
                    log.error(
                        "worker %d: the supervisor did not confirm the last audit events "
                        "within %.0fs (%s); they were sent and are written by it",
                        os.getpid(),
                        self.close_timeout,
                        exc or "timeout",
                    )
            self._closing = True
            self._wake.set()
            self._writer.join(self.close_timeout)
            self._closed = True
            self._drain_late()
            with contextlib.suppress(OSError):
                self._sock.shutdown(socket.SHUT_RDWR)
            self._reader.join(1.0)
            self._sock.close()
            self._fail_waiters("the audit sink is closed")
            atexit.unregister(self.close)
            if self._store is not None:
                with contextlib.suppress(Exception):
                    self._store.close()

    async def aclose(self) -> None:
        await asyncio.to_thread(self.close)

    def _drain_late(self) -> None:
        """Queued after the writer stopped (a shutdown race): spill to the state dir."""
        items: list[_Item] = []
        while True:
            try:
                items.append(self._q.popleft())
            except IndexError:
                break
        if items:
            self._spill(items, "queued after the audit sink closed")

    # -- writer thread ---------------------------------------------------------------------

    def _write_loop(self) -> None:
        q = self._q
        while True:
            if not q:
                if self._closing:
                    return
                self._wake.wait(self.flush_interval)
                self._wake.clear()
                continue
            items: list[_Item] = []
            while True:
                try:
                    items.append(q.popleft())
                except IndexError:
                    break
            if self._lost is not None:
                self._spill(items, self._lost)
                continue
            try:
                data, n = self._frames(items)
                self._sock.sendall(data)
            except OSError as exc:
                self._spill(items, f"cannot send to the supervisor: {exc}")
                self._channel_lost(f"the audit supervisor is unreachable ({exc})")
                continue
            except Exception:  # a bug here must not stop auditing
                log.critical("audit remote writer failed; spilling the batch", exc_info=True)
                self._spill(items, "audit remote writer failure")
                continue
            self.sent += n

    def _frames(self, items: list[_Item]) -> tuple[bytes, int]:
        """Encode ``items`` in order: runs of events as ``e`` frames, controls on their own."""
        out: list[bytes] = []
        run: list[list[Any]] = []
        n = 0

        def flush_run() -> None:
            if run:
                out.append(self._events_frame(run))
                run.clear()

        for cid, item in items:
            if isinstance(item, _Control):
                flush_run()
                msg = dict(item)
                if cid is not None:
                    msg["id"] = cid
                out.append(encode(msg))
                continue
            run.append([cid or 0, item])
            n += 1
            if len(run) >= self.max_batch:
                flush_run()
        flush_run()
        return b"".join(out), n

    def _events_frame(self, run: list[list[Any]]) -> bytes:
        try:
            return encode({"t": "e", "i": run})
        except (TypeError, ValueError):
            pass
        # One event cannot be encoded (or the frame is too large): encode one by one and
        # replace what cannot go by a stand-in record, so the rest still reaches the log.
        parts = []
        for cid, event in run:
            try:
                parts.append(encode({"t": "e", "i": [[cid, event]]}))
            except (TypeError, ValueError) as exc:
                log.critical("audit event cannot be encoded, replaced by a stub: %r", event)
                get = event.get if isinstance(event, Mapping) else {}.get
                stub = {
                    "id": str(get("id")),
                    "timestamp": get("timestamp") if isinstance(get("timestamp"), str) else None,
                    "event_type": "audit_encoding_error",
                    "verdict": None,
                    "reason_code": "audit_encoding_error",
                    "error": repr(exc)[:500],
                }
                parts.append(encode({"t": "e", "i": [[cid, stub]]}))
        return b"".join(parts)

    # -- reader thread ---------------------------------------------------------------------

    def _read_loop(self) -> None:
        reason = "the audit supervisor closed the channel"
        try:
            while True:
                msg = recv_frame(self._sock)
                if msg is None:
                    break
                kind = msg.get("t")
                if kind == "a":
                    self._acknowledge(msg)
                elif kind == "s":
                    self._status = msg
                elif self._on_control is not None:
                    self._on_control(msg)
        except (OSError, orjson.JSONDecodeError) as exc:
            reason = f"the audit channel failed ({exc})"
        except Exception:
            log.critical("audit remote reader failed", exc_info=True)
            reason = "the audit channel reader failed"
        if not self._closing:
            self._channel_lost(reason)

    def _acknowledge(self, msg: Mapping[str, Any]) -> None:
        pop = self._waiters.pop
        for cid, seq in msg.get("ok") or ():
            fut = pop(cid, None)
            if fut is not None:
                with contextlib.suppress(concurrent.futures.InvalidStateError):
                    fut.set_result(seq)
        for cid, reason in msg.get("err") or ():
            fut = pop(cid, None)
            if fut is not None:
                with contextlib.suppress(concurrent.futures.InvalidStateError):
                    fut.set_exception(AuditUnavailable(str(reason)))

    # -- losing the supervisor -------------------------------------------------------------

    def _channel_lost(self, reason: str) -> None:
        with self._lost_lock:
            if self._lost is not None:
                return
            self._lost = reason
        log.critical("worker %d: %s; audit events go to spill files", os.getpid(), reason)
        self._wake.set()
        self._fail_waiters(reason)
        if self._on_lost is not None:
            self._on_lost(reason)

    def _fail_waiters(self, reason: str) -> None:
        while self._waiters:
            try:
                _, fut = self._waiters.popitem()
            except KeyError:
                break
            with contextlib.suppress(concurrent.futures.InvalidStateError):
                fut.set_exception(AuditUnavailable(reason))

    def _spill(self, items: list[_Item], reason: str) -> None:
        """Write events that cannot reach the supervisor to a spill file (re-imported by
        the next sink that starts on this state dir); fail their waiters."""
        events = [item for _, item in items if not isinstance(item, _Control)]
        for cid, _ in items:
            fut = self._waiters.pop(cid, None) if cid is not None else None
            if fut is not None:
                with contextlib.suppress(concurrent.futures.InvalidStateError):
                    fut.set_exception(AuditUnavailable(reason))
        if not events:
            return
        data = b"".join(orjson.dumps(e, option=_DUMPS_OPTS, default=_default) + b"\n"
                        for e in events)  # fmt: skip
        path = self.state_dir / f"audit-spill-{time.time_ns():020d}-{os.getpid()}.jsonl"
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                os.write(fd, data)
                os.fsync(fd)
            finally:
                os.close(fd)
            self.spilled += len(events)
            log.critical("spilled %d audit event(s) to %s (%s)", len(events), path, reason)
            return
        except OSError as exc:
            log.critical("cannot spill audit events to %s: %s", path, exc)
        for line in data.splitlines():
            log.critical("AUDIT-SPILL %s", line.decode())


class SinkHost:
    """The supervisor's end of the worker channels: one real sink fed by every worker."""

    def __init__(self, sink: AuditSink) -> None:
        self.sink = sink
        self.received = 0

    def status_frame(self) -> bytes:
        sink = self.sink
        return encode(
            {
                "t": "s",
                "overloaded": sink.overloaded,
                "queue_depth": sink.queue_depth,
                "health": sink.health(),
                "stats": sink.stats(),
            }
        )

    async def serve(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        on_control: Callable[[dict[str, Any]], None],
        *,
        name: str = "worker",
    ) -> None:
        """Read one worker's frames until it closes the channel, queueing its events on the
        sink in order; acknowledge commits and flushes once committed."""
        loop = asyncio.get_running_loop()
        sink = self.sink

        def send(frame: bytes) -> None:
            if not writer.is_closing():
                writer.write(frame)

        def acknowledge(waiting: list[tuple[int, concurrent.futures.Future]]) -> None:
            ok, err = [], []
            for cid, fut in waiting:
                exc = fut.exception()
                if exc is None:
                    ok.append([cid, fut.result()])
                else:
                    err.append([cid, str(exc) or repr(exc)])
            loop.call_soon_threadsafe(send, encode({"t": "a", "ok": ok, "err": err}))

        def when_committed(waiting: list[tuple[int, concurrent.futures.Future]]) -> None:
            # The sink resolves futures in queue order, so the last one being done means
            # all of them are; check anyway and wait on any straggler.
            pending = [f for _, f in waiting if not f.done()]
            if pending:
                pending[-1].add_done_callback(lambda _f: when_committed(waiting))
                return
            acknowledge(waiting)

        while True:
            try:
                header = await reader.readexactly(HEADER_BYTES)
                n = int.from_bytes(header, "big")
                if n > MAX_FRAME:
                    log.error("%s sent a frame of %d bytes; closing its channel", name, n)
                    break
                body = await reader.readexactly(n)
            except asyncio.IncompleteReadError as exc:
                if exc.partial:
                    log.error(
                        "%s closed its channel in the middle of a frame (%d bytes discarded)",
                        name,
                        len(exc.partial),
                    )
                break
            except (ConnectionError, OSError) as exc:
                log.error("%s channel failed: %s", name, exc)
                break
            try:
                msg = orjson.loads(body)
            except orjson.JSONDecodeError as exc:
                log.error("%s sent an unreadable frame (%s); closing its channel", name, exc)
                break
            kind = msg.get("t") if isinstance(msg, dict) else None
            if kind == "e":
                waiting: list[tuple[int, concurrent.futures.Future]] = []
                for cid, event in msg.get("i") or ():
                    if cid:
                        waiting.append((cid, sink.submit_future(event)))
                    else:
                        sink.submit(event)
                    self.received += 1
                if waiting:
                    waiting[-1][1].add_done_callback(lambda _f, w=waiting: when_committed(w))
            elif kind == "f":
                flush = [(msg.get("id"), sink.submit_future(None))]
                flush[0][1].add_done_callback(lambda _f, w=flush: when_committed(w))
            elif kind is not None:
                on_control(msg)
