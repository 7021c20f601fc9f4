"""Where audit events live: the ``AuditStore`` interface and its SQLite implementation.

The SQLite store keeps ``<state_dir>/audit.db`` (WAL, ``synchronous=FULL``: a committed
batch survives a crash or power loss) and the head file ``<state_dir>/audit-head.json``.
Appends take a batch, chain it (``seq``, ``prev_hash``, ``hash``) and write it with the head
record in one transaction. Callers only use the ``AuditStore`` protocol, so another backend
(PostgreSQL) can be dropped in behind ``open_store``.
"""

from __future__ import annotations

import contextlib
import logging
import operator
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable
from urllib.request import pathname2url

import orjson

from keeptrusts.audit.chain import (
    DISCONTINUITY,
    GENESIS,
    HEAD_FILE,
    RETENTION_PURGE,
    Head,
    Record,
    VerifyResult,
    canonical_json,
    chain_hash,
    column_value,
    parse_ts,
    read_head_file,
    verify,
    write_head_file,
)
from keeptrusts.audit.event import new_event_id
from keeptrusts.audit.query import EventQuery, iso, paged

log = logging.getLogger("keeptrusts.audit")

DB_FILE = "audit.db"
SCHEMA_VERSION = "1"

# Top-level keys that must never reach the audit log (request bodies, headers, keys). The
# event builder does not produce them; this is a second line of defence.
FORBIDDEN_KEYS = frozenset(
    {"headers", "client_auth", "authorization", "api_key", "body", "messages", "prompt"}
)


class AuditStoreMissing(FileNotFoundError):
    """There is no audit log where one was expected (read-only open)."""


@dataclass(frozen=True, slots=True)
class PurgeResult:
    count: int
    from_seq: int
    to_seq: int
    cutoff: str
    event_id: str


@runtime_checkable
class AuditStore(Protocol):
    """What the sink, the admin API and the CLI need from an audit backend.

    ``append`` is called from one writer thread at a time; it must chain the events in the
    given order and make them and the new head durable atomically (all or nothing).
    """

    chain_id: str
    location: str

    def append(self, events: Sequence[Mapping[str, Any]], *, sync_head: bool = True) -> Head:
        """Chain and commit ``events``; with ``sync_head`` also persist the secondary head
        record (else the caller calls ``sync_head()`` later, off its critical path)."""
        ...

    def sync_head(self) -> None: ...

    def head(self) -> Head: ...

    def list_events(self, query: EventQuery) -> list[dict[str, Any]]: ...

    def iter_events(
        self, *, since: float | None = None, until: float | None = None, after_seq: int = 0
    ) -> Iterator[dict[str, Any]]: ...

    def count(self) -> int: ...

    def verify(self) -> VerifyResult: ...

    def purge(self, older_than_days: float, *, now: float | None = None) -> PurgeResult | None: ...

    def close(self) -> None: ...


_COLUMNS = (
    "seq",
    "chain_id",
    "id",
    "ts",
    "timestamp",
    "event_type",
    "verdict",
    "reason_code",
    "model",
    "target_id",
    "role",
    "request_id",
    "body",
    "prev_hash",
    "hash",
)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    seq         INTEGER PRIMARY KEY,  -- position in the chain: 1, 2, 3, ...
    chain_id    TEXT NOT NULL,
    id          TEXT NOT NULL,
    ts          REAL NOT NULL,        -- epoch seconds of "timestamp", for range filters
    timestamp   TEXT,
    event_type  TEXT,
    verdict     TEXT,
    reason_code TEXT,
    model       TEXT,
    target_id   TEXT,
    role        TEXT,
    request_id  TEXT,
    body        BLOB NOT NULL,        -- canonical JSON of the event without "hash"
    prev_hash   TEXT NOT NULL,
    hash        TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_ts ON events(ts);
