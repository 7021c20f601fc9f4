"""The core gateway through the real ``openai`` SDK, against the fake provider."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import openai
import pytest

from tests.conftest import EXAMPLES, FAKE_KEYS, base_url_overlay, write_yaml
from tests.fakeprovider import Reply, ToolCall

DATA = Path(__file__).resolve().parent.parent / "data"
CONFIG = DATA / "providers-seed-shape.yaml"


@pytest.fixture
def gw(tmp_path, fp, gateway_factory):  # type: ignore[no-untyped-def]
    return gateway_factory([CONFIG, base_url_overlay(tmp_path, CONFIG, fp.url)])


def client(gw, **kw) -> openai.OpenAI:  # type: ignore[no-untyped-def]
    return openai.OpenAI(base_url=gw.base_url, api_key="unused", max_retries=0, **kw)


def test_seed_client_code_runs_unchanged(gw, fp) -> None:  # type: ignore[no-untyped-def]
    fp.enqueue(Reply(text="Pods are placed by the scheduler."))
    response = client(gw).chat.completions.create(
        model="gpt-4o",
        messages=[{"role": "user", "content": "Explain Kubernetes pod scheduling."}],
        max_tokens=512,
    )
    assert response.choices[0].message.content == "Pods are placed by the scheduler."
    sent = fp.last
    assert sent.path == "/v1/chat/completions"
    assert sent.json["model"] == "gpt-4o" and sent.json["max_tokens"] == 512
    # The target's own secret goes upstream, never the client's dummy key.
    assert sent.headers["authorization"] == f"Bearer {FAKE_KEYS['OPENAI_API_KEY']}"


@pytest.mark.parametrize(
    ("model", "key", "upstream_model"),
    [
        ("llama-3.3-70b-versatile", "GROQ_API_KEY", "llama-3.3-70b-versatile"),
        ("mistral-large-latest", "MISTRAL_API_KEY", "mistral-large-latest"),
        ("groq-llama", "GROQ_API_KEY", "llama-3.3-70b-versatile"),
        ("gpt-4o-mini", "OPENAI_API_KEY", "gpt-4o-mini"),
    ],
)
def test_openai_compatible_providers(gw, fp, model, key, upstream_model) -> None:  # type: ignore[no-untyped-def]
    r = client(gw).chat.completions.create(
        model=model, messages=[{"role": "user", "content": "ping"}], seed=7, logit_bias={"1": 2}
    )
    assert "ping" in r.choices[0].message.content
    assert fp.last.json["model"] == upstream_model
    assert fp.last.headers["authorization"] == f"Bearer {FAKE_KEYS[key]}"
    # Parameters the gateway does not know pass through untouched.
    assert fp.last.json["seed"] == 7 and fp.last.json["logit_bias"] == {"1": 2}


def test_target_without_secret_forwards_client_key(gw, fp) -> None:  # type: ignore[no-untyped-def]
    c = openai.OpenAI(base_url=gw.base_url, api_key="client-own-key", max_retries=0)
    c.chat.completions.create(model="llama-local", messages=[{"role": "user", "content": "hi"}])
    assert fp.last.json["model"] == "meta-llama/Llama-3.1-8B-Instruct"
    assert fp.last.headers["authorization"] == "Bearer client-own-key"


def test_streaming_with_usage_ends_with_done(gw, fp) -> None:  # type: ignore[no-untyped-def]
    fp.enqueue(
        Reply(
            text="one two three four", chunks=4, usage={"prompt_tokens": 3, "completion_tokens": 4}
        )
    )
    stream = client(gw).chat.completions.create(
        model="gpt-4o",
        messages=[{"role": "user", "content": "count"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "one two three four"
    assert chunks[-1].usage.total_tokens == 7
    raw = httpx.post(
        gw.base_url + "/chat/completions",
        json={"model": "gpt-4o", "messages": [{"role": "user", "content": "x"}], "stream": True},
    )
    assert raw.headers["content-type"].startswith("text/event-stream")
    assert raw.text.rstrip().endswith("data: [DONE]")


async def test_async_client_streams(gw, fp) -> None:  # type: ignore[no-untyped-def]
    fp.enqueue(Reply(text="async works", chunks=2))
    c = openai.AsyncOpenAI(base_url=gw.base_url, api_key="unused", max_retries=0)
    stream = await c.chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "a"}], stream=True
    )
    pieces = [ch.choices[0].delta.content or "" async for ch in stream if ch.choices]
    assert "".join(pieces) == "async works"
    await c.close()


def test_anthropic_translation_through_gateway(gw, fp) -> None:  # type: ignore[no-untyped-def]
    fp.enqueue(Reply(text="Bonjour", usage={"prompt_tokens": 11, "completion_tokens": 2}))
    r = client(gw).chat.completions.create(
        model="claude-3-5-sonnet-20241022",
        messages=[
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Say hello in French"},
            {"role": "assistant", "content": "Sure."},
            {"role": "user", "content": [{"type": "text", "text": "Now."}]},
        ],
        stop=["END"],
        temperature=0.2,
    )
    assert r.choices[0].message.content == "Bonjour"
    assert r.choices[0].finish_reason == "stop"
    assert r.usage.prompt_tokens == 11 and r.usage.completion_tokens == 2
    sent = fp.last
    assert sent.path == "/v1/messages"
    assert sent.headers["x-api-key"] == FAKE_KEYS["ANTHROPIC_API_KEY"]
    assert "authorization" not in sent.headers
    assert sent.headers["anthropic-version"] == "2023-06-01"
    assert sent.json["system"] == "Be brief."
    assert sent.json["stop_sequences"] == ["END"]
    assert sent.json["max_tokens"] > 0  # required by Anthropic, defaulted
    assert [m["role"] for m in sent.json["messages"]] == ["user", "assistant", "user"]


def test_anthropic_tools_round_trip_and_stream(gw, fp) -> None:  # type: ignore[no-untyped-def]
    tools = [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Weather for a city",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
            },
        }
    ]
    fp.enqueue(
        Reply(tool_calls=[ToolCall("get_weather", {"city": "Paris"}, id="toolu_1")], chunks=3)
    )
    stream = client(gw).chat.completions.create(
        model="claude-3-5-sonnet-20241022",
        messages=[{"role": "user", "content": "weather in Paris?"}],
        tools=tools,
        tool_choice="auto",
        stream=True,
    )
    args, name, finish = "", None, None
    for ch in stream:
        for choice in ch.choices:
            for tc in choice.delta.tool_calls or []:
                name = tc.function.name or name
                args += tc.function.arguments or ""
            finish = choice.finish_reason or finish
    assert name == "get_weather" and json.loads(args) == {"city": "Paris"}
    assert finish == "tool_calls"
    assert fp.last.json["tools"][0]["input_schema"]["properties"]["city"]["type"] == "string"
    # Second turn: the tool result goes back as an Anthropic tool_result block.
    client(gw).chat.completions.create(
        model="claude-3-5-sonnet-20241022",
        messages=[
            {"role": "user", "content": "weather in Paris?"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "toolu_1",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "toolu_1", "content": "18C and sunny"},
        ],
        tools=tools,
    )
    msgs = fp.last.json["messages"]
    assert msgs[1]["content"][0] == {
        "type": "tool_use",
        "id": "toolu_1",
        "name": "get_weather",
        "input": {"city": "Paris"},
    }
    assert msgs[2]["content"][0]["type"] == "tool_result"
    assert msgs[2]["content"][0]["tool_use_id"] == "toolu_1"


def test_models_lists_every_name(gw) -> None:  # type: ignore[no-untyped-def]
    names = {m.id for m in client(gw).models.list()}
    assert {"gpt-4o", "openai-gpt4o", "claude-3-5-sonnet-20241022", "llama-local"} <= names


def test_unknown_model_is_404_listing_models(gw) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(openai.NotFoundError) as e:
        client(gw).chat.completions.create(
            model="gpt-9", messages=[{"role": "user", "content": "x"}]
        )
    err = e.value.body
    assert err["code"] == "model_not_found" and "gpt-4o" in err["message"]


def test_bad_requests_get_clear_400_and_413(gw) -> None:  # type: ignore[no-untyped-def]
    r = httpx.post(
        gw.base_url + "/chat/completions", content=b"{not json", headers={"x-request-id": "abc-1"}
    )
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_json"
    assert r.headers["x-request-id"] == "abc-1"
    r = httpx.post(gw.base_url + "/chat/completions", json={"model": "gpt-4o", "messages": []})
    assert r.status_code == 400 and r.json()["error"]["param"] == "messages"
    r = httpx.post(
        gw.base_url + "/chat/completions",
        json={
            "model": "gpt-4o",
            "messages": [{"role": "user", "content": "x"}],
            "max_tokens": "lots",
        },
    )
    assert r.status_code == 400 and r.json()["error"]["param"] == "max_tokens"
    big = "x" * (11 * 1024 * 1024)
    r = httpx.post(
        gw.base_url + "/chat/completions",
        json={"model": "gpt-4o", "messages": [{"role": "user", "content": big}]},
    )
    assert r.status_code == 413 and set(r.json()["error"]) >= {"message", "type", "param", "code"}
    assert r.headers["x-request-id"]


def test_upstream_errors_map_to_statuses(gw, fp) -> None:  # type: ignore[no-untyped-def]
    c = client(gw, timeout=30)
    fp.enqueue(
        Reply(
            status=400,
            body={"error": {"message": "bad temperature", "type": "invalid_request_error"}},
        )
    )
    with pytest.raises(openai.BadRequestError) as e:
        c.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "x"}])
    assert "bad temperature" in e.value.message
    fp.enqueue(Reply(reset=True))
    with pytest.raises(openai.APIStatusError) as e:
        c.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "x"}])
    assert e.value.status_code == 502


def test_upstream_timeout_is_504(tmp_path, fp, gateway_factory) -> None:  # type: ignore[no-untyped-def]
    overlay = write_yaml(
        tmp_path / "t.yaml",
        {
            "providers": {
                "targets": [
                    {
                        "id": "openai-gpt4o",
                        "base_url": fp.url + "/v1",
                        "timeouts": {"first_byte": 0.5},
                    }
                ]
            }
        },
    )
    gw = gateway_factory([CONFIG, base_url_overlay(tmp_path, CONFIG, fp.url), overlay])
    fp.enqueue(Reply(hang=True))
    with pytest.raises(openai.APIStatusError) as e:
        client(gw).chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": "x"}]
        )
    assert e.value.status_code == 504


def test_stream_cut_mid_answer_ends_with_error_not_done(gw, fp) -> None:  # type: ignore[no-untyped-def]
    fp.enqueue(Reply(text="a b c d e f", chunks=6, cut_after=3))
    r = httpx.post(
        gw.base_url + "/chat/completions",
        json={"model": "gpt-4o", "messages": [{"role": "user", "content": "x"}], "stream": True},
    )
    assert "[DONE]" not in r.text
    assert '"error"' in r.text.strip().splitlines()[-1]
    fp.enqueue(Reply(text="a b c d e f", chunks=6, cut_after=3))
    with pytest.raises(openai.APIError):
        list(
            client(gw).chat.completions.create(
                model="gpt-4o", messages=[{"role": "user", "content": "x"}], stream=True
            )
        )


def test_missing_env_key_marks_target_unavailable(tmp_path, fp, gateway_factory) -> None:  # type: ignore[no-untyped-def]
    env = {k: v for k, v in FAKE_KEYS.items() if k != "GROQ_API_KEY"}
    gw = gateway_factory([CONFIG, base_url_overlay(tmp_path, CONFIG, fp.url)], env=env)
    health = httpx.get(gw.url + "/health").json()
    assert health["status"] == "degraded"
    assert (
        health["providers"]["groq-llama"]
        == "unavailable: environment variable GROQ_API_KEY is not set"
    )
    assert health["providers"]["openai-gpt4o"] == "available"
    with pytest.raises(openai.APIStatusError) as e:
        client(gw).chat.completions.create(
            model="llama-3.3-70b-versatile", messages=[{"role": "user", "content": "x"}]
        )
    assert e.value.status_code == 503 and "GROQ_API_KEY" in e.value.message
    log = gw.log()
    assert "GROQ_API_KEY is not set" in log
    for secret in FAKE_KEYS.values():
        assert secret not in log


def test_startup_banner_and_health_shape(gw) -> None:  # type: ignore[no-untyped-def]
    log = gw.log()
    assert "providers-test@1.0.0" in log
    assert (
        "target anthropic-sonnet: provider=anthropic model=claude-3-5-sonnet-20241022 available"
        in log
    )
    resp = httpx.get(gw.url + "/health", headers={"x-request-id": "probe-1"})
    assert resp.headers["x-request-id"] == "probe-1"
    assert httpx.get(gw.url + "/v1/models").headers["x-request-id"].startswith("req_")
    h = resp.json()
    assert set(h) >= {"status", "version", "uptime_seconds", "pack", "providers", "policies_loaded"}
    assert h["status"] == "healthy"


def test_invalid_config_exits_before_binding(tmp_path) -> None:  # type: ignore[no-untyped-def]
    bad = tmp_path / "bad.yaml"
    bad.write_text(CONFIG.read_text().replace("chain: []", "chain: [dlp-fliter]"))
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "keeptrusts.cli.main",
            "gateway",
            "run",
            "--listen",
            "127.0.0.1:1",
            "--policy-config",
            str(bad),
            "--state-dir",
            str(tmp_path / "s"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == 1
    assert f"{bad}:" in res.stderr and "did you mean 'dlp-filter'" in res.stderr


def test_sigterm_drains_in_flight_and_exits_zero(gw, fp) -> None:  # type: ignore[no-untyped-def]
    fp.enqueue(Reply(text="slow answer", delay_first_byte=1.0))
    result: dict = {}

    def call() -> None:
        result["r"] = client(gw, timeout=20).chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": "x"}]
        )

    t = threading.Thread(target=call)
    t.start()
    time.sleep(0.4)
    assert gw.stop(signal.SIGTERM) == 0
    t.join(10)
    assert result["r"].choices[0].message.content == "slow answer"


def test_seed_configs_run_with_overlay(tmp_path, fp, gateway_factory) -> None:  # type: ignore[no-untyped-def]
    cfg = EXAMPLES / "pattern-a-policy-config.yaml"
    gw = gateway_factory([cfg, base_url_overlay(tmp_path, cfg, fp.url)])
    r = client(gw).chat.completions.create(
        model="claude-3-5-sonnet-20241022", messages=[{"role": "user", "content": "Hello"}]
    )
    assert r.choices[0].message.content
    assert fp.last.path == "/v1/messages"
