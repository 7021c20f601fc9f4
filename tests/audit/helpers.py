"""Helpers for the audit log tests: events, filled stores, and the ``kt`` parser."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from keeptrusts.audit.event import iso_utc, new_event_id
from keeptrusts.audit.store import SQLiteAuditStore


def make_event(i: int, *, verdict: str = "allow", ts: float | None = None, **extra: Any) -> dict:
    return {
        "id": new_event_id(),
        "timestamp": iso_utc(time.time() if ts is None else ts),
        "event_type": "decision",
        "request_id": f"req_{i}",
        "verdict": verdict,
        "reason_code": "all_policies_passed" if verdict == "allow" else f"{verdict}_reason",
        "model": "gpt-4o",
        "target_id": "openai-gpt4o",
        "identity": {"role": "analyst", "key_id": None},
        "latency_ms": 1.5,
        "n": i,
        **extra,
    }


def fill(state_dir: Path, n: int, *, batch: int = 7, **kw: Any) -> list[dict]:
    """Write ``n`` events (verdicts cycle allow/block/redact) in batches; close the store."""
    store = SQLiteAuditStore(state_dir)
    verdicts = ("allow", "block", "redact")
    events = [make_event(i, verdict=verdicts[i % 3], **kw) for i in range(n)]
    for i in range(0, n, batch):
        store.append(events[i : i + batch])
    store.close()
    return events


def kt_parser() -> argparse.ArgumentParser:
    """The real ``kt`` parser once ``events``/``auth`` are registered there, else our own."""
    from keeptrusts.cli import auth, events
    from keeptrusts.cli.main import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    if "events" in sub.choices and "auth" in sub.choices:
        return parser
    parser = argparse.ArgumentParser(prog="kt")
    groups = parser.add_subparsers(dest="group", required=True)
    events.add_commands(groups)
    auth.add_commands(groups)
    return parser


def kt(*argv: str) -> int:
    args = kt_parser().parse_args(list(argv))
    return int(args.func(args) or 0)
