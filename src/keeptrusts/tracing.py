"""OpenTelemetry traces (optional extra ``keeptrusts[otel]``).

A request becomes a server span with a child span per policy hook and per upstream attempt,
carrying GenAI semantic-convention attributes. The spans are built when the request ends,
from the timings the request context already records, so tracing adds nothing to the hot
path but one id per request. The incoming W3C ``traceparent`` is the parent, and upstream
calls carry a ``traceparent`` naming the request span, so the provider's spans join the
same trace.
"""

from __future__ import annotations

import json
import os
import secrets
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from keeptrusts.context import RequestContext


class TracingUnavailable(Exception):
    """Tracing was asked for but the OpenTelemetry SDK (or the exporter) is not installed."""


@dataclass(frozen=True, slots=True)
class TraceContext:
    trace_id: int
    span_id: int
    parent_span_id: int | None
    sampled: bool

    def headers(self) -> dict[str, str]:
        flags = "01" if self.sampled else "00"
        return {"traceparent": f"00-{self.trace_id:032x}-{self.span_id:016x}-{flags}"}


def parse_traceparent(value: str | None) -> tuple[int, int, bool] | None:
    """Return (trace id, parent span id, sampled) from a W3C traceparent, or None."""
    if not value:
        return None
    parts = value.strip().split("-")
    if len(parts) < 4 or len(parts[1]) != 32 or len(parts[2]) != 16:
        return None
    try:
        trace_id, span_id, flags = int(parts[1], 16), int(parts[2], 16), int(parts[3][:2], 16)
    except ValueError:
        return None
    if trace_id == 0 or span_id == 0:
        return None
    return trace_id, span_id, bool(flags & 1)


class Tracing:
    """Owns the tracer provider; ``begin`` and ``end`` bracket each request."""

    def __init__(self, exporter: str) -> None:
        try:
            from opentelemetry.sdk.resources import Resource
            from opentelemetry.sdk.trace import TracerProvider
            from opentelemetry.sdk.trace.export import BatchSpanProcessor
            from opentelemetry.sdk.trace.id_generator import RandomIdGenerator
        except ImportError as exc:
            raise TracingUnavailable(
                "tracing needs the OpenTelemetry SDK: pip install 'keeptrusts[otel]'"
            ) from exc

        class PresetIds(RandomIdGenerator):
            """Hands out the ids already sent upstream in ``traceparent``."""

            local = threading.local()

            def generate_span_id(self) -> int:
                preset = getattr(self.local, "span_id", None)
                if preset is not None:
                    self.local.span_id = None
                    return preset
                return super().generate_span_id()

            def generate_trace_id(self) -> int:
                preset = getattr(self.local, "trace_id", None)
                if preset is not None:
                    self.local.trace_id = None
                    return preset
                return super().generate_trace_id()

        self._ids = PresetIds()
        resource = Resource.create(
            {"service.name": os.environ.get("OTEL_SERVICE_NAME", "keeptrusts-gateway")}
        )
        self.provider = TracerProvider(resource=resource, id_generator=self._ids)
        self.provider.add_span_processor(BatchSpanProcessor(_exporter(exporter)))
        self.tracer = self.provider.get_tracer("keeptrusts")

    def begin(self, ctx: RequestContext, headers: Mapping[str, str]) -> None:
        parent = parse_traceparent(headers.get("traceparent"))
        span_id = secrets.randbits(64) or 1
        if parent is None:
            ctx.trace = TraceContext(secrets.randbits(128) or 1, span_id, None, True)
        else:
            ctx.trace = TraceContext(parent[0], span_id, parent[1], parent[2])

    def end(self, ctx: RequestContext, verdict: str) -> None:
        trace = ctx.trace
        if trace is None or not trace.sampled:
            return
        from opentelemetry import trace as otel
        from opentelemetry.trace import NonRecordingSpan, SpanContext, SpanKind, TraceFlags

        def ns(perf: float) -> int:
            return int((ctx.timestamp + (perf - ctx.started)) * 1e9)

        parent_ctx = None
        if trace.parent_span_id is not None:
            remote = SpanContext(
                trace.trace_id,
                trace.parent_span_id,
                is_remote=True,
                trace_flags=TraceFlags(TraceFlags.SAMPLED),
            )
            parent_ctx = otel.set_span_in_context(NonRecordingSpan(remote))
        else:
            self._ids.local.trace_id = trace.trace_id
        self._ids.local.span_id = trace.span_id
        op = "embeddings" if ctx.endpoint == "embeddings" else "chat"
        root = self.tracer.start_span(
            f"{op} {ctx.model}",
            context=parent_ctx,
            kind=SpanKind.SERVER,
            start_time=ns(ctx.started),
            attributes=_request_attributes(ctx, op, verdict),
        )
        child_ctx = otel.set_span_in_context(root)
        for r in ctx.policy_results:
            if r.verdict == "skipped" or not r.started_at:
                continue
            span = self.tracer.start_span(
                f"policy {r.name}",
                context=child_ctx,
                start_time=ns(r.started_at),
                attributes={
                    "keeptrusts.policy.name": r.name,
                    "keeptrusts.policy.phase": r.phase,
                    "keeptrusts.policy.verdict": r.verdict,
                    **({"keeptrusts.policy.score": r.score} if r.score is not None else {}),
                },
            )
            span.end(ns(r.started_at) + int(r.latency_ms * 1e6))
        for a in ctx.attempts:
            span = self.tracer.start_span(
                f"{op} {a.target_id}",
                context=child_ctx,
                kind=SpanKind.CLIENT,
                start_time=ns(a.started_at),
                attributes={
                    "gen_ai.provider.name": a.provider,
                    "keeptrusts.target.id": a.target_id,
                    "keeptrusts.attempt.outcome": a.outcome,
                    **({"http.response.status_code": a.status} if a.status else {}),
                },
            )
            span.end(ns(a.started_at) + int(a.latency_ms * 1e6))
        root.end(ns(ctx.started) + int(ctx.elapsed_ms() * 1e6))

    def shutdown(self) -> None:
        self.provider.shutdown()


