"""The PostgreSQL audit store on a real server: batches, filters, chains, tampering, retention."""

from __future__ import annotations

import contextlib
import threading
import time
from datetime import UTC, date, datetime
from pathlib import Path

import orjson
import pytest

from keeptrusts.audit.chain import RETENTION_PURGE
from keeptrusts.audit.pgdb import SchemaMismatch, connect, list_partitions
from keeptrusts.audit.postgres import PostgresAuditStore
from keeptrusts.audit.query import EventQuery
from keeptrusts.audit.store import open_store
from keeptrusts.cli.main import main as kt
from keeptrusts.identity.postgres import PostgresKeyStore
from tests.audit.helpers import make_event

from .conftest import PgDatabase

DAY = 86400.0


def _sql(url: str, sql: str, params: tuple = ()) -> list[tuple]:
    with contextlib.closing(connect(url)) as c:
        cur = c.execute(sql, params)
        return cur.fetchall() if cur.description else []


def _partitions(url: str) -> list[date]:
    with contextlib.closing(connect(url)) as c:
        return sorted(list_partitions(c))


def test_kt_db_migrate_is_idempotent_and_gateways_check_the_schema(
    empty_db: PgDatabase, state_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = empty_db.url
    with pytest.raises(SchemaMismatch, match="kt db migrate"):
        PostgresAuditStore(url, state_dir=state_dir)
    with pytest.raises(SchemaMismatch, match="kt db migrate"):
        PostgresKeyStore(url)
    assert kt(["db", "status", "--database-url", url]) == 1
    assert "pending migrations [1]" in capsys.readouterr().out

    assert kt(["db", "migrate", "--database-url", url]) == 0
    assert "applied migration 1" in capsys.readouterr().out
    assert kt(["db", "migrate", "--database-url", url, "--json"]) == 0
    again = orjson.loads(capsys.readouterr().out)
    assert again["applied"] == [] and again["from_version"] == again["version"] == 1
    assert kt(["db", "status", "--database-url", url, "--json"]) == 0
    status = orjson.loads(capsys.readouterr().out)
    assert status["pending"] == [] and len(status["partitions"]) == 3  # today + 2 ahead
    assert _sql(url, "SELECT version FROM kt_schema_migrations") == [(1,)]

    store = PostgresAuditStore(url, state_dir=state_dir)
    store.close()
    # A database migrated by a newer keeptrusts is refused too.
    _sql(url, "INSERT INTO kt_schema_migrations (version, description) VALUES (99, 'future')")
    with pytest.raises(SchemaMismatch, match="newer"):
        PostgresAuditStore(url, state_dir=state_dir)
    assert kt(["db", "migrate", "--database-url", url]) == 1
    assert "upgrade keeptrusts" in capsys.readouterr().err


def test_no_database_url_is_a_clear_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("KEEPTRUSTS_DATABASE_URL", raising=False)
    assert kt(["db", "migrate"]) == 1
    assert "--database-url" in capsys.readouterr().err


def test_open_store_picks_postgres_for_a_database_url(db_url: str, state_dir: Path) -> None:
    store = open_store(state_dir, database_url=db_url, instance_id="gw-a")
    assert isinstance(store, PostgresAuditStore) and store.instance_id == "gw-a"
    store.close()
    assert not (state_dir / "audit.db").exists()
    assert _sql(db_url, "SELECT instance_id, closed_at IS NOT NULL FROM audit_chains") == [
        ("gw-a", True)
    ]


def test_batches_are_one_copy_each_and_list_filters_work(db_url: str, state_dir: Path) -> None:
    now = time.time()
    store = PostgresAuditStore(db_url, state_dir=state_dir)
    verdicts = ("allow", "block", "redact")
    events = [
        make_event(i, verdict=verdicts[i % 3], ts=now - (300 - i) * 60, model=f"m{i % 2}")
        for i in range(300)
    ]
    for i in range(0, 300, 100):
        head = store.append(events[i : i + 100])
    assert head.seq == 300 and store.count() == 300
    # One transaction per batch: 3 distinct xids among the positions.
    assert _sql(db_url, "SELECT count(DISTINCT pos >> 16) FROM audit_events") == [(3,)]

    newest = store.list_events(EventQuery(limit=5))
    assert [e["id"] for e in newest] == [e["id"] for e in reversed(events[-5:])]
    assert [e["seq"] for e in newest] == [300, 299, 298, 297, 296]
    assert all(e["chain_id"] == store.chain_id and len(e["hash"]) == 64 for e in newest)

    blocks = store.list_events(EventQuery(verdict="block", limit=None))
    assert {e["verdict"] for e in blocks} == {"block"} and len(blocks) == 100
    m1_blocks = store.list_events(EventQuery(verdict="block", model="m1", limit=None))
    assert {(e["verdict"], e["model"]) for e in m1_blocks} == {("block", "m1")}
    assert len(m1_blocks) == 50
    recent = store.list_events(EventQuery(since=now - 3600 - 1, limit=None))
    assert [e["n"] for e in recent] == list(range(299, 239, -1))
    window = store.list_events(
        EventQuery(since=now - 100 * 60 - 1, until=now - 90 * 60 + 1, order="asc", limit=None)
    )
    assert [e["n"] for e in window] == list(range(200, 211))
    assert store.list_events(EventQuery(model="nope")) == []

    # Cursor paging over pos: ascending pages of 70 give every event once, in chain order.
    seen, cursor = [], 0
    while page := store.list_events(EventQuery(after_seq=cursor, order="asc", limit=70)):
        seen += page
        cursor = page[-1]["pos"]
    assert [e["id"] for e in seen] == [e["id"] for e in events]
    before = store.list_events(EventQuery(before_seq=seen[10]["pos"], limit=3))
    assert [e["seq"] for e in before] == [10, 9, 8]
    assert [e["id"] for e in store.iter_events(since=now - 5 * 60 - 1)] == [
        e["id"] for e in events[-5:]
    ]
    assert store.verify().ok
    store.close()


def test_list_filters_are_served_by_indexes(db_url: str) -> None:
    indexes = {r[0] for r in _sql(db_url, "SELECT indexname FROM pg_indexes WHERE tablename = "
                                          "'audit_events'")}  # fmt: skip
    assert {"audit_events_pos", "audit_events_ts", "audit_events_verdict_pos",
            "audit_events_model_pos"} <= indexes  # fmt: skip
    with contextlib.closing(connect(db_url)) as c:
        c.execute("SET enable_seqscan = off")
        plan = "\n".join(
            r[0]
            for r in c.execute(
                "EXPLAIN SELECT body FROM audit_events WHERE verdict = 'block' "
                "ORDER BY pos DESC LIMIT 50"
            ).fetchall()
        )
    assert "verdict_pos" in plan and "Sort" not in plan


def test_two_instances_append_concurrently_and_every_chain_verifies(
    db_url: str, tmp_path: Path
) -> None:
    a = PostgresAuditStore(db_url, state_dir=tmp_path / "a", instance_id="gw-a")
    b = PostgresAuditStore(db_url, state_dir=tmp_path / "b", instance_id="gw-b")
    reader = PostgresAuditStore(db_url, readonly=True)
    written: dict[str, list[str]] = {a.chain_id: [], b.chain_id: []}
    stop = threading.Event()
    followed: list[dict] = []

    def write(store: PostgresAuditStore) -> None:
        for i in range(40):
            batch = [make_event(i * 10 + j) for j in range(1 + i % 7)]
            store.append(batch)
            written[store.chain_id] += [e["id"] for e in batch]

    def follow() -> None:
        cursor = 0
        while True:
            done = stop.is_set()
            page = reader.list_events(EventQuery(after_seq=cursor, order="asc", limit=50))
            followed.extend(page)
            if page:
                cursor = page[-1]["pos"]
            elif done:
                return

    threads = [threading.Thread(target=write, args=(s,)) for s in (a, b)]
    tail = threading.Thread(target=follow)
    tail.start()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stop.set()
    tail.join(30)
    # A follower paging by cursor while both write saw every event exactly once.
    for cid, ids in written.items():
        assert [e["id"] for e in followed if e["chain_id"] == cid] == ids
    assert len(followed) == sum(len(v) for v in written.values())

    result = reader.verify()
    assert result.ok, result.summary()
    assert {c["chain_id"]: c["checked"] for c in result.chains} == {
        cid: len(ids) for cid, ids in written.items()
    }
    assert {c["instance_id"] for c in result.chains} == {"gw-a", "gw-b"}
    assert result.summary().startswith(f"ok: {result.checked} events verified in 2 chain(s)")
    a.close()
    b.close()
    assert reader.verify().ok


def _two_chains(db_url: str, tmp_path: Path) -> tuple[PostgresAuditStore, PostgresAuditStore]:
    a = PostgresAuditStore(db_url, state_dir=tmp_path / "a")
    b = PostgresAuditStore(db_url, state_dir=tmp_path / "b")
    for i in range(4):
        a.append([make_event(10 * i + j) for j in range(3)])
        b.append([make_event(100 + i)])
    return a, b


@pytest.mark.parametrize(
    ("tamper", "chain", "code", "bad_seq"),
    [
        (
            "UPDATE audit_events SET body = replace(body, '\"latency_ms\":1.5', "
            "'\"latency_ms\":9.5') WHERE chain_id = %(a)s AND seq = 5",
            "a",
            "hash_mismatch",
            5,
        ),
        ("DELETE FROM audit_events WHERE chain_id = %(a)s AND seq = 7", "a", "gap", 8),
        ("DELETE FROM audit_events WHERE chain_id = %(b)s AND seq = 4", "b", "truncated", 4),
        (
            "UPDATE audit_events SET verdict = 'allow', model = 'x' "
            "WHERE chain_id = %(b)s AND seq = 2",
            "b",
            "column_mismatch",
            2,
        ),
        (
            "UPDATE audit_events SET seq = 5 WHERE chain_id = %(b)s AND seq = 4",
            "b",
            "seq_mismatch",
            5,
        ),
        ("DELETE FROM audit_chains WHERE chain_id = %(b)s", "b", "unregistered_chain", 1),
    ],
)
def test_tampering_is_detected_in_the_right_chain(
    db_url: str, tmp_path: Path, tamper: str, chain: str, code: str, bad_seq: int
) -> None:
    a, b = _two_chains(db_url, tmp_path)
    assert a.verify().ok
    chains = {"a": a.chain_id, "b": b.chain_id}
    _sql(db_url, tamper, chains)  # type: ignore[arg-type]
    result = PostgresAuditStore(db_url, readonly=True).verify()
    assert not result.ok and result.code == code, result.summary()
    assert result.first_bad_seq == bad_seq and result.chain_id == chains[chain]
    assert result.summary().startswith("FAILED")
    a.close()
    b.close()


def _old_then_new(db_url: str, tmp_path: Path, now: float) -> tuple[PostgresAuditStore, ...]:
    """Two instances that wrote 40 and 35 days ago, then keep writing today."""
    clock = [now - 40 * DAY]
    a = PostgresAuditStore(db_url, state_dir=tmp_path / "a", clock=lambda: clock[0])
    b = PostgresAuditStore(db_url, state_dir=tmp_path / "b", clock=lambda: clock[0])
    a.append([make_event(i, ts=clock[0]) for i in range(5)])
    b.append([make_event(i, ts=clock[0]) for i in range(2)])
    clock[0] = now - 35 * DAY
    a.append([make_event(i, ts=clock[0]) for i in range(3)])
    clock[0] = now
    a.append([make_event(i) for i in range(4)])
    b.append([make_event(i) for i in range(1)])
    return a, b


def test_retention_drops_day_partitions_and_verify_stays_green(db_url: str, tmp_path: Path) -> None:
    now = time.time()
    a, b = _old_then_new(db_url, tmp_path, now)
    cutoff_day = datetime.fromtimestamp(now - 30 * DAY, UTC).date()
    old_days = [d for d in _partitions(db_url) if d < cutoff_day]
    assert len(old_days) >= 2

    result = b.purge(30, now=now)
    assert result is not None and result.count == 10  # 8 of a, 2 of b
    assert set(result.partitions) == {f"audit_events_p{d:%Y%m%d}" for d in old_days}
    assert not set(_partitions(db_url)) & set(old_days)  # dropped whole, not deleted row by row
    ver = PostgresAuditStore(db_url, readonly=True).verify()
    assert ver.ok, ver.summary()
    checkpoints = dict(_sql(db_url, "SELECT chain_id, checkpoint_seq FROM audit_chains"))
    assert checkpoints == {a.chain_id: 8, b.chain_id: 2}
    purge = [e for e in b.iter_events() if e["event_type"] == RETENTION_PURGE]
    assert len(purge) == 1 and purge[0]["chain_id"] == b.chain_id
    assert purge[0]["chains"][a.chain_id]["purged_to_seq"] == 8
    assert purge[0]["purged_count"] == 10
    # Nothing old left: a second purge (from either instance) does nothing.
    assert a.purge(30, now=now) is None and b.purge(30, now=now) is None
    a.append([make_event(99)])
    assert a.verify().ok

    # Deleting more after a purge is caught, and so is a forged checkpoint.
    _sql(db_url, "DELETE FROM audit_events WHERE chain_id = %s AND seq = 9", (a.chain_id,))
    bad = a.verify()
    assert not bad.ok and bad.code == "gap" and bad.chain_id == a.chain_id
    first = _sql(db_url, "SELECT hash FROM audit_events WHERE chain_id = %s AND seq = 10",
                 (a.chain_id,))[0][0]  # fmt: skip
    _sql(db_url, "UPDATE audit_chains SET checkpoint_seq = 10, checkpoint_hash = %s "
         "WHERE chain_id = %s", (first, a.chain_id))  # fmt: skip
    _sql(db_url, "DELETE FROM audit_events WHERE chain_id = %s AND seq = 10", (a.chain_id,))
    forged = a.verify()
    assert not forged.ok and forged.code == "checkpoint_unrecorded", forged.summary()
    a.close()
    b.close()


def test_closed_chains_whose_events_all_aged_out_are_retired(db_url: str, tmp_path: Path) -> None:
    now = time.time()
    a, b = _old_then_new(db_url, tmp_path, now)
    b.purge(30, now=now)
    # a's old events are gone; once a has closed and all its events age out, its chain row
    # is retired at the next purge (recorded in that purge event).
    a.close()
    later = now + 60 * DAY
    c = PostgresAuditStore(db_url, state_dir=tmp_path / "c", clock=lambda: later)
    c.append([make_event(1)])
    result = c.purge(30, now=later)
    assert result is not None
    chains = {r[0] for r in _sql(db_url, "SELECT chain_id FROM audit_chains")}
    assert a.chain_id not in chains and b.chain_id in chains
    purge = [e for e in c.iter_events() if e["event_type"] == RETENTION_PURGE][-1]
    assert a.chain_id in purge["retired_chains"]
    assert c.verify().ok, c.verify().summary()
    b.close()
    c.close()
