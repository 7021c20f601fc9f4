"""The PostgreSQL audit store: many gateways append to one database without a global lock.

Each gateway process owns one hash chain (a new ``chain_id`` per process start, registered
in ``audit_chains`` with its ``instance_id``), so appends never contend: a batch is one
transaction with one ``COPY`` into ``audit_events`` and one UPDATE of the process's own
``audit_chains`` row (its head). Verification walks every chain (:meth:`verify`).

Retention drops whole day partitions (no ``DELETE``, nothing to VACUUM): in the same
transaction every chain's checkpoint (last dropped ``seq`` and ``hash``) is stored and a
``retention_purge`` event recording all checkpoints is appended to the purging process's
chain, so what remains still verifies and a forged checkpoint is caught.

Outages: when the database cannot be reached, batches are chained as usual and written to
a local spool (:mod:`keeptrusts.audit.pg_spool`, fsync'd), and drained in order when the
database returns (retries back off from 0.5 s to 5 s). ``degraded`` is true meanwhile.
The hash chain is computed in the process, so nothing about it depends on when the rows
reach the database; a batch whose commit outcome is unknown is spooled and skipped at
drain time if it did land.

All database I/O happens on the caller's thread: the sink's writer thread for appends,
purges and drains, a worker thread (or the CLI) for reads, which use their own short-lived
connections. Nothing here runs on the event loop.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from keeptrusts.audit.chain import (
    GENESIS,
    RETENTION_PURGE,
    Head,
    Record,
    VerifyResult,
    index_columns,
    parse_ts,
    verify,
)
from keeptrusts.audit.event import new_event_id
from keeptrusts.audit.pg_spool import Spool
from keeptrusts.audit.pgdb import (
    MAX_ROWS_PER_TRANSACTION,
    PARTITION_LOCK,
    PARTITIONS_AHEAD,
    POS_SHIFT,
    DatabaseError,
    check_schema,
    connect,
    day_of,
    days_from,
    ensure_partitions,
    horizon_sql,
    is_outage,
    list_partitions,
    reading,
    redact_url,
)
from keeptrusts.audit.query import EventQuery, iso, paged
from keeptrusts.audit.store import seal

log = logging.getLogger("keeptrusts.audit")

_RETRY_MIN, _RETRY_MAX = 0.5, 5.0
DRAIN_CHUNK = 2_000  # spooled rows per drain transaction
DRAIN_BUDGET = 20_000  # spooled rows drained per call before new work is looked at
_DAY = 86400.0
# Rows are (chain_id, seq, logged_at, ts, <8 index columns>, body, prev_hash, hash).
_INDEXED = ("id", "timestamp", "event_type", "verdict", "reason_code", "model", "target_id",
            "role", "request_id")  # fmt: skip
_COPY = (
    "COPY audit_events (pos, chain_id, seq, logged_at, ts, "
    + ", ".join(_INDEXED)
    + ", body, prev_hash, hash) FROM STDIN"
)
_VERIFY_SELECT = (
    "SELECT seq, chain_id, prev_hash, hash, body, ts, "
    + ", ".join(_INDEXED)
    + " FROM audit_events WHERE chain_id = %s ORDER BY seq"
)
_UPSERT_HEAD = (
    "INSERT INTO audit_chains (chain_id, instance_id, head_seq, head_hash) "
    "VALUES (%s, %s, %s, %s) ON CONFLICT (chain_id) DO UPDATE "
    "SET head_seq = EXCLUDED.head_seq, head_hash = EXCLUDED.head_hash"
)
_CHAIN_FIELDS = ("ok", "checked", "first_seq", "last_seq", "last_hash", "code", "problem",
                 "first_bad_seq", "first_bad_id")  # fmt: skip
# Fields copied into columns; a NUL in them cannot be stored in PostgreSQL text.
_TEXT_FIELDS = ("id", "timestamp", "event_type", "verdict", "reason_code", "model",
                "target_id", "request_id")  # fmt: skip


@dataclass(frozen=True, slots=True)
class PgPurgeResult:
    count: int
    from_seq: int
    to_seq: int
    cutoff: str
    event_id: str
    partitions: tuple[str, ...] = ()


@dataclass(slots=True)
class FleetVerifyResult(VerifyResult):
    """The result over every chain: the first failing chain's details at the top level."""

    chains: list[dict[str, Any]] = field(default_factory=list)

    def summary(self) -> str:
        if not self.ok:
            where = []
            if self.first_bad_id:
                where.append(f"event {self.first_bad_id}")
            if self.first_bad_seq is not None:
                where.append(f"seq {self.first_bad_seq}")
            at = f" at {' '.join(where)}" if where else ""
            return f"FAILED{at}: {self.problem} (chain {self.chain_id}; {len(self.chains)} chains)"
        lines = [f"ok: {self.checked} events verified in {len(self.chains)} chain(s)"]
        for c in self.chains:
            head = f"head seq {c['last_seq']} hash {c['last_hash']}" if c["last_seq"] else "empty"
            lines.append(
                f"  chain {c['chain_id']} ({c['instance_id']}): {c['checked']} events, {head}"
            )
        return "\n".join(lines)


