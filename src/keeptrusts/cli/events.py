"""``kt events list|tail|export|verify``: read and check the audit log.

By default the commands read the local log (``<state_dir>/audit.db``, read-only). With
``--gateway URL``, or after ``kt auth login``, they read the running gateway's admin API
instead (``--local`` forces the local log). With ``--database-url`` (or
``$KEEPTRUSTS_DATABASE_URL``, unless ``--local``) they read the PostgreSQL audit log that
a fleet of gateways shares: every chain, and ``verify`` checks each of them.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import os
import sqlite3
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any, Protocol, TextIO

import orjson

from keeptrusts.audit.chain import Head, VerifyResult, record_from_event, verify
from keeptrusts.audit.pgdb import DatabaseError
from keeptrusts.audit.query import VERDICTS, EventQuery, parse_time
from keeptrusts.audit.store import AuditStoreMissing, SQLiteAuditStore
from keeptrusts.cli.auth import AdminClient, AdminError, resolve_admin_client, state_dir_of
from keeptrusts.cli.db import add_database_url, database_url_of

TABLE_COLUMNS = ("TIME", "ID", "VERDICT", "REASON", "MODEL", "TARGET", "ROLE")
# Widths for ``tail``, which prints rows before it has seen them all.
_TAIL_WIDTHS = (24, 36, 7, 28, 24, 20, 10)
CSV_FIELDS = (
    "seq",
    "timestamp",
    "id",
    "event_type",
    "verdict",
    "reason_code",
    "policy",
    "status",
    "model",
    "provider",
    "target_id",
    "role",
    "key_id",
    "user_id",
    "org_id",
    "request_id",
    "endpoint",
    "stream",
    "redactions",
    "latency_ms",
    "overhead_ms",
    "prompt_tokens",
    "completion_tokens",
    "total_tokens",
    "chain_id",
    "prev_hash",
    "hash",
)
_PAGE = 1000


class CliError(Exception):
    pass


# -- where events come from -----------------------------------------------------------------


class Source(Protocol):
    def list(self, query: EventQuery) -> list[dict[str, Any]]: ...

    def verify(self) -> dict[str, Any]: ...


class LocalSource:
    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self._store: SQLiteAuditStore | None = None

    @property
    def store(self) -> SQLiteAuditStore:
        if self._store is None:
            try:
                self._store = SQLiteAuditStore(self.state_dir, readonly=True)
            except AuditStoreMissing as exc:
                raise CliError(
                    f"{exc} (start the gateway, or pass --state-dir DIR or --gateway URL)"
                ) from None
            except sqlite3.Error as exc:
                raise CliError(f"cannot open the audit log in {self.state_dir}: {exc}") from None
        return self._store

    def list(self, query: EventQuery) -> list[dict[str, Any]]:
        try:
            return self.store.list_events(query)
        except sqlite3.Error as exc:
            raise CliError(f"cannot read {self.store.location}: {exc}") from None

    def verify(self) -> dict[str, Any]:
        try:
            result = self.store.verify()
        except sqlite3.Error as exc:
            raise CliError(f"cannot read {self.store.location}: {exc}") from None
        return {**result.to_dict(), "summary": result.summary()}


class PostgresSource:
    """The shared audit log in PostgreSQL (read-only)."""

    def __init__(self, url: str) -> None:
        from keeptrusts.audit.postgres import PostgresAuditStore

        try:
            self.store = PostgresAuditStore(url, readonly=True)
        except DatabaseError as exc:
            raise CliError(str(exc)) from None

    def list(self, query: EventQuery) -> list[dict[str, Any]]:
        with _database_errors(self.store.location):
            return self.store.list_events(query)

    def verify(self) -> dict[str, Any]:
        with _database_errors(self.store.location):
            result = self.store.verify()
        return {**result.to_dict(), "summary": result.summary()}


@contextlib.contextmanager
def _database_errors(location: str) -> Iterator[None]:
    import psycopg

    try:
        yield
    except (psycopg.Error, DatabaseError) as exc:
        raise CliError(f"cannot read {location}: {str(exc).strip() or exc!r}") from None


class RemoteSource:
    def __init__(self, client: AdminClient) -> None:
        self.client = client

    def list(self, query: EventQuery) -> list[dict[str, Any]]:
        if query.limit is None:
            query = replace(query, limit=_PAGE)
        return list(self.client.get("/keeptrusts/events", query.to_params())["data"])

    def verify(self) -> dict[str, Any]:
        return dict(self.client.get("/keeptrusts/events/verify"))


def open_source(args: argparse.Namespace) -> Source:
    """``--gateway``, else ``--database-url`` (or its variable, unless ``--local``), else the
    gateway logged in to with ``kt auth login`` (unless ``--local``), else the local log."""
    url = None if args.gateway else database_url_of(args, env=not args.local)
    if url:
        return PostgresSource(url)
    state_dir = state_dir_of(args)
    try:
        client = resolve_admin_client(state_dir, args.gateway, local=args.local)
    except AdminError as exc:
        raise CliError(str(exc)) from None
    return RemoteSource(client) if client else LocalSource(state_dir)


def cursor_of(event: dict[str, Any]) -> int:
    """Where paging continues after ``event``: its ``pos`` in a PostgreSQL log (where
    ``seq`` numbers each chain on its own), else its ``seq``."""
    pos = event.get("pos")
    return pos if isinstance(pos, int) else event["seq"]


def iter_events(source: Source, query: EventQuery) -> Iterator[dict[str, Any]]:
    """All matching events in chain order, page by page."""
    after = query.after_seq or 0
    while True:
        page = source.list(replace(query, after_seq=after, order="asc", limit=_PAGE))
        yield from page
        if len(page) < _PAGE:
            return
        after = cursor_of(page[-1])


# -- formatting -------------------------------------------------------------------------------


def table_row(ev: dict[str, Any]) -> tuple[str, ...]:
    ident = ev.get("identity")
    role = ident.get("role") if isinstance(ident, dict) else None
    return tuple(
        "-" if v in (None, "") else str(v)
        for v in (
            ev.get("timestamp"),
            ev.get("id"),
            ev.get("verdict"),
            ev.get("reason_code") or ev.get("event_type"),
            ev.get("model"),
            ev.get("target_id"),
            role,
        )
    )


def format_table(events: list[dict[str, Any]]) -> str:
    rows = [TABLE_COLUMNS, *(table_row(ev) for ev in events)]
    widths = [max(len(r[i]) for r in rows) for i in range(len(TABLE_COLUMNS))]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows
    )


def _fixed(row: tuple[str, ...]) -> str:
    return "  ".join(c.ljust(w) for c, w in zip(row, _TAIL_WIDTHS, strict=True)).rstrip()


def csv_row(ev: dict[str, Any]) -> list[Any]:
    ident = ev.get("identity") if isinstance(ev.get("identity"), dict) else {}
    usage = ev.get("usage") if isinstance(ev.get("usage"), dict) else {}
    flat = {**ev, **{k: ident.get(k) for k in ("role", "key_id", "user_id", "org_id")}}
    flat.update({k: usage.get(k) for k in ("prompt_tokens", "completion_tokens", "total_tokens")})
    return [_csv_cell(flat.get(name)) for name in CSV_FIELDS]


def _csv_cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, (dict, list)):
        value = orjson.dumps(value).decode()
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        # Client-chosen strings (model names) must not run as spreadsheet formulas.
        return "'" + value
    return value


def _time_arg(value: str) -> float:
    try:
        return parse_time(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


# -- commands ---------------------------------------------------------------------------------


def add_commands(groups: argparse._SubParsersAction) -> None:
    events = groups.add_parser("events", help="list, follow, export and verify audit events")
    sub = events.add_subparsers(dest="command", required=True, metavar="COMMAND")

    lst = sub.add_parser("list", help="recent events, newest first")
    _filters(lst, until=True)
    lst.add_argument("--limit", type=int, default=50, help="at most N events (default 50)")
    lst.add_argument("--json", action="store_true", help="print a JSON array of full events")
    lst.set_defaults(func=run_list)

    tail = sub.add_parser("tail", help="follow new events as they are written (Ctrl-C stops)")
    _filters(tail, until=False)
    tail.add_argument("--limit", type=int, default=50, help="events of backlog to show first")
    tail.add_argument("--json", action="store_true", help="one JSON event per line")
    tail.add_argument("--interval", type=float, default=0.5, help="poll interval (seconds)")
    tail.add_argument("--max-seconds", type=float, default=None, help="stop after this long")
    tail.set_defaults(func=run_tail)

    export = sub.add_parser("export", help="write events in chain order as JSONL, CSV or JSON")
    _filters(export, until=True)
    export.add_argument("--format", choices=("jsonl", "csv", "json"), default="jsonl")
    export.add_argument("--output", "-o", default=None, help="file (default: stdout)")
    export.set_defaults(func=run_export)

    ver = sub.add_parser("verify", help="check the hash chain (exit 0 intact, 1 tampered)")
    ver.add_argument("--json", action="store_true", help="print the result as JSON")
    ver.add_argument(
        "--file",
        default=None,
        help="verify a JSONL export instead (links and hashes within the file only)",
    )
    _source(ver)
    ver.set_defaults(func=run_verify)


def _source(p: argparse.ArgumentParser) -> None:
    p.add_argument("--state-dir", default=None, help="default $KEEPTRUSTS_HOME or ~/.keeptrusts")
    p.add_argument(
        "--gateway",
        default=None,
        metavar="URL",
        help="read a running gateway's admin API (token: kt auth login or $KEEPTRUSTS_ADMIN_TOKEN)",
    )
    p.add_argument(
        "--local",
        action="store_true",
        help="read the local log even if logged in or $KEEPTRUSTS_DATABASE_URL is set",
    )
    add_database_url(p)


def _filters(p: argparse.ArgumentParser, *, until: bool) -> None:
    p.add_argument("--since", type=_time_arg, default=None, help="5m, 1h, 2d or RFC 3339")
    if until:
        p.add_argument("--until", type=_time_arg, default=None, help="5m, 1h, 2d or RFC 3339")
    p.add_argument("--verdict", choices=VERDICTS, default=None)
    p.add_argument("--model", default=None)
    _source(p)


def _guarded(fn: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        try:
            return fn(args)
        except (CliError, AdminError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        except BrokenPipeError:
            # `kt events list | head`: stop quietly.
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            return 0
        except KeyboardInterrupt:
            return 130

    run.__name__ = fn.__name__
    return run


@_guarded
def run_list(args: argparse.Namespace) -> int:
    if args.limit < 0:
        raise CliError("--limit must be >= 0")
    source = open_source(args)
    query = EventQuery(
        since=args.since,
        until=args.until,
        verdict=args.verdict,
        model=args.model,
        limit=args.limit,
    )
    events = source.list(query)
    if args.json:
        sys.stdout.write(orjson.dumps(events, option=orjson.OPT_INDENT_2).decode() + "\n")
    elif events:
        print(format_table(events))
    else:
        print("no events", file=sys.stderr)
    return 0


@_guarded
def run_tail(args: argparse.Namespace) -> int:
    source = open_source(args)
    deadline = None if args.max_seconds is None else time.monotonic() + args.max_seconds
    out = sys.stdout

    def emit(ev: dict[str, Any]) -> None:
        if args.json:
            out.write(orjson.dumps(ev).decode() + "\n")
        else:
            out.write(_fixed(table_row(ev)) + "\n")

    def expired() -> bool:
        return deadline is not None and time.monotonic() >= deadline

    # Wait for a local log that does not exist yet (the gateway has not started).
    waiting = False
    while True:
        try:
            # A cursor query: in PostgreSQL it stops before rows still being written, so
            # following from here skips nothing.
            head = source.list(EventQuery(limit=1, after_seq=0))
            break
        except CliError as exc:
            if not isinstance(source, LocalSource):
                raise
            if not waiting:
                print(f"waiting: {exc}", file=sys.stderr)
                waiting = True
            if expired():
                return 0
            time.sleep(args.interval)
    last_seq = cursor_of(head[0]) if head else 0
    filters = {"verdict": args.verdict, "model": args.model}
    if not args.json:
        out.write(_fixed(TABLE_COLUMNS) + "\n")
    if args.limit > 0:
        backlog = source.list(
            EventQuery(since=args.since, limit=args.limit, before_seq=last_seq + 1, **filters)
        )
        for ev in reversed(backlog):
            emit(ev)
    out.flush()
    try:
        while not expired():
            time.sleep(args.interval)
            new = source.list(
                EventQuery(since=args.since, after_seq=last_seq, order="asc", limit=_PAGE)
            )
            for ev in new:
                last_seq = cursor_of(ev)
                if all(v is None or ev.get(k) == v for k, v in filters.items()):
                    emit(ev)
            out.flush()
    except KeyboardInterrupt:
        pass
    return 0


@_guarded
def run_export(args: argparse.Namespace) -> int:
    source = open_source(args)
    query = EventQuery(since=args.since, until=args.until, verdict=args.verdict, model=args.model)
    events = iter_events(source, query)
    if args.output:
        fd = os.open(args.output, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with open(fd, "w", encoding="utf-8", newline="") as fh:
            n = write_export(events, fh, args.format)
        print(f"exported {n} events to {args.output}", file=sys.stderr)
    else:
        write_export(events, sys.stdout, args.format)
    return 0


def write_export(events: Iterator[dict[str, Any]], out: TextIO, fmt: str) -> int:
    """Events as stored (the hashed fields and ``hash``; a read cursor is left out)."""
    events = ({k: v for k, v in ev.items() if k != "pos"} for ev in events)
    n = 0
    if fmt == "csv":
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(CSV_FIELDS)
        for ev in events:
            writer.writerow(csv_row(ev))
            n += 1
    elif fmt == "json":
        out.write("[")
        for ev in events:
            out.write(("\n" if n == 0 else ",\n") + orjson.dumps(ev).decode())
            n += 1
        out.write("\n]\n" if n else "]\n")
    else:
        for ev in events:
            out.write(orjson.dumps(ev).decode() + "\n")
            n += 1
    out.flush()
    return n


@_guarded
def run_verify(args: argparse.Namespace) -> int:
    result = verify_export(Path(args.file)) if args.file else open_source(args).verify()
    if args.json:
        sys.stdout.write(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode() + "\n")
    else:
        print(result["summary"])
    return 0 if result["ok"] else 1


def verify_export(path: Path) -> dict[str, Any]:
    """Check the links and hashes inside a JSONL export (not what lies outside its range).

    An export of a PostgreSQL log interleaves several chains: each is checked on its own.
    """
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise CliError(f"cannot read {path}: {exc.strerror}") from None
    try:
        events = [orjson.loads(line) for line in io.BytesIO(raw) if line.strip()]
    except orjson.JSONDecodeError as exc:
        raise CliError(f"{path} is not JSONL: {exc}") from None
    chains: dict[Any, list[Any]] = {}
    for ev in events:
        chains.setdefault(ev.get("chain_id") if isinstance(ev, dict) else None, []).append(ev)
    results = [_verify_segment(segment) for segment in chains.values()] or [_verify_segment([])]
    if len(results) == 1:
        result = results[0]
        return {**result.to_dict(), "summary": result.summary()}
    bad = next((r for r in results if not r.ok), None)
    total = sum(r.checked for r in results)
    if bad is None:
        summary = f"ok: {total} events verified in {len(results)} chains"
        body = {"ok": True, "checked": total}
    else:
        body = {**bad.to_dict(), "checked": total}
        summary = bad.summary()
    return {**body, "chains": [r.to_dict() for r in results], "summary": summary}


def _verify_segment(events: list[Any]) -> VerifyResult:
    start = None
    if events and isinstance(events[0], dict) and isinstance(events[0].get("seq"), int):
        first = events[0]
        start = Head(str(first.get("chain_id")), first["seq"] - 1, str(first.get("prev_hash")))
        if start.seq == 0:
            start = None
    return verify((record_from_event(ev) for ev in events), start, trust_checkpoint=True)
