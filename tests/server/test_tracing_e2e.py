"""OpenTelemetry traces: one server span per request, children per policy and attempt."""

from __future__ import annotations

import json

import httpx

from tests.conftest import write_yaml


def test_spans_parent_propagation_and_genai_attributes(tmp_path, fp, gateway_factory) -> None:  # type: ignore[no-untyped-def]
    cfg = write_yaml(
        tmp_path / "c.yaml",
        {
            "pack": {"name": "t", "version": "1", "enabled": True},
            "providers": {
                "targets": [
                    {
                        "id": "o",
                        "provider": "openai:chat:gpt-4o",
                        "base_url": fp.url + "/v1",
                        "api_key": "sk-x",
                    }
                ]
            },
            "policies": {"chain": ["dlp-filter"]},
            "policy": {"dlp-filter": {"blocked_terms": ["nope"]}},
        },
    )
    spans_file = tmp_path / "spans.jsonl"
    gw = gateway_factory([cfg], extra_args=["--otel", f"jsonl:{spans_file}"])
    parent_trace = "4bf92f3577b34da6a3ce929d0e0e4736"
    r = httpx.post(
        gw.base_url + "/chat/completions",
        json={"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]},
        headers={"traceparent": f"00-{parent_trace}-00f067aa0ba902b7-01"},
    )
    assert r.status_code == 200
    # The upstream call carries our request span as its parent, in the caller's trace.
    upstream_tp = fp.last.headers["traceparent"]
    assert upstream_tp.startswith(f"00-{parent_trace}-")
    assert gw.stop() == 0  # shutdown flushes the span processor
    spans = [json.loads(line) for line in spans_file.read_text().splitlines()]
    root = next(s for s in spans if s["kind"] == "SERVER")
    assert root["trace_id"] == parent_trace and root["parent_id"] == "00f067aa0ba902b7"
    assert root["span_id"] == upstream_tp.split("-")[2]
    assert root["name"] == "chat gpt-4o"
    attrs = root["attributes"]
    assert attrs["gen_ai.operation.name"] == "chat" and attrs["gen_ai.request.model"] == "gpt-4o"
    assert attrs["gen_ai.provider.name"] == "openai" and attrs["keeptrusts.verdict"] == "allow"
    assert attrs["gen_ai.usage.input_tokens"] >= 1
    children = [s for s in spans if s["parent_id"] == root["span_id"]]
    names = {s["name"] for s in children}
    assert {"policy dlp-filter", "chat o"} <= names
    for child in children:
        assert root["start"] <= child["start"] <= child["end"] <= root["end"] + 1_000_000
