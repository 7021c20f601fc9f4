"""Audit insert throughput on PostgreSQL: batched COPY per chain, one or two writers.

    python bench/pg_audit_cost.py [--events 50000] [--batch 512]
                                  [--admin-url postgresql://postgres@127.0.0.1:5432/postgres]

Creates a scratch database (``kt_bench_<random>``) on the server behind ``--admin-url``,
migrates it, and measures with real decision events (the same as ``bench/audit_cost.py``):

* ``store.append`` in batches of ``--batch`` events (the sink's ``max_batch``), one writer:
  chaining (sha256, canonical JSON) plus one transaction with one COPY per batch;
* the same through the ``AuditSink`` (``submit`` as fast as possible, until all committed);
* two writer processes at once, each its own chain (no shared row, no global lock);
* the outage path: events spooled to local disk, then drained when the database returns;
* for reference, the SQLite store on the same events.

The database is dropped afterwards.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import tempfile
import time
import uuid
from pathlib import Path

import psycopg
from audit_cost import sample_event

from keeptrusts.audit.pgdb import connect, migrate
from keeptrusts.audit.postgres import PostgresAuditStore
from keeptrusts.audit.sink import AuditSink
from keeptrusts.audit.store import SQLiteAuditStore


def _append_all(store, events: list[dict], batch: int) -> float:  # type: ignore[no-untyped-def]
    start = time.perf_counter()
    for i in range(0, len(events), batch):
        store.append(events[i : i + batch])
    return time.perf_counter() - start


def bench_append(url: str, root: Path, events: list[dict], batch: int) -> float:
    store = PostgresAuditStore(url, state_dir=root / "append")
    elapsed = _append_all(store, events, batch)
    store.close()
    return len(events) / elapsed


def bench_sink(url: str, root: Path, events: list[dict], batch: int) -> float:
    sink = AuditSink(PostgresAuditStore(url, state_dir=root / "sink"), max_batch=batch)
    start = time.perf_counter()
    for ev in events:
        sink.submit(ev)
    sink.flush(600)
    elapsed = time.perf_counter() - start
    sink.close()
    return len(events) / elapsed


def _writer(url: str, root: str, n: int, batch: int, go, out) -> None:  # type: ignore[no-untyped-def]
    events = [sample_event(i) for i in range(n)]
    store = PostgresAuditStore(url, state_dir=Path(root))
    go.wait()
    out.put(_append_all(store, events, batch))
    store.close()


def bench_two_writers(url: str, root: Path, n: int, batch: int) -> tuple[float, float]:
    ctx = mp.get_context("spawn")
    go, out = ctx.Event(), ctx.Queue()
    procs = [
        ctx.Process(target=_writer, args=(url, str(root / f"w{i}"), n, batch, go, out))
        for i in range(2)
    ]
    for p in procs:
        p.start()
    time.sleep(2.0)  # let both build their events and connect
    start = time.perf_counter()
    go.set()
    times = [out.get(timeout=600) for _ in procs]
    wall = time.perf_counter() - start
    for p in procs:
        p.join()
    return 2 * n / wall, n / max(times)


def bench_spool(admin, name: str, url: str, root: Path, events: list[dict], batch: int):  # type: ignore[no-untyped-def]
    store = PostgresAuditStore(url, state_dir=root / "spool")
    admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
    admin.execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,)
    )
    try:
        spool_rate = len(events) / _append_all(store, events, batch)
    finally:
        admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
    start = time.perf_counter()
    store._retry_at = 0.0
    while store.spooled:
        store.sync_head()
    drain_rate = len(events) / (time.perf_counter() - start)
    ok = store.verify().ok
    store.close()
    return spool_rate, drain_rate, ok


def bench_sqlite(root: Path, events: list[dict], batch: int) -> float:
    store = SQLiteAuditStore(root / "sqlite")
    elapsed = _append_all(store, events, batch)
    store.close()
    return len(events) / elapsed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=50_000)
    ap.add_argument("--batch", type=int, default=512)
    ap.add_argument("--admin-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    args = ap.parse_args()
    events = [sample_event(i) for i in range(args.events)]
    admin = psycopg.connect(args.admin_url, autocommit=True)
    name = f"kt_bench_{uuid.uuid4().hex[:10]}"
    admin.execute(f'CREATE DATABASE "{name}"')
    info = admin.info
    url = f"postgresql://{info.user}@{info.host}:{info.port}/{name}"
    try:
        with connect(url) as conn:
            migrate(conn)
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp)
            print(f"{args.events} decision events, batches of {args.batch}, PostgreSQL "
                  f"{admin.info.server_version // 10000} at {info.host}:{info.port}")  # fmt: skip
            rate = bench_append(url, root, events, args.batch)
            print(f"store.append (COPY per batch), 1 writer: {rate:10,.0f} events/s")
            rate = bench_sink(url, root, events, args.batch)
            print(f"AuditSink submit -> committed, 1 writer: {rate:10,.0f} events/s")
            total, each = bench_two_writers(url, root, args.events // 2, args.batch)
            print(f"2 writer processes (2 chains):           {total:10,.0f} events/s "
                  f"in total ({each:,.0f} each)")  # fmt: skip
            spool, drain, ok = bench_spool(admin, name, url, root, events, args.batch)
            print(f"outage: spool to local disk (fsync):     {spool:10,.0f} events/s")
            print(f"        drain into PostgreSQL:           {drain:10,.0f} events/s "
                  f"(verify {'ok' if ok else 'FAILED'})")  # fmt: skip
            rate = bench_sqlite(root, events, args.batch)
            print(f"reference: SQLite store.append:          {rate:10,.0f} events/s")
            with connect(url) as conn:
                size = conn.execute(
                    "SELECT pg_size_pretty(sum(pg_total_relation_size(c.oid))), count(*) "
                    "FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                    "WHERE i.inhparent = 'audit_events'::regclass"
                ).fetchone()
                rows = conn.execute("SELECT count(*) FROM audit_events").fetchone()[0]
            print(f"stored: {rows:,} rows, {size[0]} with indexes")
    finally:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


if __name__ == "__main__":
    main()
