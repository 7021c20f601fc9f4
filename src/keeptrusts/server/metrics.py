"""Prometheus metrics (``GET /metrics``), fed once per finished request from its context.

Each gateway has its own registry, so tests and reloads never share global state. Gauges
that describe live state (in-flight, audit queue, breakers) are read when scraped.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily

from keeptrusts.audit.event import decide_verdict
from keeptrusts.context import RequestContext

# Seconds; from sub-millisecond policy checks to long generations.
_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
_BREAKER_STATES = ("closed", "half_open", "open")


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "keeptrusts_requests",
            "Requests by model, target, HTTP status and verdict",
            ["endpoint", "model", "target", "status", "verdict"],
            registry=r,
        )
        self.latency = Histogram(
            "keeptrusts_request_seconds",
            "Total request time",
            ["endpoint"],
            buckets=_BUCKETS,
            registry=r,
        )
        self.upstream = Histogram(
            "keeptrusts_upstream_seconds",
            "Time waiting on upstream attempts",
            ["target"],
            buckets=_BUCKETS,
            registry=r,
        )
        self.policy = Histogram(
            "keeptrusts_policy_seconds",
            "Time per policy hook",
            ["policy", "phase"],
            buckets=_BUCKETS,
            registry=r,
        )
        self.policy_verdicts = Counter(
            "keeptrusts_policy_verdicts",
            "Verdicts per policy",
            ["policy", "phase", "verdict"],
            registry=r,
        )
        self.tokens = Counter(
            "keeptrusts_tokens", "Tokens by model and kind", ["model", "kind"], registry=r
        )
        self.in_flight = Gauge("keeptrusts_in_flight_requests", "Requests in progress", registry=r)
        self._children: dict[tuple[int, tuple[str, ...]], Any] = {}
        self._live = _LiveCollector()
        r.register(self._live)

    def _child(self, metric: Any, *labels: str) -> Any:
        """``metric.labels(*labels)``, memoised: labels() takes a lock on every call."""
        key = (id(metric), labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    def watch(self, name: str, doc: str, read: Callable[[], Any]) -> None:
        """Expose a live value, read at scrape time (e.g. the audit queue depth)."""
        self._live.sources[name] = (doc, read)

    def observe(self, ctx: RequestContext) -> None:
        verdict, _, _ = decide_verdict(ctx)
        target = ctx.target.id if ctx.target else ""
        child = self._child
        # Only models the gateway serves become label values: a client sending random
        # names must not grow the series (and this process's memory) without bound.
        model = ctx.model if ctx.route is not None else "unknown"
        child(self.requests, ctx.endpoint, model, target, str(ctx.status), verdict).inc()
        child(self.latency, ctx.endpoint).observe(ctx.elapsed_ms() / 1000.0)
        for a in ctx.attempts:
            child(self.upstream, a.target_id).observe(a.latency_ms / 1000.0)
        for p in ctx.policy_results:
            child(self.policy_verdicts, p.name, p.phase, p.verdict).inc()
            if p.verdict != "skipped":
                child(self.policy, p.name, p.phase).observe(p.latency_ms / 1000.0)
        usage = ctx.usage or {}
        for kind in ("prompt_tokens", "completion_tokens"):
            n = usage.get(kind)
            if isinstance(n, int) and n > 0:
                child(self.tokens, model, kind).inc(n)

    def render(self) -> bytes:
        return generate_latest(self.registry)


class _LiveCollector:
    def __init__(self) -> None:
        self.sources: dict[str, tuple[str, Callable[[], Any]]] = {}

    def describe(self) -> list:
        return []

    def collect(self):  # type: ignore[no-untyped-def]
        for name, (doc, read) in self.sources.items():
            value = read()
            if isinstance(value, dict):
                # {target: state} breaker map: one series per target and state.
                fam = GaugeMetricFamily(name, doc, labels=["target", "state"])
                for target, state in value.items():
                    for s in _BREAKER_STATES:
                        fam.add_metric([target, s], 1.0 if state == s else 0.0)
                yield fam
            else:
                yield GaugeMetricFamily(name, doc, value=float(value or 0))
