"""Routing through the real gateway process and the openai SDK, with faults injected.

``smart`` is a group of an OpenAI target (``primary``) and an Anthropic one (``backup``);
``tiny-model`` is one target capped at one request in flight with no queue.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import openai
import pytest

from tests.conftest import write_yaml
from tests.fakeprovider import Reply

CONFIG = Path(__file__).resolve().parent.parent / "data" / "routing-groups.yaml"
ALWAYS = 10**6


@pytest.fixture
def gw(tmp_path, fp, gateway_factory):  # type: ignore[no-untyped-def]
    overlay = write_yaml(
        tmp_path / "overlay.yaml",
        {
            "providers": {
                "targets": [
                    {"id": "primary", "base_url": fp.url + "/primary/v1"},
                    {"id": "backup", "base_url": fp.url + "/backup"},
                    {"id": "tiny", "base_url": fp.url + "/tiny/v1"},
                ]
            }
        },
    )
    return gateway_factory([CONFIG, overlay])


def client(gw) -> openai.OpenAI:  # type: ignore[no-untyped-def]
    return openai.OpenAI(base_url=gw.base_url, api_key="unused", max_retries=0, timeout=20)


def paths(fp) -> list[str]:  # type: ignore[no-untyped-def]
    return [r.path for r in fp.requests]


def sse_lines(gw, model: str = "smart") -> list[str]:  # type: ignore[no-untyped-def]
    r = httpx.post(
        gw.base_url + "/chat/completions",
        json={"model": model, "messages": [{"role": "user", "content": "x"}], "stream": True},
        timeout=20,
    )
    assert r.status_code == 200
    return [ln for ln in r.text.splitlines() if ln.startswith("data: ")]


def test_group_falls_back_across_providers(gw, fp) -> None:  # type: ignore[no-untyped-def]
    fp.enqueue(Reply(status=500, match_path="/primary/"), Reply(text="from claude"))
    r = client(gw).chat.completions.create(
        model="smart", messages=[{"role": "user", "content": "hello"}]
    )
    assert r.choices[0].message.content == "from claude"
    assert paths(fp) == ["/primary/v1/chat/completions", "/backup/v1/messages"]
    assert fp.requests[0].json["model"] == "gpt-4o"
    assert fp.requests[1].json["model"] == "claude-sonnet-4-5"
    # Streaming: the same fallback, translated from Anthropic events.
    fp.enqueue(Reply(status=503, match_path="/primary/"), Reply(text="streamed claude"))
    stream = client(gw).chat.completions.create(
        model="smart", messages=[{"role": "user", "content": "hello"}], stream=True
    )
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert text == "streamed claude"


def test_time_to_first_token_timeout_falls_back(gw, fp) -> None:  # type: ignore[no-untyped-def]
    fp.enqueue(Reply(text="too slow", delay_between_chunks=3, match_path="/primary/"))
    fp.enqueue(Reply(text="quick answer", match_path="/backup/"))
    lines = sse_lines(gw)
    assert lines[-1] == "data: [DONE]"
    assert "quick answer" in "".join(lines) and "too slow" not in "".join(lines)


def test_stream_cut_mid_answer_ends_with_error_event(gw, fp) -> None:  # type: ignore[no-untyped-def]
    fp.enqueue(Reply(text="one two three four", chunks=4, cut_after=3, match_path="/primary/"))
    lines = sse_lines(gw)
    assert "[DONE]" not in "".join(lines)
    assert '"error"' in lines[-1]
    assert paths(fp) == ["/primary/v1/chat/completions"]  # no second answer spliced in


def test_no_retry_after_a_400_or_a_policy_block(gw, fp) -> None:  # type: ignore[no-untyped-def]
    c = client(gw)
    fp.enqueue(Reply(status=400, match_path="/primary/"))
    with pytest.raises(openai.BadRequestError):
        c.chat.completions.create(model="smart", messages=[{"role": "user", "content": "x"}])
    assert len(fp.requests) == 1
    # Input blocked by a policy: no upstream request at all.
    fp.reset()
    with pytest.raises(openai.APIStatusError) as e:
        c.chat.completions.create(
            model="smart", messages=[{"role": "user", "content": "about Project Nightingale"}]
        )
    assert e.value.status_code == 409 and fp.requests == []
    # Output blocked: one upstream answer, not re-asked of the next target.
    fp.enqueue(Reply(text="Project Nightingale details", match_path="/primary/"))
    with pytest.raises(openai.APIStatusError) as e:
        c.chat.completions.create(model="smart", messages=[{"role": "user", "content": "x"}])
    assert e.value.status_code == 409
    assert paths(fp) == ["/primary/v1/chat/completions"]


def test_health_and_metrics_show_breakers(gw, fp) -> None:  # type: ignore[no-untyped-def]
    fp.enqueue(Reply(status=500, match_path="/primary/", times=ALWAYS))
    for _ in range(4):
        r = client(gw).chat.completions.create(
            model="smart", messages=[{"role": "user", "content": "x"}]
        )
        assert r.choices[0].message.content == "x"
    health = httpx.get(gw.url + "/health").json()
    assert health["circuit_breakers"] == {"primary": "open", "backup": "closed", "tiny": "closed"}
    assert health["status"] == "degraded"
    assert httpx.get(gw.url + "/keeptrusts/providers/metrics").status_code == 401
    m = httpx.get(gw.url + "/keeptrusts/providers/metrics", headers=gw.admin_headers()).json()
    primary, backup = m["targets"]["primary"], m["targets"]["backup"]
    assert primary["requests"] == 3 and primary["errors"] == {"server_error": 3}
    assert primary["breaker"]["state"] == "open" and primary["breaker"]["opened"] == 1
    assert backup["requests"] == 4 and backup["retries"] == 3
    assert (
        backup["latency_ms"]["p50"] > 0
        and backup["latency_ms"]["p99"] >= backup["latency_ms"]["p50"]
    )
    assert backup["in_flight"] == 0
    assert m["groups"]["smart"] == {"strategy": "ordered", "targets": ["primary", "backup"]}


async def test_load_shedding_under_a_burst(gw, fp) -> None:  # type: ignore[no-untyped-def]
    fp.enqueue(Reply(delay_first_byte=0.5, match_path="/tiny/", times=ALWAYS))
    body = {"model": "tiny-model", "messages": [{"role": "user", "content": "x"}]}
    async with httpx.AsyncClient(timeout=20) as http:
        rs = await asyncio.gather(
            *(http.post(gw.base_url + "/chat/completions", json=body) for _ in range(6))
        )
    statuses = sorted(r.status_code for r in rs)
    assert statuses == [200, 503, 503, 503, 503, 503]
    shed = [r for r in rs if r.status_code == 503]
    assert all(r.headers["retry-after"] == "1" for r in shed)
    assert all(r.json()["error"]["code"] == "overloaded" for r in shed)
    assert len(fp.requests) == 1
