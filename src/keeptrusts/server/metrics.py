"""Prometheus metrics (``GET /metrics``), fed once per finished request from its context.

Each gateway has its own registry, so tests and reloads never share global state. Counts
are plain dicts updated on the event loop, which is the only writer and also serves the
scrape: ``prometheus_client``'s metric objects take a lock per ``inc``/``observe``, which
cost more than the rest of the bookkeeping per request. They become metric families only
when scraped. Gauges that describe live state (in-flight, audit queue, breakers) are read
then too.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

from keeptrusts.audit.event import decide_verdict
from keeptrusts.context import RequestContext

# Seconds; from sub-millisecond policy checks to long generations.
_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
_BREAKER_STATES = ("closed", "half_open", "open")
Labels = tuple[str, ...]


class CounterSeries:
    """One counter with labels: ``inc(labels, n)``."""

    def __init__(self, name: str, doc: str, labels: Labels) -> None:
        self.name, self.doc, self.labels = name, doc, labels
        self.values: dict[Labels, float] = {}

    def inc(self, labels: Labels, amount: float = 1.0) -> None:
        self.values[labels] = self.values.get(labels, 0.0) + amount

    def family(self) -> Metric:
        fam = CounterMetricFamily(self.name, self.doc, labels=self.labels)
        for labels, value in self.values.items():
            fam.add_metric(labels, value)
        return fam


class HistogramSeries:
    """One histogram with labels: per label set, a count per bucket and the sum."""

    def __init__(self, name: str, doc: str, labels: Labels) -> None:
        self.name, self.doc, self.labels = name, doc, labels
        self.values: dict[Labels, list[float]] = {}  # bucket counts..., +Inf count, sum

    def observe(self, labels: Labels, value: float) -> None:
        row = self.values.get(labels)
        if row is None:
            row = self.values[labels] = [0.0] * (len(_BUCKETS) + 2)
        row[bisect_left(_BUCKETS, value)] += 1  # first bucket with value <= bound
        row[-1] += value

    def family(self) -> Metric:
        fam = HistogramMetricFamily(self.name, self.doc, labels=self.labels)
        for labels, row in self.values.items():
            buckets, running = [], 0.0
            for bound, n in zip((*map(str, _BUCKETS), "+Inf"), row[:-1], strict=True):
                running += n
                buckets.append((_le(bound), running))
            fam.add_metric(labels, buckets, row[-1])
        return fam


def _le(bound: str) -> str:
    # prometheus_client writes bucket bounds as floats ("1.0", not "1").
    return bound if bound == "+Inf" else repr(float(bound))


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = CounterSeries(
            "keeptrusts_requests",
            "Requests by model, target, HTTP status and verdict",
            ("endpoint", "model", "target", "status", "verdict"),
        )
        self.latency = HistogramSeries(
            "keeptrusts_request_seconds", "Total request time", ("endpoint",)
        )
        self.upstream = HistogramSeries(
            "keeptrusts_upstream_seconds", "Time waiting on upstream attempts", ("target",)
        )
        self.policy = HistogramSeries(
            "keeptrusts_policy_seconds", "Time per policy hook", ("policy", "phase")
        )
        self.policy_verdicts = CounterSeries(
            "keeptrusts_policy_verdicts", "Verdicts per policy", ("policy", "phase", "verdict")
        )
        self.tokens = CounterSeries(
            "keeptrusts_tokens", "Tokens by model and kind", ("model", "kind")
        )
        self.in_flight = 0
        self._series = (
            self.requests,
            self.latency,
            self.upstream,
            self.policy,
            self.policy_verdicts,
            self.tokens,
        )
        self._live: dict[str, tuple[str, Callable[[], Any]]] = {}
        self.registry.register(_Collector(self))

    def watch(self, name: str, doc: str, read: Callable[[], Any]) -> None:
        """Expose a live value, read at scrape time (e.g. the audit queue depth)."""
        self._live[name] = (doc, read)

    def observe(self, ctx: RequestContext, verdict: str | None = None) -> None:
        """Count a finished request (``verdict``: its audit verdict, if already known)."""
        if verdict is None:
            verdict = decide_verdict(ctx)[0]
        target = ctx.target.id if ctx.target else ""
        # Only models the gateway serves become label values: a client sending random
        # names must not grow the series (and this process's memory) without bound.
        model = ctx.model if ctx.route is not None else "unknown"
        self.requests.inc((ctx.endpoint, model, target, str(ctx.status), verdict))
        self.latency.observe((ctx.endpoint,), ctx.elapsed_ms() / 1000.0)
        for a in ctx.attempts:
            self.upstream.observe((a.target_id,), a.latency_ms / 1000.0)
        for p in ctx.policy_results:
            self.policy_verdicts.inc((p.name, p.phase, p.verdict))
            if p.verdict != "skipped":
                self.policy.observe((p.name, p.phase), p.latency_ms / 1000.0)
        usage = ctx.usage
        if usage:
            for kind in ("prompt_tokens", "completion_tokens"):
                n = usage.get(kind)
                if isinstance(n, int) and n > 0:
                    self.tokens.inc((model, kind), n)

    def render(self) -> bytes:
        return generate_latest(self.registry)

    def families(self) -> Iterator[Metric]:
        for series in self._series:
            yield series.family()
        yield GaugeMetricFamily(
            "keeptrusts_in_flight_requests", "Requests in progress", value=self.in_flight
        )
        for name, (doc, read) in self._live.items():
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


class _Collector:
    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        return self.metrics.families()
