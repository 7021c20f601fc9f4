"""Streams relayed byte for byte (OpenAI in and out, no output policy): what the client
reads and what the audit event records, against the fake provider."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import base_url_overlay
from tests.fakeprovider import Reply

CONFIG = Path(__file__).resolve().parent.parent / "data" / "providers-seed-shape.yaml"
BODY = {
    "model": "gpt-4o",
    "messages": [{"role": "user", "content": "count"}],
    "stream": True,
    "stream_options": {"include_usage": True},
}
USAGE = {"prompt_tokens": 3, "completion_tokens": 4}


@pytest.fixture
def gw(tmp_path, fp, gateway_factory):  # type: ignore[no-untyped-def]
    return gateway_factory([CONFIG, base_url_overlay(tmp_path, CONFIG, fp.url)])


def _created(text: str) -> str:
    return re.sub(r'"created":\d+', '"created":0', text)


def _event(gw: Any, request_id: str) -> dict[str, Any]:
    """The audit event of ``request_id`` (events are written in batches: poll briefly)."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        r = httpx.get(gw.url + "/keeptrusts/events", headers=gw.admin_headers())
        for ev in r.json()["data"]:
            if ev.get("request_id") == request_id:
                return ev
        time.sleep(0.1)
    raise AssertionError(f"no audit event for {request_id}")


def test_relayed_stream_is_the_upstreams_bytes_and_usage_is_audited(gw, fp) -> None:  # type: ignore[no-untyped-def]
    reply = Reply(text="one two three four", chunks=4, usage=USAGE)
    fp.enqueue(reply)
    upstream = httpx.post(fp.url + "/v1/chat/completions", json=BODY).text
    fp.enqueue(reply)
    r = httpx.post(gw.base_url + "/chat/completions", json=BODY, headers={"x-request-id": "rl-1"})
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/event-stream")
    assert _created(r.text) == _created(upstream)  # ends with the gateway's own [DONE]
    ev = _event(gw, "rl-1")
    assert ev["stream"] is True and ev["status"] == 200 and ev["verdict"] == "allow"
    assert ev["usage"] == {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}
    assert ev["attempts"][0]["outcome"] == "ok"


def test_relayed_stream_cut_by_an_upstream_error_ends_with_an_error_event(gw, fp) -> None:  # type: ignore[no-untyped-def]
    fp.enqueue(Reply(text="a b c d e f", chunks=6, cut_after=3, stream_error="upstream broke"))
    r = httpx.post(gw.base_url + "/chat/completions", json=BODY, headers={"x-request-id": "rl-2"})
    frames = [f for f in r.text.split("\n\n") if f]
    assert "[DONE]" not in r.text
    assert '"content":" b"' in r.text  # what came before the error reached the client
    assert "upstream broke" in frames[-1] and '"error"' in frames[-1]
    ev = _event(gw, "rl-2")
    assert ev["status"] == 502 and ev["verdict"] == "error"
    assert ev["attempts"][0]["outcome"] == "stream_cut"


def test_stream_ending_without_done_is_an_error_not_a_clean_end(gw, fp) -> None:  # type: ignore[no-untyped-def]
    fp.enqueue(Reply(text="a b c d", chunks=4, cut_after=3))
    r = httpx.post(gw.base_url + "/chat/completions", json=BODY, headers={"x-request-id": "rl-3"})
    assert "[DONE]" not in r.text
    assert '"error"' in [f for f in r.text.split("\n\n") if f][-1]
    assert _event(gw, "rl-3")["status"] >= 500