class PostgresAuditStore:
    """The shared audit log. Thread-safe; writes are serialised by an internal lock.

    ``readonly=True`` (the CLI) only reads; otherwise ``state_dir`` holds the outage spool.
    ``clock`` (epoch seconds) is for tests.
    """

    backend = "postgresql"

    def __init__(
        self,
        url: str,
        *,
        state_dir: Path | str | None = None,
        readonly: bool = False,
        instance_id: str | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.url = url
        self.location = redact_url(url)
        self.dir = Path(state_dir) if state_dir is not None else None
        self.readonly = readonly
        self.instance_id = instance_id or f"{socket.gethostname()}:{os.getpid()}"
        self._clock = clock
        self._lock = threading.RLock()
        self._conn: Any = None
        self.chain_id = ""
        self._head = Head("", 0, GENESIS)
        self.last_error: str | None = None
        self._down_since: float | None = None
        self._retry_at = 0.0
        self._retry_delay = _RETRY_MIN
        self._closed = False
        if readonly:
            with reading(url) as conn:
                check_schema(conn, url)
            return
        if self.dir is None:
            raise ValueError("a writable PostgreSQL audit store needs a state dir for its spool")
        conn = connect(url, application_name="keeptrusts-audit")
        try:
            check_schema(conn, url)
            self.chain_id = "chn_" + os.urandom(8).hex()
            conn.execute(
                "INSERT INTO audit_chains (chain_id, instance_id, hostname, pid, head_seq, "
                "head_hash) VALUES (%s, %s, %s, %s, 0, %s)",
                (self.chain_id, self.instance_id, socket.gethostname(), os.getpid(), GENESIS),
            )
            self._partitions = ensure_partitions(
                conn, days_from(day_of(clock()), PARTITIONS_AHEAD + 1)
            )
        except BaseException:
            conn.close()
            raise
        self._conn = conn
        self._head = Head(self.chain_id, 0, GENESIS)
        self._last_logged = 0.0
        self._spool = Spool(self.dir, self.chain_id)
        self._orphans = Spool.orphans(self.dir, exclude=self.chain_id)
        if self._orphans:
            log.warning(
                "found %d audit event(s) spooled by earlier process(es) (chains %s); "
                "draining them into PostgreSQL",
                sum(s.pending for s in self._orphans),
                ", ".join(s.chain_id for s in self._orphans),
            )
        log.info(
            "audit log: PostgreSQL %s, chain %s (instance %s)",
            self.location,
            self.chain_id,
            self.instance_id,
        )

    # -- state -----------------------------------------------------------------------------

    def head(self) -> Head:
        return self._head

    @property
    def spooled(self) -> int:
        """Events waiting in the local spool (this chain's and any taken over)."""
        if self.readonly:
            return 0
        return self._spool.pending + sum(s.pending for s in self._orphans)

    @property
    def degraded(self) -> bool:
        """True while the database is unreachable or spooled events are not drained."""
        return self._down_since is not None or self.spooled > 0

    def health(self) -> dict[str, Any]:
        return {
            "backend": self.backend,
            "database": self.location,
            "chain_id": self.chain_id,
            "instance_id": self.instance_id,
            "connected": self._down_since is None,
            "down_since": iso(self._down_since) if self._down_since else None,
            "spooled_events": self.spooled,
            "last_error": self.last_error,
        }

    # -- chaining --------------------------------------------------------------------------

    def _chain_rows(
        self, events: Sequence[Mapping[str, Any]], head: Head
    ) -> tuple[list[list[Any]], Head]:
        seq, prev = head.seq, head.hash
        cid = self.chain_id
        now = self._clock()
        logged = max(now, self._last_logged)
        rows: list[list[Any]] = []
        for src in events:
            seq += 1
            ev, body, h = seal(src, chain_id=cid, seq=seq, prev=prev, now=now, scrub=_strip_nul)
            cols = index_columns(ev)
            ts = parse_ts(cols["timestamp"])
            ts = now if ts is None else ts
            # Never before the event, nor before the chain's previous row (day order per
            # chain); an absurd future timestamp does not drag the chain along.
            logged = max(logged, min(ts, now + _DAY))
            rows.append(
                [cid, seq, logged, ts, *(cols[c] for c in _INDEXED), body.decode(), prev, h]
            )
            prev = h
        self._last_logged = logged
        return rows, Head(cid, seq, prev)

    # -- writing ---------------------------------------------------------------------------

    def append(self, events: Sequence[Mapping[str, Any]], *, sync_head: bool = True) -> Head:
        """Chain ``events`` and commit them with the new head, atomically; while the
        database is unreachable (or earlier rows still wait in the spool), spool them."""
        if not events:
            return self._head
        if self.readonly or self._closed:
            raise RuntimeError("audit store is read-only or closed")
        if len(events) >= MAX_ROWS_PER_TRANSACTION:
            raise ValueError(f"at most {MAX_ROWS_PER_TRANSACTION - 1} events per append")
        with self._lock:
            if self.spooled:
                self._drain()
            rows, new_head = self._chain_rows(events, self._head)
            if self._spool.pending or not self._may_try():
                self._spool.append(rows)
            else:
                try:
                    self._insert(rows, new_head)
                except Exception as exc:
                    if not _outage(exc):
                        raise  # a bad row: the transaction rolled back, the sink isolates it
                    self._went_down(exc)
                    # The commit may or may not have happened: the drain skips rows the
                    # database already has.
                    self._spool.append(rows)
                else:
                    if self._down_since is not None:
                        self._came_back()
            self._head = new_head
            return new_head

    def sync_head(self) -> None:
        """Called by the sink when idle: drain the spool (or probe the database while it is
        down), and make the partitions of the coming days."""
        with self._lock:
            if self._closed or self.readonly:
                return
            if self.spooled:
                self._drain()
                return
            if self._down_since is not None:
                if self._may_try():
                    try:
                        self._writer()
                    except Exception as exc:
                        self._went_down(exc)
                    else:
                        self._came_back()
                return
            ahead = days_from(day_of(self._clock()), PARTITIONS_AHEAD + 1)
            if not set(ahead) <= self._partitions:
                try:
                    self._partitions |= ensure_partitions(self._writer(), ahead)
                except Exception as exc:
                    log.warning("cannot create the coming audit partitions yet: %r", exc)

    def _writer(self) -> Any:
        conn = self._conn
        if conn is None or conn.closed or conn.broken:
            self._drop_broken_conn()
            conn = connect(self.url, application_name="keeptrusts-audit")
            try:
                check_schema(conn, self.url)
            except BaseException:
                conn.close()
                raise
            self._conn = conn
        return conn

    def _drop_broken_conn(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()

    def _insert(self, rows: list[list[Any]], new_head: Head) -> None:
        conn = self._writer()
        days = {day_of(r[2]) for r in rows}
        if not days <= self._partitions:
            self._partitions |= ensure_partitions(conn, days)
        with conn.transaction():
            self._copy_rows(conn, rows, new_head)

    def _copy_rows(self, conn: Any, rows: list[list[Any]], new_head: Head) -> None:
        """Inside a transaction: COPY ``rows`` and set their chain's head."""
        (xid,) = conn.execute("SELECT pg_current_xact_id()::text::bigint").fetchone()
        base = xid << POS_SHIFT
        with conn.cursor() as cur, cur.copy(_COPY) as copy:
            for i, r in enumerate(rows):
                copy.write_row((base | i, r[0], r[1], datetime.fromtimestamp(r[2], UTC), *r[3:]))
        instance = self.instance_id if new_head.chain_id == self.chain_id else "recovered"
        conn.execute(_UPSERT_HEAD, (new_head.chain_id, instance, new_head.seq, new_head.hash))

    # -- outages and the spool -------------------------------------------------------------

    def _may_try(self) -> bool:
        return self._down_since is None or time.monotonic() >= self._retry_at

    def _went_down(self, exc: BaseException) -> None:
        text = str(exc).strip()
        self.last_error = f"{type(exc).__name__}: {text.splitlines()[0] if text else ''}"
        self._drop_broken_conn()
        if self._down_since is None:
            self._down_since = self._clock()
            self._retry_delay = _RETRY_MIN
            log.error(
                "AUDIT DATABASE UNAVAILABLE (%s): spooling audit events to %s until "
                "PostgreSQL %s is back",
                self.last_error,
                self.dir,
                self.location,
            )
        else:
            self._retry_delay = min(_RETRY_MAX, self._retry_delay * 2)
        self._retry_at = time.monotonic() + self._retry_delay

    def _came_back(self) -> None:
        """Connected again (the spool may still be draining)."""
        if self._down_since is not None:
            log.warning(
                "audit database %s is back after %.1fs (%d spooled event(s) left to drain)",
                self.location,
                self._clock() - self._down_since,
                self.spooled,
            )
        self._down_since = None
        self._retry_delay = _RETRY_MIN

    def _drain(self, budget: int = DRAIN_BUDGET) -> None:
        """Move spooled rows into the database, oldest first, up to ``budget`` rows."""
        if not self._may_try():
            return
        try:
            for orphan in list(self._orphans):
                budget -= self._drain_spool(orphan, budget)
                if orphan.pending:
                    return
                self._writer().execute(
                    "UPDATE audit_chains SET closed_at = now() WHERE chain_id = %s "
                    "AND closed_at IS NULL",
                    (orphan.chain_id,),
                )
                orphan.close(remove=True)
                self._orphans.remove(orphan)
                log.warning("drained the audit spool of chain %s", orphan.chain_id)
            self._drain_spool(self._spool, budget)
        except Exception as exc:
            if not _outage(exc):
                log.critical("cannot drain the audit spool (will retry): %r", exc)
            self._went_down(exc)
            return
        self._came_back()
        if not self.spooled:
            log.info("audit spool drained")

    def _drain_spool(self, spool: Spool, budget: int) -> int:
        """Drain up to ``budget`` rows of ``spool``; return how many were consumed."""
        conn = self._writer()
        row = conn.execute(
            "SELECT head_seq FROM audit_chains WHERE chain_id = %s", (spool.chain_id,)
        ).fetchone()
        stored = row[0] if row else 0
        done = 0
        while spool.pending and done < budget:
            batch = spool.peek(min(DRAIN_CHUNK, budget - done))
            if not batch:
                break
            fresh = [r for r in batch if r and r[1] > stored]
            if fresh:
                if fresh[0][1] != stored + 1:
                    log.error(
                        "audit spool of chain %s resumes at seq %d but the database head "
                        "is seq %d: verify will report the gap",
                        spool.chain_id,
                        fresh[0][1],
                        stored,
                    )
                days = {day_of(r[2]) for r in fresh}
                if not days <= self._partitions:
                    self._partitions |= ensure_partitions(conn, days)
                last = fresh[-1]
                with conn.transaction():
                    self._copy_rows(conn, fresh, Head(spool.chain_id, last[1], last[-1]))
                stored = last[1]
            spool.consume(len(batch))
            done += len(batch)
        return done

    # -- retention -------------------------------------------------------------------------

    def purge(self, older_than_days: float, *, now: float | None = None) -> PgPurgeResult | None:
        """Drop the day partitions that hold only events older than the cutoff.

        In one transaction (``lock_timeout`` 2 s, so writers never queue long behind the
        brief exclusive lock a DROP takes): store each chain's checkpoint, append one
        ``retention_purge`` event recording every chain's checkpoint to this chain, drop the
        partitions. Deferred (None) while the database is down or the spool is not drained.
        """
        if self.readonly or self._closed:
            raise RuntimeError("audit store is read-only or closed")
        if older_than_days <= 0:
            raise ValueError("older_than_days must be positive")
        now = self._clock() if now is None else now
        cutoff = now - older_than_days * _DAY
        cutoff_day = day_of(cutoff)
        with self._lock:
            if self.spooled or not self._may_try():
                return None
            conn = self._writer()
            if not any(d < cutoff_day for d in list_partitions(conn)):
                return None
            today = {day_of(now)}
            if not today <= self._partitions:
                self._partitions |= ensure_partitions(conn, today)
            with conn.transaction():
                conn.execute("SET LOCAL lock_timeout = '2s'")
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (PARTITION_LOCK,))
                parts = {d: n for d, n in list_partitions(conn).items() if d < cutoff_day}
                if not parts:
                    return None
                names = [parts[d] for d in sorted(parts)]
                conn.execute(f"LOCK TABLE {', '.join(names)} IN SHARE MODE")
                dropped = self._checkpoints(conn, names)
                retired = conn.execute(
                    "DELETE FROM audit_chains WHERE closed_at IS NOT NULL "
                    "AND checkpoint_seq = head_seq AND chain_id <> %s "
                    "RETURNING chain_id, head_seq, head_hash",
                    (self.chain_id,),
                ).fetchall()
                recorded = conn.execute(
                    "SELECT chain_id, checkpoint_seq, checkpoint_hash FROM audit_chains "
                    "WHERE checkpoint_seq IS NOT NULL ORDER BY chain_id"
                ).fetchall()
                count = sum(n for _, _, n in dropped.values())
                event = {
                    "id": new_event_id(),
                    "timestamp": iso(now),
                    "event_type": RETENTION_PURGE,
                    "verdict": None,
                    "reason_code": RETENTION_PURGE,
                    "purged_count": count,
                    "partitions": names,
                    "cutoff": iso(cutoff),
                    "retention_days": older_than_days,
                    "chains": {
                        cid: {"purged_to_seq": s, "purged_to_hash": h} for cid, s, h in recorded
                    },
                    "retired_chains": {
                        cid: {"head_seq": s, "head_hash": h} for cid, s, h in retired
                    },
                }
                rows, new_head = self._chain_rows([event], self._head)
                self._copy_rows(conn, rows, new_head)
                conn.execute(f"DROP TABLE {', '.join(names)}")
            self._partitions -= set(parts)
            self._head = new_head
        own = dropped.get(self.chain_id)
        log.info(
            "audit retention: dropped partition(s) %s (%d event(s) older than %s)",
            ", ".join(names),
            count,
            iso(cutoff),
        )
        return PgPurgeResult(
            count,
            own[0] if own else 0,
            own[1] if own else 0,
            iso(cutoff),
            event["id"],
            tuple(names),
        )

    @staticmethod
    def _checkpoints(conn: Any, names: list[str]) -> dict[str, tuple[int, int, int]]:
        """For each registered chain with rows in the partitions ``names``: store the new
        checkpoint; return ``{chain: (first seq, last seq, count)}`` of what is dropped."""
        out: dict[str, tuple[int, int, int]] = {}
        chains = conn.execute("SELECT chain_id, checkpoint_seq FROM audit_chains").fetchall()
        for cid, checkpoint in chains:
            lo = hi = None
            for name in names:
                a, b = conn.execute(
                    f"SELECT min(seq), max(seq) FROM {name} WHERE chain_id = %s", (cid,)
                ).fetchone()
                if a is not None:
                    lo = a if lo is None else min(lo, a)
                if b is not None:
                    hi = b if hi is None else max(hi, b)
            if hi is None:
                continue
            out[cid] = (lo, hi, hi - lo + 1)
            if checkpoint is not None and checkpoint >= hi:
                continue
            (h,) = conn.execute(
                "SELECT hash FROM audit_events WHERE chain_id = %s AND seq = %s LIMIT 1",
                (cid, hi),
            ).fetchone()
            conn.execute(
                "UPDATE audit_chains SET checkpoint_seq = %s, checkpoint_hash = %s "
                "WHERE chain_id = %s",
                (hi, h, cid),
            )
        return out

    # -- reading ---------------------------------------------------------------------------

    def list_events(self, query: EventQuery) -> list[dict[str, Any]]:
        """Events across all chains, newest written first (or oldest with ``order="asc"``).

        ``after_seq``/``before_seq`` are cursors over ``pos``, which each returned event
        carries (``seq`` numbers each chain on its own). Paged reads (a cursor, or
        ascending order) stop at the horizon of running transactions, so paging never skips
        a row that commits late.
        """
        where: list[str] = []
        params: list[Any] = []
        if query.since is not None:
            # logged_at >= ts for every row: lets PostgreSQL skip older partitions.
            where.append("ts >= %s AND logged_at >= to_timestamp(%s)")
            params += [query.since, query.since]
        for clause, value in (
            ("ts <= %s", query.until),
            ("verdict = %s", query.verdict),
            ("model = %s", query.model),
            ("pos > %s", query.after_seq),
            ("pos < %s", query.before_seq),
        ):
            if value is not None:
                where.append(clause)
                params.append(value)
        if query.after_seq is not None or query.before_seq is not None or query.order == "asc":
            where.append(f"pos < {horizon_sql()}")
        sql = "SELECT body, hash, pos FROM audit_events"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += f" ORDER BY pos {query.order.upper()}"
        if query.limit is not None:
            sql += " LIMIT %s"
            params.append(query.limit)
        with reading(self.url) as conn:
            return [_event(body, h, pos) for body, h, pos in conn.execute(sql, params)]

    def iter_events(
        self, *, since: float | None = None, until: float | None = None, after_seq: int = 0
    ) -> Iterator[dict[str, Any]]:
        """Events in ``pos`` order (each chain in ``seq`` order), read in pages."""
        return paged(self.list_events, since=since, until=until, after=after_seq, cursor="pos")

    def count(self) -> int:
        with reading(self.url) as conn:
            return conn.execute("SELECT count(*) FROM audit_events").fetchone()[0]

    def chains(self) -> list[dict[str, Any]]:
        with reading(self.url) as conn, conn.cursor() as cur:
            cur.execute(
                "SELECT chain_id, instance_id, hostname, pid, started_at, closed_at, head_seq, "
                "head_hash, checkpoint_seq FROM audit_chains ORDER BY started_at, chain_id"
            )
            names = [d.name for d in cur.description]
            return [dict(zip(names, row, strict=True)) for row in cur]

    def verify(self) -> FleetVerifyResult:
        """Verify every chain in one consistent snapshot; stop at the first bad chain."""
        with reading(self.url) as conn:
            conn.autocommit = False
            # One snapshot for every chain, its head and checkpoint.
            conn.isolation_level = _psycopg_isolation().REPEATABLE_READ
            conn.read_only = True
            try:
                return self._verify(conn)
            finally:
                conn.rollback()

    def _verify(self, conn: Any) -> FleetVerifyResult:
        chains = conn.execute(
            "SELECT chain_id, instance_id, head_seq, head_hash, checkpoint_seq, "
            "checkpoint_hash FROM audit_chains ORDER BY started_at, chain_id"
        ).fetchall()
        recorded: dict[str, set[tuple[int, str]]] = {}
        seen = 0
        total = FleetVerifyResult(ok=True, checked=0)

        def records(cid: str) -> Iterator[Record]:
            nonlocal seen
            with conn.cursor(name=f"verify_{len(total.chains)}") as cur:
                cur.itersize = 2000
                cur.execute(_VERIFY_SELECT, (cid,))
                for row in cur:
                    seen += 1
                    columns = dict(zip(("ts", *_INDEXED), row[5:], strict=True))
                    if row[8] == RETENTION_PURGE:
                        _collect_checkpoints(row[4], recorded)
                    yield Record(row[0], row[1], row[2], row[3], row[4].encode(), columns)

        for cid, instance, head_seq, head_hash, cp_seq, cp_hash in chains:
            checkpoint = Head(cid, cp_seq, cp_hash) if cp_seq is not None else None
            res = verify(
                records(cid),
                checkpoint,
                head=Head(cid, head_seq, head_hash),
                require_head=True,
                trust_checkpoint=True,
                chain_id=cid,
            )
            total.chains.append(
                {
                    "chain_id": cid,
                    "instance_id": instance,
                    "checkpoint_seq": cp_seq,
                    **{k: getattr(res, k) for k in _CHAIN_FIELDS},
                }
            )
            total.checked += res.checked
            if not res.ok:
                return _failed(total, res)
        for c in total.chains:
            cp_seq = c["checkpoint_seq"]
            if cp_seq is None:
                continue
            cp_hash = next(r[5] for r in chains if r[0] == c["chain_id"])
            if (cp_seq, cp_hash) not in recorded.get(c["chain_id"], set()):
                bad = VerifyResult(
                    ok=False,
                    checked=c["checked"],
                    chain_id=c["chain_id"],
                    code="checkpoint_unrecorded",
                    problem=(
                        f"retention checkpoint at seq {cp_seq} is not recorded by any "
                        "retention_purge event (checkpoint forged?)"
                    ),
                    first_bad_seq=c["first_seq"],
                )
                c.update(ok=False, code=bad.code, problem=bad.problem)
                return _failed(total, bad)
        (rows,) = conn.execute("SELECT count(*) FROM audit_events").fetchone()
        if rows != seen:
            stray = conn.execute(
                "SELECT chain_id, seq, id FROM audit_events WHERE NOT (chain_id = ANY(%s)) LIMIT 1",
                ([c[0] for c in chains],),
            ).fetchone()
            if stray is not None:
                bad = VerifyResult(
                    ok=False,
                    checked=total.checked,
                    chain_id=stray[0],
                    code="unregistered_chain",
                    problem=(
                        f"events of chain {stray[0]!r}, which is not registered in "
                        "audit_chains (events inserted outside the gateway)"
                    ),
                    first_bad_seq=stray[1],
                    first_bad_id=stray[2],
                )
                return _failed(total, bad)
        if len(total.chains) == 1:
            c = total.chains[0]
            total.chain_id, total.last_seq, total.last_hash = (
                c["chain_id"],
                c["last_seq"],
                c["last_hash"],
            )
        return total

    # -- shutdown --------------------------------------------------------------------------

    def close(self) -> None:
        """Drain what the database will take, mark the chain closed, release the spool."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            if self.readonly:
                return
            if self.spooled:
                self._retry_at = 0.0
                self._drain(budget=1 << 62)
            if not self._spool.pending and self._down_since is None:
                with contextlib.suppress(Exception):
                    self._writer().execute(
                        "UPDATE audit_chains SET closed_at = now() WHERE chain_id = %s",
                        (self.chain_id,),
                    )
            elif self.spooled:
                log.error(
                    "closing with %d audit event(s) still spooled in %s: the next gateway "
                    "started on this state dir drains them",
                    self.spooled,
                    self.dir,
                )
            self._drop_broken_conn()
            self._spool.close(remove=True)
            for orphan in self._orphans:
                orphan.close()


def _psycopg_isolation() -> Any:
    from psycopg import IsolationLevel

    return IsolationLevel


def _outage(exc: BaseException) -> bool:
    return is_outage(exc) or isinstance(exc, DatabaseError)


def _strip_nul(ev: dict[str, Any]) -> None:
    """PostgreSQL text cannot hold NUL: replace it in the fields copied into columns."""
    for key in _TEXT_FIELDS:
        v = ev.get(key)
        if isinstance(v, str) and "\x00" in v:
            ev[key] = v.replace("\x00", "\ufffd")
    ident = ev.get("identity")
    if isinstance(ident, dict) and isinstance(ident.get("role"), str) and "\x00" in ident["role"]:
        ev["identity"] = {**ident, "role": ident["role"].replace("\x00", "\ufffd")}


def _event(body: str, h: str, pos: int) -> dict[str, Any]:
    ev = orjson.loads(body)
    ev["hash"] = h
    ev["pos"] = pos
    return ev


def _collect_checkpoints(body: str, recorded: dict[str, set[tuple[int, str]]]) -> None:
    try:
        chains = orjson.loads(body).get("chains")
    except (orjson.JSONDecodeError, AttributeError):
        return
    if not isinstance(chains, dict):
        return
    for cid, cp in chains.items():
        if isinstance(cp, dict):
            recorded.setdefault(cid, set()).add((cp.get("purged_to_seq"), cp.get("purged_to_hash")))


def _failed(total: FleetVerifyResult, bad: VerifyResult) -> FleetVerifyResult:
    total.ok = False
    for name in ("code", "problem", "chain_id", "first_bad_seq", "first_bad_id", "first_seq",
                 "last_seq", "last_hash"):  # fmt: skip
        setattr(total, name, getattr(bad, name))
    return total
