"""The sink: non-blocking submit, ordered batches, strict commits, failures, shutdown."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from keeptrusts.audit.sink import AuditSink, AuditUnavailable
from keeptrusts.audit.store import SQLiteAuditStore

from .helpers import make_event


class FlakyStore:
    """Wraps a real store; ``append`` fails while ``fail`` says so."""

    def __init__(self, inner: SQLiteAuditStore) -> None:
        self.inner = inner
        self.dir = inner.dir
        self.failures_left = 0
        self.always_fail = False
        self.poison: set[str] = set()
        self.gate = threading.Event()
        self.gate.set()

    def append(self, events: Sequence[Mapping[str, Any]], **kw: Any):  # type: ignore[no-untyped-def]
        self.gate.wait()
        if self.always_fail:
            raise OSError(28, "No space left on device")
        if self.failures_left > 0:
            self.failures_left -= 1
            raise OSError(28, "No space left on device")
        if any(e.get("id") in self.poison and e.get("event_type") == "decision" for e in events):
            raise ValueError("cannot store this event")
        return self.inner.append(events, **kw)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def _ids(state_dir: Path) -> list[str]:
    db = sqlite3.connect(state_dir / "audit.db")
    try:
        return [r[0] for r in db.execute("SELECT id FROM events ORDER BY seq")]
    finally:
        db.close()


async def test_concurrent_submits_lose_nothing_and_keep_submission_order(
    state_dir: Path,
) -> None:
    sink = AuditSink(SQLiteAuditStore(state_dir), flush_interval=0.005, max_batch=64)
    order: list[str] = []

    async def client(k: int) -> None:
        for i in range(40):
            ev = make_event(k * 1000 + i)
            order.append(ev["id"])
            sink.submit(ev)
            if i % 3 == 0:
                await asyncio.sleep(0)
            if i % 13 == 0:
                await asyncio.sleep(0.002)

    await asyncio.gather(*(client(k) for k in range(50)))
    await sink.aflush()
    assert sink.written == 2000 and sink.errors == 0
    assert 1 < sink.batches < 2000  # batched, not one write per event
    await sink.aclose()
    assert _ids(state_dir) == order
    assert SQLiteAuditStore(state_dir, readonly=True).verify().ok


def test_submit_is_cheap_and_close_flushes_everything(state_dir: Path) -> None:
    # A long flush interval: only close() (or full batches) gets the events written.
    sink = AuditSink(SQLiteAuditStore(state_dir), flush_interval=30.0, max_batch=10_000)
    events = [make_event(i) for i in range(1000)]
    start = time.perf_counter()
    for ev in events:
        sink.submit(ev)
    per_event = (time.perf_counter() - start) / len(events)
    assert per_event < 50e-6  # O(1) append: microseconds at most even on a slow runner
    assert sink.written == 0 and sink.queue_depth == 1000
    sink.close()
    assert sink.written == 1000 and sink.queue_depth == 0
    assert _ids(state_dir) == [e["id"] for e in events]
    sink.close()  # idempotent


async def test_strict_commit_returns_after_the_row_is_visible_elsewhere(state_dir: Path) -> None:
    sink = AuditSink(SQLiteAuditStore(state_dir), strict=True, flush_interval=10.0)
    other = sqlite3.connect(state_dir / "audit.db")
    try:
        for i in range(5):
            ev = make_event(i)
            seq = await sink.commit(ev)
            assert seq == i + 1
            row = other.execute("SELECT seq FROM events WHERE id = ?", (ev["id"],)).fetchone()
            assert row == (seq,)
        # Concurrent commits share transactions (group commit) and all land.
        evs = [make_event(100 + i) for i in range(200)]
        seqs = await asyncio.gather(*(sink.commit(e) for e in evs))
        assert sorted(seqs) == list(range(6, 206))
        assert sink.batches < 5 + 200
        (n,) = other.execute("SELECT COUNT(*) FROM events").fetchone()
        assert n == 205
    finally:
        other.close()
        await sink.aclose()


async def test_write_failures_are_retried_in_order_and_logged(
    state_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = FlakyStore(SQLiteAuditStore(state_dir))
    store.failures_left = 2
    sink = AuditSink(store, flush_interval=0.005)
    events = [make_event(i) for i in range(20)]
    with caplog.at_level(logging.ERROR, logger="keeptrusts.audit"):
        for ev in events:
            sink.submit(ev)
        await asyncio.wait_for(sink.aflush(), 10)
    assert sink.errors == 2 and sink.written == 20
    assert "AUDIT WRITE FAILED" in caplog.text and "No space left" in caplog.text
    await sink.aclose()
    assert _ids(state_dir) == [e["id"] for e in events]


async def test_a_poison_event_does_not_block_the_log(state_dir: Path) -> None:
    store = FlakyStore(SQLiteAuditStore(state_dir))
    events = [make_event(i) for i in range(5)]
    store.poison.add(events[2]["id"])
    sink = AuditSink(store, flush_interval=0.005)
    for ev in events:
        sink.submit(ev)
    await asyncio.wait_for(sink.aflush(), 10)
    stored = list(store.inner.iter_events())
    await sink.aclose()
    assert [e["id"] for e in stored] == [e["id"] for e in events]  # the stub keeps the id
    assert stored[2]["event_type"] == "audit_write_error"
    assert [e["event_type"] for e in stored].count("decision") == 4


async def test_strict_commit_timeout_keeps_the_event(state_dir: Path) -> None:
    store = FlakyStore(SQLiteAuditStore(state_dir))
    store.gate.clear()  # the disk hangs
    sink = AuditSink(store, strict=True)
    ev = make_event(1)
    with pytest.raises(AuditUnavailable):
        await sink.commit(ev, timeout=0.05)
    store.gate.set()
    await asyncio.wait_for(sink.aflush(), 10)
    await sink.aclose()
    assert _ids(state_dir) == [ev["id"]]


def test_full_queue_never_drops_and_signals_overload(
    state_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = FlakyStore(SQLiteAuditStore(state_dir))
    store.gate.clear()
    sink = AuditSink(store, flush_interval=0.005, max_batch=5, max_queue=20)
    events = [make_event(i) for i in range(60)]
    with caplog.at_level(logging.ERROR, logger="keeptrusts.audit"):
        for ev in events:
            sink.submit(ev)
    assert sink.overloaded and sink.overflows > 0
    assert "AUDIT QUEUE FULL" in caplog.text
    store.gate.set()
    sink.flush(10)
    assert not sink.overloaded
    sink.close()
    assert _ids(state_dir) == [e["id"] for e in events]


def test_unwritable_store_at_close_spills_and_next_start_reimports(state_dir: Path) -> None:
    store = FlakyStore(SQLiteAuditStore(state_dir))
    store.always_fail = True
    sink = AuditSink(store, flush_interval=0.005, close_timeout=0.3)
    events = [make_event(i) for i in range(7)]
    for ev in events:
        sink.submit(ev)
    sink.close()
    spills = list(state_dir.glob("audit-spill-*.jsonl"))
    assert len(spills) == 1 and len(spills[0].read_text().splitlines()) == 7
    assert spills[0].stat().st_mode & 0o777 == 0o600

    sink2 = AuditSink(SQLiteAuditStore(state_dir), flush_interval=0.005)
    sink2.flush(10)
    assert not list(state_dir.glob("audit-spill-*.jsonl"))
    stored = list(sink2.store.iter_events())
    sink2.close()
    assert [e["id"] for e in stored] == [e["id"] for e in events]
    assert all(e["recovered_from"] == spills[0].name for e in stored)
    assert SQLiteAuditStore(state_dir, readonly=True).verify().ok


def test_submit_after_close_is_still_written(state_dir: Path) -> None:
    sink = AuditSink(SQLiteAuditStore(state_dir), close_store=False)
    sink.close()
    ev = make_event(1)
    sink.submit(ev)
    assert _ids(state_dir) == [ev["id"]]
    sink.store.close()


def test_a_non_dict_submit_is_recorded_and_does_not_block(state_dir: Path) -> None:
    sink = AuditSink(SQLiteAuditStore(state_dir), flush_interval=0.005)
    sink.submit(object())  # type: ignore[arg-type]  # e.g. a RequestContext by mistake
    ev = make_event(1)
    sink.submit(ev)
    sink.flush(10)
    stored = list(sink.store.iter_events())
    sink.close()
    assert [e["event_type"] for e in stored] == ["audit_encoding_error", "decision"]
    assert stored[1]["id"] == ev["id"]
    sink.flush(1)  # after close: returns at once
