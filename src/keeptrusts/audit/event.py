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
    # One 32-digit format of (ms << 80 | random) is the same text as ms:012x then the
    # random part :020x (ms fits 48 bits until the year 10889), at half the cost.
    return f"evt_{ms << 80 | random.getrandbits(80):032x}"


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


def _ms3(ms: float) -> float:
    """``ms`` to the microsecond, like ``round(ms, 3)`` (which formats the float as decimal
    text to round it: several times slower; the two differ by 0.001 at most, and only for
    a value within rounding error of a half-microsecond)."""
    return round(ms * 1000.0) / 1000.0


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
    """The request's audit event, built on the request path: so only reads and copies of
    what the request holds (the writer thread encodes, hashes and stores it)."""
    verdict, reason_code, policy = decide_verdict(ctx)
    ident = ctx.identity
    target = ctx.target
    usage = ctx.usage or {}
    # One pass over the policy results: no per-result ``**`` merge, no second pass for
    # the redaction count. (``findings`` is shared, as before: a policy fills it before
    # its result is appended, and nothing changes it once the request is finished.)
    results = []
    redactions = 0
    for r in ctx.policy_results:
        findings = r.findings
        res = {
            "name": r.name,
            "phase": r.phase,
            "verdict": r.verdict,
            "reason": r.reason,
            "reason_code": r.reason_code,
            "latency_ms": r.latency_ms,
            "findings": findings,
        }
        if r.score is not None:
            res["score"] = r.score
        if r.verdict == "redact" and findings:
            redactions += sum(findings.values())
        results.append(res)
    elapsed_ms = ctx.elapsed_ms()
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
        "policy_results": results,
        "redactions": redactions,
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
        "latency_ms": _ms3(elapsed_ms),
        # ctx.overhead_ms(), without reading the clock a second time.
        "overhead_ms": _ms3(max(0.0, elapsed_ms - ctx.upstream_ms)),
        "policy_ms": _ms3(ctx.policy_ms),
        "upstream_ms": _ms3(ctx.upstream_ms),
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
