"""The hash chain verifies an intact log and catches every kind of tampering on the file."""

from __future__ import annotations

import hashlib
import itertools
import sqlite3
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest

from keeptrusts.audit.chain import (
    GENESIS,
    HEAD_FILE,
    Head,
    canonical_json,
    chain_hash,
    event_hash,
    parse_ts,
    read_head_file,
    write_head_file,
)
from keeptrusts.audit.store import SQLiteAuditStore

from .helpers import fill, make_event

N = 30


def _verify(state_dir: Path):  # type: ignore[no-untyped-def]
    return SQLiteAuditStore(state_dir, readonly=True).verify()


def _db(state_dir: Path) -> sqlite3.Connection:
    return sqlite3.connect(state_dir / "audit.db", isolation_level=None)


def test_hash_is_sha256_of_prev_hash_and_canonical_json() -> None:
    event = {"b": 1, "a": {"z": [1, 2], "y": None}, "prev_hash": GENESIS, "seq": 1}
    body = canonical_json(event)
    assert (
        body == b'{"a":{"y":null,"z":[1,2]},"b":1,"prev_hash":"' + GENESIS.encode() + b'","seq":1}'
    )
    assert chain_hash(GENESIS, body) == hashlib.sha256(GENESIS.encode() + body).hexdigest()
    assert event_hash({**event, "hash": "ignored"}) == chain_hash(GENESIS, body)


def test_intact_log_verifies(state_dir: Path) -> None:
    events = fill(state_dir, N)
    result = _verify(state_dir)
    assert result.ok, result
    assert result.checked == N and result.first_seq == 1 and result.last_seq == N
    assert result.summary().startswith(f"ok: {N} events verified (chain chn_")
    store = SQLiteAuditStore(state_dir, readonly=True)
    stored = list(store.iter_events())
    assert [e["id"] for e in stored] == [e["id"] for e in events]
    assert [e["seq"] for e in stored] == list(range(1, N + 1))
    assert stored[0]["prev_hash"] == GENESIS
    for prev, cur in itertools.pairwise(stored):
        assert cur["prev_hash"] == prev["hash"]
        assert event_hash(cur) == cur["hash"]
    # Head record and head file both point at the last event.
    assert read_head_file(state_dir / HEAD_FILE) == Head(store.chain_id, N, stored[-1]["hash"])


def test_reopen_continues_the_chain(state_dir: Path) -> None:
    fill(state_dir, 5)
    store = SQLiteAuditStore(state_dir)
    chain_id = store.chain_id
    store.append([make_event(99)])
    store.close()
    assert SQLiteAuditStore(state_dir, readonly=True).chain_id == chain_id
    result = _verify(state_dir)
    assert result.ok and result.checked == 6


def _edit_body(db: sqlite3.Connection) -> None:
    (body,) = db.execute("SELECT body FROM events WHERE seq = 5").fetchone()
    ev = orjson.loads(body)
    ev["verdict"] = "allow" if ev["verdict"] != "allow" else "block"
    db.execute("UPDATE events SET body = ? WHERE seq = 5", (canonical_json(ev),))


def _edit_column(db: sqlite3.Connection) -> None:
    db.execute("UPDATE events SET verdict = 'allow' WHERE seq = 5")  # seq 5 is a block


def _edit_and_rehash(db: sqlite3.Connection) -> None:
    body, prev = db.execute("SELECT body, prev_hash FROM events WHERE seq = 5").fetchone()
    ev = orjson.loads(body)
    ev["verdict"] = "allow"
    new = canonical_json(ev)
    db.execute(
        "UPDATE events SET body = ?, verdict = 'allow', hash = ? WHERE seq = 5",
        (new, chain_hash(prev, new)),
    )


def _delete_middle(db: sqlite3.Connection) -> None:
    db.execute("DELETE FROM events WHERE seq = 10")


def _delete_range(db: sqlite3.Connection) -> None:
    db.execute("DELETE FROM events WHERE seq BETWEEN 10 AND 12")


def _delete_tail(db: sqlite3.Connection) -> None:
    db.execute(f"DELETE FROM events WHERE seq = {N}")


def _delete_oldest(db: sqlite3.Connection) -> None:
    db.execute("DELETE FROM events WHERE seq <= 3")


def _forged_row(db: sqlite3.Connection, seq: int, prev_seq: int) -> tuple:
    """A well-formed row (correct hash and link) for an event the gateway never wrote."""
    chain_id, prev = db.execute(
        "SELECT chain_id, hash FROM events WHERE seq = ?", (prev_seq,)
    ).fetchone()
    ev = make_event(1000, verdict="allow")
    ev.update(chain_id=chain_id, seq=seq, prev_hash=prev)
    body = canonical_json(ev)
    ts = parse_ts(ev["timestamp"])
    return (seq, chain_id, ev["id"], ts, ev["timestamp"], "decision", "allow",
            ev["reason_code"], "gpt-4o", "openai-gpt4o", "analyst", ev["request_id"],
            body, prev, chain_hash(prev, body))  # fmt: skip


def _insert_row(db: sqlite3.Connection, row: tuple) -> None:
    db.execute(f"INSERT INTO events VALUES ({','.join('?' * len(row))})", row)


def _insert_tail(db: sqlite3.Connection) -> None:
    _insert_row(db, _forged_row(db, N + 1, N))


def _insert_middle(db: sqlite3.Connection) -> None:
    # Make room after seq 15 and slip a forged event in.
    db.execute("UPDATE events SET seq = -seq WHERE seq > 15")
    db.execute("UPDATE events SET seq = -seq + 1 WHERE seq < 0")
    _insert_row(db, _forged_row(db, 16, 15))