CREATE INDEX IF NOT EXISTS events_verdict_ts ON events(verdict, ts);
CREATE INDEX IF NOT EXISTS events_model_ts ON events(model, ts);
CREATE INDEX IF NOT EXISTS events_id ON events(id);
CREATE INDEX IF NOT EXISTS events_request_id ON events(request_id);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""

_NCOLS = len(_COLUMNS)
# The event fields copied into columns (besides identity.role), as ``index_columns`` has
# them; a value that is not text or None is stored as its JSON (``column_value``).
_COLUMN_KEYS = (
    "id", "timestamp", "event_type", "verdict", "reason_code", "model", "target_id", "request_id"
)  # fmt: skip
_pick_columns = operator.itemgetter(*_COLUMN_KEYS)
_TEXT_OR_NONE = frozenset({str, type(None)})
_INSERT_ROW = "(" + ",".join("?" * _NCOLS) + ")"
# Rows per multi-row INSERT statement (15 bound values each; SQLite allows 32766).
_ROWS_PER_INSERT = 64


def _insert_sql(n: int) -> str:
    # OR FAIL, not the default ABORT: ABORT must be able to undo the rows a failing
    # multi-row statement already inserted, so SQLite copies every page the statement
    # touches to a statement journal (a temp file: a page write per ~2 events). The whole
    # transaction is rolled back on any error anyway, so there is nothing to undo.
    return f"INSERT OR FAIL INTO events ({','.join(_COLUMNS)}) VALUES " + ",".join(
        [_INSERT_ROW] * n
    )


_INSERT_FULL = _insert_sql(_ROWS_PER_INSERT)


