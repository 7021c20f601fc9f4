"""PostgreSQL outages: events are spooled to local disk and drained in order; nothing lost."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from pathlib import Path

import pytest

from keeptrusts.audit.pgdb import connect
from keeptrusts.audit.postgres import PostgresAuditStore
from keeptrusts.audit.sink import AuditSink
from tests.audit.helpers import make_event

from .conftest import PgDatabase


def _ids(url: str, chain_id: str) -> list[str]:
    with contextlib.closing(connect(url)) as c:
        rows = c.execute(
            "SELECT id FROM audit_events WHERE chain_id = %s ORDER BY seq", (chain_id,)
        ).fetchall()
    return [r[0] for r in rows]


def _spooled_files(state_dir: Path) -> list[Path]:
    return sorted(state_dir.glob("audit-pgspool-*.jsonl"))


def _wait(cond, timeout: float = 15.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_outage_spools_then_drains_in_order(
    pg: PgDatabase, db_url: str, state_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = PostgresAuditStore(db_url, state_dir=state_dir)
    events = [make_event(i) for i in range(30)]
    store.append(events[:5])
    pg.block()
    try:
        with caplog.at_level(logging.ERROR, logger="keeptrusts.audit"):
            for i in range(5, 30, 5):
                head = store.append(events[i : i + 5])  # never raises: spooled
        assert head.seq == 30
        assert "AUDIT DATABASE UNAVAILABLE" in caplog.text
        assert store.degraded and store.spooled == 25
        health = store.health()
        assert health["connected"] is False and health["spooled_events"] == 25
        files = _spooled_files(state_dir)
        assert files and all(p.stat().st_mode & 0o777 == 0o600 for p in files)
        store.sync_head()  # the idle drain attempt fails quietly and backs off
        assert store.spooled == 25
    finally:
        pg.unblock()
    store._retry_at = 0.0  # skip the backoff wait
    store.sync_head()
    assert not store.degraded and store.spooled == 0 and not _spooled_files(state_dir)
    assert _ids(db_url, store.chain_id) == [e["id"] for e in events]
    store.append([make_event(99)])
    assert store.verify().ok
    store.close()


def test_rows_that_landed_before_the_connection_broke_are_not_written_twice(
    db_url: str, state_dir: Path
) -> None:
    # A commit whose acknowledgement was lost: the rows are in the database *and* spooled.
    store = PostgresAuditStore(db_url, state_dir=state_dir)
    events = [make_event(i) for i in range(6)]
    rows, head = store._chain_rows(events[:3], store.head())
    store._insert(rows, head)
    store._spool.append(rows)
    store._head = head
    store.append(events[3:])  # drains first (skipping what landed), then writes
    assert store.spooled == 0
    assert _ids(db_url, store.chain_id) == [e["id"] for e in events]
    assert store.verify().ok
    store.close()


async def test_gateway_sink_keeps_accepting_during_an_outage(
    pg: PgDatabase, db_url: str, state_dir: Path
) -> None:
    store = PostgresAuditStore(db_url, state_dir=state_dir)
    sink = AuditSink(store, flush_interval=0.01, max_batch=50, max_queue=200)
    order: list[str] = []

    async def burst(n: int) -> None:
        for _ in range(n):
            ev = make_event(len(order))
            order.append(ev["id"])
            sink.submit(ev)
            await asyncio.sleep(0.0005)

    await burst(50)
    await sink.aflush()
    pg.block()
    try:
        await burst(500)  # more than max_queue: spooling keeps the queue short
        await sink.aflush()
        assert sink.degraded and sink.health()["status"] == "degraded"
        assert sink.health()["spooled_events"] > 0
        assert not sink.overloaded and sink.errors == 0 and sink.overflows == 0
        # Strict-mode commits return once the event is durable in the spool.
        ev = make_event(9999)
        order.append(ev["id"])
        assert await asyncio.wait_for(sink.commit(ev), 10) == 551
    finally:
        pg.unblock()
    await asyncio.to_thread(_wait, lambda: not sink.degraded)
    assert sink.health()["status"] == "ok" and sink.health()["spooled_events"] == 0
    await burst(20)
    await sink.aclose()
    assert _ids(db_url, store.chain_id) == order
    assert PostgresAuditStore(db_url, readonly=True).verify().ok


def test_a_dead_process_spool_is_drained_by_the_next_one(
    pg: PgDatabase, db_url: str, state_dir: Path
) -> None:
    first = PostgresAuditStore(db_url, state_dir=state_dir, instance_id="gw-1")
    events = [make_event(i) for i in range(12)]
    first.append(events[:2])
    pg.block()
    try:
        first.append(events[2:7])
        first.append(events[7:])
    finally:
        pg.unblock()
    # The process dies (kill -9): its spool stays, its lock is released by the kernel.
    first._spool.close()
    first._drop_broken_conn()
    assert len(_spooled_files(state_dir)) == 1

    second = PostgresAuditStore(db_url, state_dir=state_dir, instance_id="gw-2")
    assert second.degraded and second.spooled == 10
    second.append([make_event(100)])  # its own chain is written at once, the old one drained
    assert second.spooled == 0 and not _spooled_files(state_dir)
    assert _ids(db_url, first.chain_id) == [e["id"] for e in events]
    assert len(_ids(db_url, second.chain_id)) == 1
    result = second.verify()
    assert result.ok, result.summary()
    assert len(result.chains) == 2
    second.close()


def test_a_live_process_spool_is_left_alone(pg: PgDatabase, db_url: str, tmp_path: Path) -> None:
    shared = tmp_path / "shared-state"
    a = PostgresAuditStore(db_url, state_dir=shared)
    pg.block()
    try:
        a.append([make_event(1)])
    finally:
        pg.unblock()
    b = PostgresAuditStore(db_url, state_dir=shared)
    assert b.spooled == 0 and a.spooled == 1  # a still holds its spool's lock
    a._retry_at = 0.0
    a.sync_head()
    assert a.spooled == 0
    a.close()
    b.close()
    assert PostgresAuditStore(db_url, readonly=True).verify().ok