def _reorder(db: sqlite3.Connection) -> None:
    db.execute("UPDATE events SET seq = -1 WHERE seq = 7")
    db.execute("UPDATE events SET seq = 7 WHERE seq = 8")
    db.execute("UPDATE events SET seq = 8 WHERE seq = -1")


def _copy_from_other_chain(db: sqlite3.Connection) -> None:
    db.execute("UPDATE events SET chain_id = 'chn_other' WHERE seq = 3")


@pytest.mark.parametrize(
    ("tamper", "code", "bad_seq", "bad_event"),
    [
        (_edit_body, "hash_mismatch", 5, 5),
        (_edit_column, "column_mismatch", 5, 5),
        (_edit_and_rehash, "broken_link", 6, 6),
        (_delete_middle, "gap", 11, 11),
        (_delete_range, "gap", 13, 13),
        (_delete_tail, "truncated", N, None),
        (_delete_oldest, "gap", 4, 4),
        (_insert_tail, "beyond_head", N + 1, None),
        # Renumbered: the row now at seq 17 is the event written as seq 16.
        (_insert_middle, "seq_mismatch", 17, 16),
        # Swapped: the row now at seq 7 is the event written as seq 8.
        (_reorder, "seq_mismatch", 7, 8),
        (_copy_from_other_chain, "chain_mismatch", 3, 3),
    ],
)
def test_tampering_is_detected(
    state_dir: Path,
    tamper: Callable[[sqlite3.Connection], None],
    code: str,
    bad_seq: int,
    bad_event: int | None,
) -> None:
    events = fill(state_dir, N)
    db = _db(state_dir)
    tamper(db)
    db.close()
    result = _verify(state_dir)
    assert not result.ok
    assert result.code == code, result
    assert result.first_bad_seq == bad_seq, result
    if bad_event is not None:
        assert result.first_bad_id == events[bad_event - 1]["id"]
    assert result.summary().startswith("FAILED at ")


def test_gap_message_names_the_missing_events(state_dir: Path) -> None:
    events = fill(state_dir, N)
    db = _db(state_dir)
    _delete_range(db)
    db.close()
    result = _verify(state_dir)
    assert "seq 10..12 missing" in result.problem
    assert result.first_bad_id == events[12]["id"]
    assert f"event {events[12]['id']} seq 13" in result.summary()


def test_tail_deletion_with_forged_head_record_is_caught_by_the_head_file(
    state_dir: Path,
) -> None:
    fill(state_dir, N)
    db = _db(state_dir)
    db.execute(f"DELETE FROM events WHERE seq >= {N - 1}")
    chain_id, h = db.execute(f"SELECT chain_id, hash FROM events WHERE seq = {N - 2}").fetchone()
    db.execute(
        "UPDATE meta SET value = ? WHERE key = 'head'",
        (orjson.dumps({"chain_id": chain_id, "seq": N - 2, "hash": h}).decode(),),
    )
    db.close()
    result = _verify(state_dir)
    assert not result.ok and result.code == "truncated"
    assert "head file says seq 30" in result.problem


def test_missing_head_file_and_rewritten_head_file(state_dir: Path) -> None:
    fill(state_dir, 5)
    head = read_head_file(state_dir / HEAD_FILE)
    (state_dir / HEAD_FILE).unlink()
    assert _verify(state_dir).code == "head_file_missing"
    write_head_file(state_dir / HEAD_FILE, Head(head.chain_id, 3, "f" * 64))
    assert _verify(state_dir).code == "head_file_mismatch"
    # A head file that merely lags (crash between commit and file write) is fine.
    store = SQLiteAuditStore(state_dir, readonly=True)
    third = next(e for e in store.iter_events() if e["seq"] == 3)
    write_head_file(state_dir / HEAD_FILE, Head(head.chain_id, 3, third["hash"]))
    assert _verify(state_dir).ok


def test_tail_deleted_while_stopped_stays_visible_after_restart(state_dir: Path) -> None:
    fill(state_dir, 10)
    db = _db(state_dir)
    db.execute("DELETE FROM events WHERE seq > 8")
    db.close()
    store = SQLiteAuditStore(state_dir)  # the gateway restarts
    store.append([make_event(11)])
    store.close()
    result = _verify(state_dir)
    assert not result.ok and result.code == "gap" and result.first_bad_seq == 11
    assert "seq 9..10 missing" in result.problem


def test_replaced_database_is_recorded_as_a_discontinuity(state_dir: Path) -> None:
    fill(state_dir, 10)
    for name in ("audit.db", "audit.db-wal", "audit.db-shm"):
        (state_dir / name).unlink(missing_ok=True)
    store = SQLiteAuditStore(state_dir)  # fresh database, old head file still there
    store.append([make_event(1)])
    store.close()
    result = _verify(state_dir)
    assert not result.ok and result.code == "discontinuity" and result.first_bad_seq == 1
    assert "deleted or replaced" in result.problem


def test_forged_checkpoint_is_detected(state_dir: Path) -> None:
    fill(state_dir, N)
    db = _db(state_dir)
    chain_id, h = db.execute("SELECT chain_id, hash FROM events WHERE seq = 5").fetchone()
    db.execute("DELETE FROM events WHERE seq <= 5")
    db.execute(
        "INSERT INTO meta(key, value) VALUES('checkpoint', ?)",
        (orjson.dumps({"chain_id": chain_id, "seq": 5, "hash": h}).decode(),),
    )
    db.close()
    result = _verify(state_dir)
    assert not result.ok and result.code == "checkpoint_unrecorded"


def test_empty_log_verifies(state_dir: Path) -> None:
    SQLiteAuditStore(state_dir).close()
    result = _verify(state_dir)
    assert result.ok and result.checked == 0