class SQLiteAuditStore:
    """The local audit log. Thread-safe; writes are serialised by an internal lock.

    With ``readonly=True`` (the CLI) nothing is created or repaired and a missing database
    raises :class:`AuditStoreMissing`.
    """

    def __init__(self, state_dir: Path | str, *, readonly: bool = False) -> None:
        self.dir = Path(state_dir)
        self.path = self.dir / DB_FILE
        self.head_path = self.dir / HEAD_FILE
        self.location = str(self.path)
        self.readonly = readonly
        self._lock = threading.RLock()
        self._conn: sqlite3.Connection | None = None
        self._head_file_error = False
        self._file_head: Head | None = None
        if readonly:
            if not self.path.exists():
                raise AuditStoreMissing(f"no audit log at {self.path}")
            conn = self._reader()
            try:
                meta = _read_meta(conn)
                row = conn.execute("SELECT chain_id FROM events LIMIT 1").fetchone()
            finally:
                conn.close()
            self.chain_id = meta.get("chain_id") or (row[0] if row else "")
            self._head = Head.from_dict(meta.get("head")) or Head(self.chain_id, 0, GENESIS)
            return
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        if not self.path.exists():
            os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT, 0o600))
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA busy_timeout=10000")
        conn.executescript(_SCHEMA)
        self._conn = conn
        self._open_chain()

    # -- opening ---------------------------------------------------------------------------

    def _open_chain(self) -> None:
        """Load the chain state; record (in the chain) anything that does not add up."""
        conn = self._conn
        assert conn is not None
        meta = _read_meta(conn)
        last = conn.execute("SELECT seq, chain_id, hash FROM events ORDER BY seq DESC LIMIT 1")
        last_row = last.fetchone()
        chain_id = meta.get("chain_id") or (last_row[1] if last_row else None)
        if not chain_id:
            chain_id = "chn_" + os.urandom(8).hex()
        if meta.get("chain_id") != chain_id:
            _set_meta(conn, "chain_id", chain_id)
            _set_meta(conn, "schema_version", SCHEMA_VERSION)
        self.chain_id = chain_id
        checkpoint = Head.from_dict(meta.get("checkpoint"))
        meta_head = Head.from_dict(meta.get("head"))
        file_head = read_head_file(self.head_path)
        self._file_head = file_head
        if last_row:
            stored = Head(chain_id, last_row[0], last_row[2])
        else:
            stored = checkpoint or Head(chain_id, 0, GENESIS)

        problems: list[str] = []
        cont = stored
        for label, h in (("head record", meta_head), ("head file", file_head)):
            if h is None:
                continue
            if h.chain_id != chain_id:
                problems.append(
                    f"{label} names chain {h.chain_id} at seq {h.seq} (hash {h.hash}), which "
                    f"is not in {self.path.name}: the audit log was deleted or replaced"
                )
            elif h.seq > cont.seq:
                # The newest events were deleted. Continue after the recorded head so the
                # gap stays visible to verify forever.
                log.error(
                    "audit log %s ends at seq %d but its %s says seq %d: events deleted",
                    self.path,
                    stored.seq,
                    label,
                    h.seq,
                )
                cont = h
            elif h.seq == stored.seq and h.hash != stored.hash:
                problems.append(f"{label} hash for seq {h.seq} differs from the stored event")
            elif label == "head record" and h.seq < stored.seq:
                problems.append(
                    f"store holds events up to seq {stored.seq} beyond its head record "
                    f"(seq {h.seq}): events appended outside the gateway"
                )
        self._head = cont
        if meta_head is None and cont.seq > 0:
            problems.append("the store's head record was missing")
        if problems:
            detail = "; ".join(problems)
            log.error("audit log integrity problem at open: %s", detail)
            self.append(
                [
                    {
                        "id": new_event_id(),
                        "timestamp": iso(time.time()),
                        "event_type": DISCONTINUITY,
                        "verdict": None,
                        "reason_code": DISCONTINUITY,
                        "detail": detail,
                        "previous_head": file_head.to_dict() if file_head else None,
                    }
                ]
            )
        elif meta_head is None or file_head != self._head:
            # New log, or a crash between commit and head-file write: bring both up to date.
            with self._lock:
                _set_meta(conn, "head", self._head.to_dict())
                self._write_head_file()

    # -- writing ---------------------------------------------------------------------------

    def head(self) -> Head:
        return self._head

    def _chain_rows(
        self, events: Sequence[Mapping[str, Any]], head: Head
    ) -> tuple[list[Any], Head]:
        """Chain ``events`` after ``head``: their rows' values, flat (15 per event, in
        ``_COLUMNS`` order, as ``_insert`` binds them), and the new head.

        This is the writer's per-event Python cost, so it is kept lean: ``seal`` encodes
        the event once and hashes those bytes, and the indexed copies are taken here with
        the semantics of ``index_columns`` (what ``verify`` checks them against)."""
        seq, prev = head.seq, head.hash
        cid = self.chain_id
        values: list[Any] = []
        add = values.extend
        now = time.time()
        last_stamp: Any = None
        last_ts: float | None = None
        for src in events:
            seq += 1
            ev, body, h = seal(src, chain_id=cid, seq=seq, prev=prev, now=now)
            ident = ev.get("identity")
            if ident.__class__ is dict or isinstance(ident, Mapping):
                role = ident.get("role")
            else:
                role = None
            try:
                cols = _pick_columns(ev)
            except KeyError:  # e.g. a config_reload event has no model or request_id
                cols = tuple(map(ev.get, _COLUMN_KEYS))
            if not _TEXT_OR_NONE.issuperset(map(type, cols)) or not (
                role is None or role.__class__ is str
            ):
                cols = tuple(map(column_value, cols))
                role = column_value(role)
            eid, timestamp, etype, verdict, reason, model, target, rid = cols
            if timestamp != last_stamp:  # events of the same millisecond share the parse
                last_stamp, last_ts = timestamp, parse_ts(timestamp)
            ts = last_ts
            add(
                (seq, cid, str(eid), now if ts is None else ts, timestamp, etype, verdict,
                 reason, model, target, role, rid, body, prev, h)
            )  # fmt: skip
            prev = h
        return values, Head(cid, seq, prev)

    def _insert(self, conn: sqlite3.Connection, values: list[Any]) -> None:
        """Multi-row INSERTs (``_ROWS_PER_INSERT`` rows per statement) of flat row values:
        less CPU than ``executemany``, which steps (and releases the GIL) once per row."""
        step = _ROWS_PER_INSERT * _NCOLS
        for i in range(0, len(values), step):
            chunk = values[i : i + step]
            n = len(chunk) // _NCOLS
            conn.execute(_INSERT_FULL if n == _ROWS_PER_INSERT else _insert_sql(n), chunk)

    def append(self, events: Sequence[Mapping[str, Any]], *, sync_head: bool = True) -> Head:
        """Chain ``events`` in order and commit them with the new head, atomically.

        Then, with ``sync_head``, rewrite the head file (an fsync); the sink defers that
        until it has told strict-mode waiters their batch is committed.
        """
        if not events:
            return self._head
        if self._conn is None:
            raise RuntimeError("audit store is read-only or closed")
        with self._lock:
            conn = self._conn
            conn.execute("BEGIN IMMEDIATE")
            try:
                # Chain (Python, holds the GIL) and insert (SQLite, releases it) in slices,
                # so the event loop thread never waits long for the GIL behind this thread.
                new_head = self._head
                for i in range(0, len(events), _ROWS_PER_INSERT):
                    rows, new_head = self._chain_rows(events[i : i + _ROWS_PER_INSERT], new_head)
                    self._insert(conn, rows)
                _set_meta(conn, "head", new_head.to_dict())
                conn.execute("COMMIT")
            except BaseException:
                _rollback(conn)
                raise
            self._head = new_head
            if sync_head:
                self._write_head_file()
            return new_head

    def sync_head(self) -> None:
        """Bring the head file up to the committed head (no-op if it already is)."""
        with self._lock:
            if self._file_head != self._head:
                self._write_head_file()

    def _write_head_file(self) -> None:
        try:
            write_head_file(self.head_path, self._head)
            self._file_head = self._head
        except OSError as exc:
            # The events are committed; the file only lags (verify tolerates a lagging file).
            if not self._head_file_error:
                log.error("cannot write audit head file %s: %s", self.head_path, exc)
            self._head_file_error = True
        else:
            self._head_file_error = False

    def purge(self, older_than_days: float, *, now: float | None = None) -> PurgeResult | None:
        """Delete the oldest events (a prefix of the chain) older than the cutoff.

        The prefix ends before the first event newer than the cutoff. In the same transaction
        the checkpoint (last purged seq and hash) is stored and a ``retention_purge`` event is
        appended, so the remaining chain still verifies and records what was removed.
        """
        if self._conn is None:
            raise RuntimeError("audit store is read-only or closed")
        if older_than_days <= 0:
            raise ValueError("older_than_days must be positive")
        now = time.time() if now is None else now
        cutoff = now - older_than_days * 86400.0
        with self._lock:
            conn = self._conn
            conn.execute("BEGIN IMMEDIATE")
            try:
                first, last = conn.execute("SELECT MIN(seq), MAX(seq) FROM events").fetchone()
                if first is None:
                    conn.execute("COMMIT")
                    return None
                newer = conn.execute(
                    "SELECT MIN(seq) FROM events WHERE ts >= ?", (cutoff,)
                ).fetchone()[0]
                upto = last if newer is None else newer - 1
                if upto < first:
                    conn.execute("COMMIT")
                    return None
                (upto_hash,) = conn.execute(
                    "SELECT hash FROM events WHERE seq = ?", (upto,)
                ).fetchone()
                count = conn.execute("DELETE FROM events WHERE seq <= ?", (upto,)).rowcount
                checkpoint = Head(self.chain_id, upto, upto_hash)
                _set_meta(conn, "checkpoint", checkpoint.to_dict())
                event = {
                    "id": new_event_id(),
                    "timestamp": iso(now),
                    "event_type": RETENTION_PURGE,
                    "verdict": None,
                    "reason_code": RETENTION_PURGE,
                    "purged_count": count,
                    "purged_from_seq": first,
                    "purged_to_seq": upto,
                    "purged_to_hash": upto_hash,
                    "cutoff": iso(cutoff),
                    "retention_days": older_than_days,
                }
                rows, new_head = self._chain_rows([event], self._head)
                self._insert(conn, rows)
                _set_meta(conn, "head", new_head.to_dict())
                conn.execute("COMMIT")
            except BaseException:
                _rollback(conn)
                raise
            self._head = new_head
            self._write_head_file()
        log.info("audit retention: purged %d event(s) (seq %d..%d) older than %s",
                 count, first, upto, iso(cutoff))  # fmt: skip
        return PurgeResult(count, first, upto, iso(cutoff), event["id"])

    # -- reading ---------------------------------------------------------------------------

    def _reader(self) -> sqlite3.Connection:
        """A fresh read-only connection (one per call: reads never share the writer's)."""
        uri = f"file:{pathname2url(str(self.path.resolve()))}?mode=ro"
        conn = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA busy_timeout=10000")
        return conn

    def list_events(self, query: EventQuery) -> list[dict[str, Any]]:
        where, params = _where(query)
        sql = f"SELECT body, hash FROM events{where} ORDER BY seq {query.order.upper()}"
        if query.limit is not None:
            sql += " LIMIT ?"
            params.append(query.limit)
        conn = self._reader()
        try:
            return [_event(body, h) for body, h in conn.execute(sql, params)]
        finally:
            conn.close()

    def iter_events(
        self, *, since: float | None = None, until: float | None = None, after_seq: int = 0
    ) -> Iterator[dict[str, Any]]:
        """Events in chain order, read in pages (no transaction held between pages)."""
        return paged(self.list_events, since=since, until=until, after=after_seq, cursor="seq")

    def count(self) -> int:
        conn = self._reader()
        try:
            return conn.execute("SELECT COUNT(*) FROM events").fetchone()[0]
        finally:
            conn.close()

    def verify(self) -> VerifyResult:
        # Read the head file before the snapshot: it is written after each commit, so it can
        # then only lag the snapshot, never lead it.
        file_head = read_head_file(self.head_path)
        conn = self._reader()
        try:
            conn.execute("BEGIN")
            meta = _read_meta(conn)
            chain_id = meta.get("chain_id") or self.chain_id
            cur = conn.execute(f"SELECT {','.join(_COLUMNS)} FROM events ORDER BY seq")
            records = (_record(row) for row in cur)
            return verify(
                records,
                Head.from_dict(meta.get("checkpoint")),
                head=Head.from_dict(meta.get("head")),
                file_head=file_head,
                require_head=True,
                require_file_head=True,
                chain_id=chain_id,
            )
        finally:
            conn.close()

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                if self._file_head != self._head:
                    self._write_head_file()
                with contextlib.suppress(sqlite3.Error):
                    self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                self._conn.close()
                self._conn = None


