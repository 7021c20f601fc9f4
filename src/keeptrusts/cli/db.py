"""``kt db migrate|status``: the PostgreSQL schema (audit events, chains, gateway keys).

The database is named by ``--database-url`` or ``$KEEPTRUSTS_DATABASE_URL``. ``migrate``
applies the missing versioned migrations in one transaction (idempotent; concurrent runs
wait for each other) and creates the coming days' audit partitions. A gateway started with
a database URL checks the schema version and refuses to run against another one.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from keeptrusts.audit.pgdb import (
    DATABASE_URL_ENV,
    LATEST_VERSION,
    MIGRATIONS,
    DatabaseError,
    list_partitions,
    migrate,
    reading,
    redact_url,
    schema_version,
)


def add_database_url(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--database-url",
        default=None,
        metavar="URL",
        help=f"PostgreSQL (postgresql://user@host/db); default ${DATABASE_URL_ENV}",
    )


def database_url_of(args: argparse.Namespace, *, env: bool = True) -> str | None:
    """``--database-url``, else (with ``env``) ``$KEEPTRUSTS_DATABASE_URL``, else None."""
    url = getattr(args, "database_url", None)
    if not url and env:
        url = os.environ.get(DATABASE_URL_ENV)
    return url or None


def add_commands(groups: argparse._SubParsersAction) -> None:
    db = groups.add_parser("db", help="PostgreSQL schema: migrate, status")
    sub = db.add_subparsers(dest="command", required=True, metavar="COMMAND")
    mig = sub.add_parser("migrate", help="apply pending schema migrations (idempotent)")
    mig.set_defaults(func=run_migrate)
    status = sub.add_parser("status", help="schema version, chains and partitions")
    status.set_defaults(func=run_status)
    for p in (mig, status):
        add_database_url(p)
        p.add_argument("--json", action="store_true")


def _url(args: argparse.Namespace) -> str:
    url = database_url_of(args)
    if not url:
        raise DatabaseError(f"no database: pass --database-url URL or set ${DATABASE_URL_ENV}")
    return url


def run_migrate(args: argparse.Namespace) -> int:
    try:
        url = _url(args)
        with reading(url) as conn:
            before, applied = migrate(conn)
    except DatabaseError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(
            json.dumps(
                {
                    "database": redact_url(url),
                    "from_version": before,
                    "version": LATEST_VERSION,
                    "applied": [m.version for m in applied],
                }
            )
        )
    elif applied:
        for m in applied:
            print(f"applied migration {m.version}: {m.description}")
        print(f"{redact_url(url)}: schema at version {LATEST_VERSION} (was {before})")
    else:
        print(f"{redact_url(url)}: schema already at version {LATEST_VERSION}, nothing to do")
    return 0


def run_status(args: argparse.Namespace) -> int:
    """Exit 0 when the schema is current, 1 when migrations are pending (or on error)."""
    try:
        url = _url(args)
        with reading(url) as conn:
            version = schema_version(conn)
            chains = parts = []
            if version >= 1:
                chains = conn.execute(
                    "SELECT chain_id, instance_id, head_seq, checkpoint_seq, "
                    "closed_at IS NOT NULL FROM audit_chains ORDER BY started_at, chain_id"
                ).fetchall()
                parts = sorted(list_partitions(conn))
    except DatabaseError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    pending = [m.version for m in MIGRATIONS if m.version > version]
    report = {
        "database": redact_url(url),
        "version": version,
        "latest": LATEST_VERSION,
        "pending": pending,
        "chains": [
            dict(
                zip(
                    ("chain_id", "instance_id", "head_seq", "checkpoint_seq", "closed"),
                    c,
                    strict=True,
                )
            )
            for c in chains
        ],
        "partitions": [d.isoformat() for d in parts],
    }
    if args.json:
        print(json.dumps(report))
    else:
        state = "up to date" if not pending else f"pending migrations {pending}"
        print(f"{report['database']}: schema version {version} of {LATEST_VERSION} ({state})")
        if parts:
            print(f"  audit partitions: {len(parts)} day(s), {parts[0]} .. {parts[-1]}")
        print(f"  chains: {len(chains)} ({sum(1 for c in chains if not c[4])} open)")
    return 0 if not pending else 1
