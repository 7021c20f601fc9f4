"""Prometheus exposition from plain counters: names, labels and buckets as before."""

from __future__ import annotations

from keeptrusts.context import Attempt, PolicyResult, RequestContext
from keeptrusts.server.metrics import Metrics


def _ctx(**kw) -> RequestContext:  # type: ignore[no-untyped-def]
    ctx = RequestContext(
        request_id="r", endpoint="chat.completions", body={}, model="gpt-4o", stream=False,
        headers={}, route=object(),
    )  # fmt: skip
    for k, v in kw.items():
        setattr(ctx, k, v)
    return ctx


def test_observed_requests_render_as_counters_and_histograms() -> None:
    m = Metrics()
    ctx = _ctx(
        attempts=[Attempt("openai-a", "openai", "ok", 200, 3.0)],
        policy_results=[
            PolicyResult("pii-detector", "input", "redact", 0.7, findings={"EMAIL": 1})
        ],
        usage={"prompt_tokens": 5, "completion_tokens": 7},
    )
    m.in_flight += 2
    m.observe(ctx)
    m.observe(ctx)
    m.watch("keeptrusts_audit_queue_depth", "Audit events waiting", lambda: 4)
    text = m.render().decode()
    assert (
        'keeptrusts_requests_total{endpoint="chat.completions",model="gpt-4o",status="200",'
        'target="",verdict="redact"} 2.0'
    ) in text
    assert 'keeptrusts_upstream_seconds_bucket{le="0.0025",target="openai-a"} 0.0' in text
    assert 'keeptrusts_upstream_seconds_bucket{le="0.005",target="openai-a"} 2.0' in text
    assert 'keeptrusts_upstream_seconds_bucket{le="+Inf",target="openai-a"} 2.0' in text
    assert 'keeptrusts_upstream_seconds_count{target="openai-a"} 2.0' in text
    assert 'keeptrusts_upstream_seconds_sum{target="openai-a"} 0.006' in text
    assert (
        'keeptrusts_policy_seconds_bucket{le="0.001",phase="input",policy="pii-detector"} 2.0'
        in text
    )
    assert (
        'keeptrusts_policy_verdicts_total{phase="input",policy="pii-detector",verdict="redact"} 2.0'
    ) in text
    assert 'keeptrusts_tokens_total{kind="completion_tokens",model="gpt-4o"} 14.0' in text
    assert "keeptrusts_in_flight_requests 2.0" in text
    assert "keeptrusts_audit_queue_depth 4.0" in text


def test_unknown_models_never_become_labels() -> None:
    m = Metrics()
    m.observe(_ctx(model="random-name-123", route=None, status=404))
    text = m.render().decode()
    assert "random-name-123" not in text and 'model="unknown"' in text