def open_store(
    state_dir: Path | str,
    *,
    readonly: bool = False,
    database_url: str | None = None,
    instance_id: str | None = None,
) -> AuditStore:
    """The configured audit store: PostgreSQL when ``database_url`` is given (the state dir
    then holds only its outage spool), else SQLite in the state dir."""
    if database_url:
        from keeptrusts.audit.postgres import PostgresAuditStore

        return PostgresAuditStore(
            database_url, state_dir=state_dir, readonly=readonly, instance_id=instance_id
        )
    return SQLiteAuditStore(state_dir, readonly=readonly)


def seal(
    src: Mapping[str, Any],
    *,
    chain_id: str,
    seq: int,
    prev: str,
    now: float,
    scrub: Callable[[dict[str, Any]], None] | None = None,
) -> tuple[dict[str, Any], bytes, str]:
    """Make ``src`` link ``seq`` of a chain: return the event, its canonical body and hash.

    An event that cannot be encoded is replaced by an ``audit_encoding_error`` record in the
    same place, so the log never loses the fact that something happened. ``scrub`` lets a
    store adapt values it cannot hold (e.g. NUL characters in PostgreSQL text).
    """
    ev = _clean(src, now)
    if scrub is not None:
        scrub(ev)
    ev["chain_id"] = chain_id
    ev["seq"] = seq
    ev["prev_hash"] = prev
    try:
        body = canonical_json(ev)
    except Exception as exc:  # never lose the record: keep what can be encoded
        log.error("audit event %s could not be encoded: %r", ev.get("id"), exc)
        ev = {
            "id": str(ev.get("id")),
            "timestamp": str(ev.get("timestamp")),
            "event_type": "audit_encoding_error",
            "error": repr(exc)[:500],
            "chain_id": chain_id,
            "seq": seq,
            "prev_hash": prev,
        }
        if scrub is not None:
            scrub(ev)
        body = canonical_json(ev)
    return ev, body, chain_hash(prev, body)