def _request_attributes(ctx: RequestContext, op: str, verdict: str) -> dict[str, Any]:
    usage = ctx.usage or {}
    attrs: dict[str, Any] = {
        "gen_ai.operation.name": op,
        "gen_ai.request.model": ctx.model,
        "http.response.status_code": ctx.status,
        "keeptrusts.request_id": ctx.request_id,
        "keeptrusts.verdict": verdict,
        "keeptrusts.overhead_ms": round(ctx.overhead_ms(), 3),
    }
    if ctx.target is not None:
        attrs["gen_ai.provider.name"] = ctx.target.provider
        attrs["keeptrusts.target.id"] = ctx.target.id
    max_tokens = ctx.body.get("max_tokens") if isinstance(ctx.body, dict) else None
    if isinstance(max_tokens, int):
        attrs["gen_ai.request.max_tokens"] = max_tokens
    for ours, theirs in (("prompt_tokens", "input"), ("completion_tokens", "output")):
        if isinstance(usage.get(ours), int):
            attrs[f"gen_ai.usage.{theirs}_tokens"] = usage[ours]
    if ctx.error:
        attrs["error.type"] = ctx.error
    return attrs


def _exporter(spec: str) -> Any:
    """``otlp`` (OTLP/HTTP, endpoint from OTEL_EXPORTER_OTLP_*), ``console`` or ``jsonl:PATH``."""
    from opentelemetry.sdk.trace.export import ConsoleSpanExporter, SpanExporter, SpanExportResult

    if spec == "console":
        return ConsoleSpanExporter()
    if spec == "otlp":
        try:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        except ImportError as exc:
            raise TracingUnavailable(
                "--otel otlp needs opentelemetry-exporter-otlp-proto-http"
            ) from exc
        return OTLPSpanExporter()
    if spec.startswith("jsonl:"):
        path = spec.split(":", 1)[1]

        class JsonLinesExporter(SpanExporter):
            """One JSON object per finished span, appended to a file."""

            def export(self, spans: Sequence[Any]) -> SpanExportResult:
                with open(path, "a", encoding="utf-8") as out:
                    for s in spans:
                        out.write(
                            json.dumps(
                                {
                                    "name": s.name,
                                    "trace_id": f"{s.context.trace_id:032x}",
                                    "span_id": f"{s.context.span_id:016x}",
                                    "parent_id": f"{s.parent.span_id:016x}" if s.parent else None,
                                    "kind": s.kind.name,
                                    "start": s.start_time,
                                    "end": s.end_time,
                                    "attributes": dict(s.attributes or {}),
                                }
                            )
                            + "\n"
                        )
                return SpanExportResult.SUCCESS

        return JsonLinesExporter()
    raise TracingUnavailable(f"unknown --otel exporter {spec!r}: use otlp, console or jsonl:PATH")
