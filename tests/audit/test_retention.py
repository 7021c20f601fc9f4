"""Retention deletes the oldest prefix, keeps the chain verifiable and records the purge."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

from keeptrusts.audit.chain import RETENTION_PURGE
from keeptrusts.audit.query import EventQuery
from keeptrusts.audit.sink import AuditSink
from keeptrusts.audit.store import SQLiteAuditStore

from .helpers import make_event

DAY = 86400.0


def _store_with_ages(state_dir: Path, ages_days: list[float]) -> SQLiteAuditStore:
    now = time.time()
    store = SQLiteAuditStore(state_dir)
    store.append([make_event(i, ts=now - age * DAY) for i, age in enumerate(ages_days)])
    return store


def test_purge_keeps_verify_green_and_records_what_was_purged(state_dir: Path) -> None:
    store = _store_with_ages(state_dir, [40] * 10 + [1] * 5)
    purged_hash = store.list_events(EventQuery(after_seq=9, order="asc", limit=1))[0]["hash"]
    result = store.purge(30)
    assert result is not None and (result.count, result.from_seq, result.to_seq) == (10, 1, 10)
    assert store.verify().ok, store.verify()
    remaining = list(store.iter_events())
    assert [e["seq"] for e in remaining] == list(range(11, 17))
    purge = remaining[-1]
    assert purge["event_type"] == RETENTION_PURGE
    assert purge["purged_count"] == 10 and purge["purged_to_seq"] == 10
    assert purge["purged_from_seq"] == 1 and purge["purged_to_hash"] == purged_hash
    assert purge["retention_days"] == 30 and purge["cutoff"] == result.cutoff
    assert purge["reason_code"] == RETENTION_PURGE and purge["verdict"] is None
    # Nothing old left: a second purge does nothing and writes no event.
    assert store.purge(30) is None
    assert store.count() == 6
    store.close()
    assert SQLiteAuditStore(state_dir, readonly=True).verify().ok


def test_purge_stops_at_the_first_recent_event(state_dir: Path) -> None:
    # seq 3 is recent: only seq 1..2 may go, even though seq 4 is old (a prefix, no holes).
    store = _store_with_ages(state_dir, [40, 40, 1, 40, 1])
    result = store.purge(30)
    assert result is not None and result.to_seq == 2
    assert [e["seq"] for e in store.iter_events()] == [3, 4, 5, 6]
    assert store.verify().ok
    store.close()


def test_repeated_purges_including_the_previous_purge_event(state_dir: Path) -> None:
    store = _store_with_ages(state_dir, [40] * 4 + [1] * 3)
    store.purge(30)
    # Later everything (including the first purge event) is past retention.
    later = time.time() + 60 * DAY
    result = store.purge(30, now=later)
    assert result is not None and result.count == 4  # 3 events + the first purge event
    events = list(store.iter_events())
    assert len(events) == 1 and events[0]["event_type"] == RETENTION_PURGE
    assert store.verify().ok
    store.append([make_event(99)])
    assert store.verify().ok
    store.close()


def test_deleting_more_after_a_purge_is_detected(state_dir: Path) -> None:
    store = _store_with_ages(state_dir, [40] * 5 + [1] * 5)
    store.purge(30)
    store.close()
    db = sqlite3.connect(state_dir / "audit.db", isolation_level=None)
    db.execute("DELETE FROM events WHERE seq = 6")
    db.close()
    result = SQLiteAuditStore(state_dir, readonly=True).verify()
    assert not result.ok and result.code == "gap" and result.first_bad_seq == 7


def test_sink_runs_retention_on_the_writer_thread(state_dir: Path) -> None:
    store = _store_with_ages(state_dir, [400] * 3)
    sink = AuditSink(store, flush_interval=0.01)
    sink.start_retention(365)
    sink.submit(make_event(100))
    deadline = time.monotonic() + 5
    while sink.purges == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    sink.flush(5)
    assert sink.purges == 1
    events = list(store.iter_events())
    assert {e["event_type"] for e in events} == {RETENTION_PURGE, "decision"}
    sink.close()
    assert SQLiteAuditStore(state_dir, readonly=True).verify().ok