def _clean(src: Mapping[str, Any], now: float) -> dict[str, Any]:
    if src.__class__ is not dict and not isinstance(src, Mapping):
        # A caller bug (e.g. a request context instead of its event): keep a trace of it
        # rather than block the log on a batch that can never be written.
        log.error("audit sink got a %s instead of an event dict", type(src).__name__)
        src = {"event_type": "audit_encoding_error", "error": f"not an event: {type(src)!r}"}
    ev = dict(src)
    ev.pop("hash", None)
    if ev.keys() & FORBIDDEN_KEYS:  # (cheaper than FORBIDDEN_KEYS.isdisjoint(ev))
        dropped = sorted(k for k in ev if k in FORBIDDEN_KEYS)
        for k in dropped:
            del ev[k]
        log.error("audit event %s carried forbidden fields %s; dropped", ev.get("id"), dropped)
    if not isinstance(ev.get("id"), str):
        ev["id"] = new_event_id()
    if not isinstance(ev.get("timestamp"), str):
        ev["timestamp"] = iso(now)
    return ev


def _where(q: EventQuery) -> tuple[str, list[Any]]:
    clauses: list[str] = []
    params: list[Any] = []
    for clause, value in (
        ("ts >= ?", q.since),
        ("ts <= ?", q.until),
        ("verdict = ?", q.verdict),
        ("model = ?", q.model),
        ("seq > ?", q.after_seq),
        ("seq < ?", q.before_seq),
    ):
        if value is not None:
            clauses.append(clause)
            params.append(value)
    return (" WHERE " + " AND ".join(clauses) if clauses else ""), params


