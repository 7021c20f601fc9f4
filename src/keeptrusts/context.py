"""The one object a request carries from end to end; the audit event is this, finished."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from keeptrusts.config.model import Target


@dataclass(slots=True)
class Identity:
    """Who is calling. ``key_id`` and ``name`` come from a gateway key, never the key itself."""

    key_id: str | None = None
    name: str | None = None
    role: str | None = None
    user_id: str | None = None
    org_id: str | None = None
    source: str = "anonymous"  # key | header | default | anonymous


@dataclass(slots=True)
class Attempt:
    target_id: str
    provider: str
    outcome: str  # ok | error kind
    status: int | None
    latency_ms: float
    started_at: float = 0.0  # perf_counter at the start, for trace spans


@dataclass(slots=True)
class PolicyResult:
    name: str
    phase: str  # input | output
    verdict: str  # allow | redact | block | log | error | skipped
    latency_ms: float = 0.0
    reason: str | None = None
    reason_code: str | None = None
    findings: dict[str, int] = field(default_factory=dict)
    score: float | None = None
    started_at: float = 0.0  # perf_counter at the start, for trace spans


@dataclass(slots=True)
class RequestContext:
    request_id: str
    endpoint: str
    body: dict[str, Any]
    model: str
    stream: bool
    headers: dict[str, str]
    client_auth: str | None = None
    started: float = field(default_factory=time.perf_counter)
    timestamp: float = field(default_factory=time.time)
    identity: Identity = field(default_factory=Identity)
    # The config generation (config, chain, router) this request runs on.
    gen: Any = None
    # The routing group chosen for the request; rbac may narrow it.
    route: Any = None
    target: Target | None = None
    attempts: list[Attempt] = field(default_factory=list)
    policy_results: list[PolicyResult] = field(default_factory=list)
    upstream_ms: float = 0.0
    policy_ms: float = 0.0
    usage: dict[str, Any] | None = None
    status: int = 200
    error: str | None = None
    # W3C trace context (trace id, this request's span id, parent span id) when tracing.
    trace: Any = None
    # Per-request scratch space for policies (e.g. a PII restore map); never shared.
    state: dict[str, Any] = field(default_factory=dict)

    def elapsed_ms(self) -> float:
        return (time.perf_counter() - self.started) * 1000.0

    def overhead_ms(self) -> float:
        """Gateway time so far, excluding time spent waiting on the upstream."""
        return max(0.0, self.elapsed_ms() - self.upstream_ms)
