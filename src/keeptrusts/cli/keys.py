"""``kt keys``: create, list and revoke gateway keys, in the state dir or, with
``--database-url`` / ``$KEEPTRUSTS_DATABASE_URL``, in PostgreSQL (shared by a fleet)."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from keeptrusts.audit.pgdb import DatabaseError
from keeptrusts.cli.common import default_state_dir
from keeptrusts.cli.db import add_database_url, database_url_of
from keeptrusts.identity.keys import KeyStoreProtocol, open_key_store


def add_commands(groups: argparse._SubParsersAction) -> None:
    keys = groups.add_parser("keys", help="manage gateway keys")
    sub = keys.add_subparsers(dest="command", required=True, metavar="COMMAND")
    create = sub.add_parser("create", help="create a key (printed once)")
    create.add_argument("--role", required=True)
    create.add_argument("--name")
    create.set_defaults(func=_create)
    lst = sub.add_parser("list", help="list keys (never the keys themselves)")
    lst.set_defaults(func=_list)
    revoke = sub.add_parser("revoke", help="revoke a key by id")
    revoke.add_argument("id")
    revoke.set_defaults(func=_revoke)
    for p in (create, lst, revoke):
        p.add_argument("--state-dir", default=None)
        add_database_url(p)
        p.add_argument("--json", action="store_true")


def _guarded(fn: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """Database errors (unreachable, schema not migrated) are one line, exit 1."""

    def run(args: argparse.Namespace) -> int:
        try:
            return fn(args)
        except DatabaseError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1

    run.__name__ = fn.__name__
    return run


def _store(args: argparse.Namespace) -> KeyStoreProtocol:
    state_dir = Path(args.state_dir).expanduser() if args.state_dir else default_state_dir()
    return open_key_store(state_dir, database_url=database_url_of(args))


@_guarded
def _create(args: argparse.Namespace) -> int:
    rec, key = _store(args).create(role=args.role, name=args.name)
    if args.json:
        print(json.dumps({"id": rec.id, "key": key, "role": rec.role, "name": rec.name}))
    else:
        print(f"created key {rec.id} (name {rec.name}, role {rec.role})")
        print(f"key: {key}")
        print("store it now: it is shown only once", file=sys.stderr)
    return 0


def _when(ts: float | None) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%SZ") if ts else "-"


@_guarded
def _list(args: argparse.Namespace) -> int:
    records = _store(args).list()
    if args.json:
        print(json.dumps([r.to_dict() for r in records]))
        return 0
    print(f"{'ID':<18} {'NAME':<20} {'ROLE':<14} {'CREATED':<21} REVOKED")
    for r in records:
        print(
            f"{r.id:<18} {r.name:<20} {r.role:<14} {_when(r.created_at):<21} {_when(r.revoked_at)}"
        )
    return 0


@_guarded
def _revoke(args: argparse.Namespace) -> int:
    if not _store(args).revoke(args.id):
        print(f"error: no active key with id {args.id}", file=sys.stderr)
        return 1
    print(json.dumps({"id": args.id, "revoked": True}) if args.json else f"revoked {args.id}")
    return 0
