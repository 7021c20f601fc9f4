"""Audit history for the console tests: realistic decision events spread over past hours."""

from __future__ import annotations

import math
import random
from typing import Any

from keeptrusts.audit.event import iso_utc

CALLERS = (
    ("developer", "developer-key", "key_dev0001"),
    ("production", "production-key", "key_prod001"),
    ("analyst", "analytics-batch", "key_anl0001"),
)
ROUTES = (
    ("gpt-4o", "openai-gpt4o", "openai"),
    ("claude-3-5-sonnet-20241022", "anthropic-sonnet", "anthropic"),
)


def _result(name: str, phase: str, verdict: str, **kw: Any) -> dict[str, Any]:
    return {
        "name": name,
        "phase": phase,
        "verdict": verdict,
        "reason": kw.get("reason"),
        "reason_code": kw.get("reason_code"),
        "latency_ms": kw.get("latency_ms", 0.05),
        "findings": kw.get("findings", {}),
    }


def decision(
    ts: float,
    i: int,
    kind: str,
    *,
    rng: random.Random,
    caller: tuple[str, str, str] = CALLERS[0],
    route: tuple[str, str, str] = ROUTES[0],
) -> dict[str, Any]:
    """One decision event shaped like ``keeptrusts.audit.event.build_event``'s.

    ``kind``: allow, redact, dlp (blocked by dlp-filter), rbac (blocked by rbac), error.
    """
    role, key_name, key_id = caller
    model, target, provider = route
    lat_policy = round(rng.uniform(0.15, 0.9), 3)
    lat_up = round(rng.lognormvariate(math.log(420), 0.5), 3)
    passed_in = [_result("dlp-filter", "input", "pass"), _result("rbac", "input", "pass")]
    passed_out = [_result("dlp-filter", "output", "pass")]
    ok_attempt = [{"target_id": target, "provider": provider, "outcome": "ok", "status": 200,
                   "latency_ms": lat_up}]  # fmt: skip
    base: dict[str, Any] = {
        "timestamp": iso_utc(ts),
        "event_type": "decision",
        "request_id": f"req-hist-{i:04d}",
        "endpoint": "chat.completions",
        "model": model,
        "target_id": target,
        "provider": provider,
        "stream": i % 4 == 0,
        "identity": {
            "key_id": key_id,
            "key_name": key_name,
            "role": role,
            "user_id": None,
            "org_id": None,
            "source": "key",
        },
        "redactions": 0,
        "usage": {
            "prompt_tokens": 20 + i % 50,
            "completion_tokens": 80 + i % 200,
            "total_tokens": 100 + i % 50 + i % 200,
        },
        "pack": {"name": "governed-test", "version": "2.0.0"},
        "error": None,
        "policy_ms": lat_policy,
        "overhead_ms": round(lat_policy + rng.uniform(0.1, 0.6), 3),
    }
    skipped = {"reason": "chain short-circuited"}
    if kind == "allow":
        ev = {
            "verdict": "allow",
            "reason_code": "all_policies_passed",
            "policy": None,
            "status": 200,
            "policy_results": passed_in + passed_out,
            "attempts": ok_attempt,
        }
    elif kind == "redact":
        n = rng.choice((1, 1, 2, 3))
        results = [
            _result(
                "dlp-filter",
                "input",
                "redact",
                reason_code="dlp_redacted",
                findings={"account-number": n},
            ),
            passed_in[1],
            *passed_out,
        ]
        ev = {
            "verdict": "redact",
            "reason_code": "dlp_redacted",
            "policy": "dlp-filter",
            "status": 200,
            "policy_results": results,
            "attempts": ok_attempt,
            "redactions": n,
        }
    elif kind == "dlp":
        results = [
            _result(
                "dlp-filter",
                "input",
                "block",
                reason_code="dlp_pattern_matched",
                reason="Blocked by dlp-filter: content matched api-key",
                findings={"api-key": 1},
            ),
            _result("rbac", "input", "skipped", **skipped),
            _result("dlp-filter", "output", "skipped", reason="not reached"),
        ]
        ev = {
            "verdict": "block",
            "reason_code": "dlp_pattern_matched",
            "policy": "dlp-filter",
            "status": 409,
            "policy_results": results,
            "attempts": [],
            "target_id": None,
            "provider": None,
            "error": "input_blocked",
            "usage": {},
        }
    elif kind == "rbac":
        results = [
            passed_in[0],
            _result(
                "rbac",
                "input",
                "block",
                reason_code="rbac_denied",
                reason=f"role {role} may not use model {model}",
            ),
            _result("dlp-filter", "output", "skipped", reason="not reached"),
        ]
        ev = {
            "verdict": "block",
            "reason_code": "rbac_denied",
            "policy": "rbac",
            "status": 403,
            "policy_results": results,
            "attempts": [],
            "target_id": None,
            "provider": None,
            "error": "input_blocked",
            "usage": {},
        }
    elif kind == "error":
        status = rng.choice((500, 502, 503))
        attempts = [
            {
                "target_id": target,
                "provider": provider,
                "outcome": "http_error",
                "status": status,
                "latency_ms": lat_up,
            }
        ]
        ev = {
            "verdict": "error",
            "reason_code": "server_error",
            "policy": None,
            "status": status,
            "policy_results": passed_in,
            "attempts": attempts,
            "error": "server_error",
            "usage": {},
        }
    else:
        raise ValueError(kind)
    out = {**base, **ev}
    up = lat_up if out["attempts"] else 0.0
    out["upstream_ms"] = up
    out["latency_ms"] = round(out["overhead_ms"] + up, 3)
    return out


def history(n: int, *, now: float, hours: float = 23.0, seed: int = 7) -> list[dict[str, Any]]:
    """``n`` decisions over the last ``hours``, busier in the (UTC) working day, in time order.

    The third event is always a block by dlp-filter (the tamper tests turn it into an allow).
    """
    rng = random.Random(seed)
    times: list[float] = []
    while len(times) < n:
        t = now - rng.uniform(0.05, hours) * 3600
        hour = (t % 86400) / 3600
        if rng.random() < 0.25 + 0.75 * max(0.0, math.sin(math.pi * (hour - 6) / 14)):
            times.append(t)
    times.sort()
    events = []
    for i, ts in enumerate(times):
        roll = rng.random()
        kind = (
            "allow" if roll < 0.72 else
            "redact" if roll < 0.83 else
            "dlp" if roll < 0.91 else
            "rbac" if roll < 0.96 else
            "error"
        )  # fmt: skip
        if i == 2:
            kind = "dlp"
        caller = rng.choices(CALLERS, weights=(5, 3, 2))[0]
        route = ROUTES[0] if caller[0] == "developer" or rng.random() < 0.6 else ROUTES[1]
        events.append(decision(ts, i, kind, rng=rng, caller=caller, route=route))
    return events
