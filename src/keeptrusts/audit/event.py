"""Turn a finished ``RequestContext`` into its audit event (a plain JSON-able dict).

Events never hold raw prompt text, matched values or keys: only names, verdicts, counts,
scores and timings. The hash chain fields (``seq``, ``chain_id``, ``prev_hash``, ``hash``)
are added by the store when the event is written.
"""

from __future__ import annotations

import functools
import math
import random
import time
from datetime import UTC, datetime
from typing import Any

from keeptrusts.config.model import Pack
from keeptrusts.context import RequestContext

_POLICY_STATUSES = {403, 409}


def new_event_id() -> str:
    """A time-ordered id: 48-bit milliseconds then 80 random bits, like UUIDv7."""
    ms = int(time.time() * 1000)
    # Ids must be unique, not secret (the hash chain protects the log): no syscall needed.
    return f"evt_{ms:012x}{random.getrandbits(80):020x}"


def iso_utc(ts: float) -> str:
    """``2026-01-02T03:04:05.678Z``: milliseconds truncated, as ``isoformat`` does."""
    sec = math.floor(ts)
    us = round((ts - sec) * 1e6)  # datetime.fromtimestamp rounds to microseconds first
    if us >= 1_000_000:
        sec, us = sec + 1, us - 1_000_000
    return f"{_iso_second(sec)}.{us // 1000:03d}Z"


@functools.lru_cache(maxsize=8)
def _iso_second(sec: int) -> str:
    # One formatting per second of wall time instead of one datetime per event.
    return datetime.fromtimestamp(sec, UTC).strftime("%Y-%m-%dT%H:%M:%S")


def decide_verdict(ctx: RequestContext) -> tuple[str, str, str | None]:
    """Return (verdict, reason_code, deciding policy)."""
    results = ctx.policy_results
    for r in results:
        if r.verdict == "block":
            return "block", r.reason_code or "policy_blocked", r.name
    if ctx.status >= 400:
        return "error", ctx.error or f"http_{ctx.status}", None
    for r in results:
        if r.verdict == "error":
            return "error", "policy_error", r.name
    for r in results:
        if r.verdict == "redact":
            return "redact", r.reason_code or "redacted", r.name
    for r in results:
        if r.verdict == "log":
            return "allow", r.reason_code or "flagged", r.name
    return "allow", "all_policies_passed", None


def build_event(ctx: RequestContext, pack: Pack) -> dict[str, Any]:
    verdict, reason_code, policy = decide_verdict(ctx)
    ident = ctx.identity
    target = ctx.target
    usage = ctx.usage or {}
    return {
        "id": new_event_id(),
        "timestamp": iso_utc(ctx.timestamp),
        "event_type": "decision",
        "request_id": ctx.request_id,
        "endpoint": ctx.endpoint,
        "verdict": verdict,
        "reason_code": reason_code,
        "policy": policy,
        "status": ctx.status,
        "model": ctx.model,
        "target_id": target.id if target else None,
        "provider": target.provider if target else None,
        "stream": ctx.stream,
        "identity": {
            "key_id": ident.key_id,
            "key_name": ident.name,
            "role": ident.role,
            "user_id": ident.user_id,
            "org_id": ident.org_id,
            "source": ident.source,
        },
        "policy_results": [
            {
                "name": r.name,
                "phase": r.phase,
                "verdict": r.verdict,
                "reason": r.reason,
                "reason_code": r.reason_code,
                "latency_ms": r.latency_ms,
                "findings": r.findings,
                **({"score": r.score} if r.score is not None else {}),
            }
            for r in ctx.policy_results
        ],
        "redactions": sum(
            sum(r.findings.values()) for r in ctx.policy_results if r.verdict == "redact"
        ),
        "attempts": [
            {
                "target_id": a.target_id,
                "provider": a.provider,
                "outcome": a.outcome,
                "status": a.status,
                "latency_ms": a.latency_ms,
            }
            for a in ctx.attempts
        ],
        "usage": {
            "prompt_tokens": usage.get("prompt_tokens"),
            "completion_tokens": usage.get("completion_tokens"),
            "total_tokens": usage.get("total_tokens"),
        },
        "latency_ms": round(ctx.elapsed_ms(), 3),
        "overhead_ms": round(ctx.overhead_ms(), 3),
        "policy_ms": round(ctx.policy_ms, 3),
        "upstream_ms": round(ctx.upstream_ms, 3),
        "pack": {"name": pack.name, "version": pack.version},
        "error": ctx.error,
    }


def reload_event(entry: dict[str, Any]) -> dict[str, Any]:
    """The audit event for a config reload (applied or refused), from its history entry."""
    return {
        "id": new_event_id(),
        "timestamp": entry["timestamp"],
        "event_type": "config_reload",
        "verdict": "allow" if entry["ok"] else "error",
        "reason_code": "config_reloaded" if entry["ok"] else "config_invalid",
        "actor": entry["who"],
        "previous_pack": entry["previous_pack"],
        "pack": entry["pack"],
        "problems": entry["problems"],
    }