def _event(body: bytes, h: str) -> dict[str, Any]:
    ev = orjson.loads(body)
    ev["hash"] = h
    return ev


def _record(row: tuple[Any, ...]) -> Record:
    """A ``Record`` from a row in ``_COLUMNS`` order, with its indexed copies as columns."""
    seq, chain_id = row[0], row[1]
    columns = dict(zip(_COLUMNS[2:12], row[2:12], strict=True))
    body = row[12]
    if isinstance(body, str):
        body = body.encode()
    return Record(seq, chain_id, row[13], row[14], body, columns)


def _read_meta(conn: sqlite3.Connection) -> dict[str, Any]:
    try:
        rows = conn.execute("SELECT key, value FROM meta").fetchall()
    except sqlite3.OperationalError:
        return {}
    out: dict[str, Any] = {}
    for k, v in rows:
        try:
            out[k] = orjson.loads(v)
        except orjson.JSONDecodeError:
            out[k] = v
    return out


def _set_meta(conn: sqlite3.Connection, key: str, value: Any) -> None:
    conn.execute(
        "INSERT INTO meta(key, value) VALUES(?, ?) "
        "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
        (key, orjson.dumps(value).decode()),
    )


def _rollback(conn: sqlite3.Connection) -> None:
    with contextlib.suppress(sqlite3.Error):
        conn.execute("ROLLBACK")
