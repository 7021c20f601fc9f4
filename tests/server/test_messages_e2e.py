"""``POST /v1/messages`` through the real ``anthropic`` SDK, served by OpenAI and Anthropic
targets of the fake provider, with and without policies."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import anthropic
import httpx
import pytest

from tests.conftest import FAKE_KEYS, base_url_overlay, start_gateway, write_yaml
from tests.fakeprovider import Reply, ToolCall
from tests.policies.test_governance_e2e import make_key

DATA = Path(__file__).resolve().parent.parent / "data"
SEED = DATA / "providers-seed-shape.yaml"
GPT = "gpt-4o"
CLAUDE = "claude-3-5-sonnet-20241022"
BOTH = pytest.mark.parametrize("model", [GPT, CLAUDE])
TOOLS = [
    {
        "name": "get_weather",
        "description": "Weather for a city",
        "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
    }
]
PII = "Email Maria Garcia at maria.garcia@example.com about ACCT-12345678 please."


@pytest.fixture(scope="module")
def plain(tmp_path_factory, fake) -> Iterator:  # type: ignore[no-untyped-def]
    tmp = tmp_path_factory.mktemp("plain")
    gw = start_gateway(tmp, [SEED, base_url_overlay(tmp, SEED, fake.url)])
    yield gw
    gw.stop()


@pytest.fixture(scope="module")
def governed(tmp_path_factory, fake) -> Iterator:  # type: ignore[no-untyped-def]
    tmp = tmp_path_factory.mktemp("governed")
    config = write_yaml(
        tmp / "governed.yaml",
        {
            "pack": {"name": "messages-test", "version": "1.0.0", "enabled": True},
            "providers": {
                "targets": [
                    {
                        "id": "openai-gpt4o",
                        "provider": f"openai:chat:{GPT}",
                        "base_url": fake.url + "/v1",
                        "secret_key_ref": {"env": "OPENAI_API_KEY"},
                    },
                    {
                        "id": "anthropic-sonnet",
                        "provider": f"anthropic:chat:{CLAUDE}",
                        "base_url": fake.url,
                        "secret_key_ref": {"env": "ANTHROPIC_API_KEY"},
                    },
                ]
            },
            "policies": {"chain": ["dlp-filter", "pii-detector", "rbac"]},
            "policy": {
                "dlp-filter": {
                    "patterns": [
                        {"name": "secret", "regex": "SECRET-[0-9]{4}", "action": "block"},
                        {"name": "account-number", "regex": "ACCT-[0-9]{8}", "action": "redact"},
                    ]
                },
                "pii-detector": {"entities": ["PERSON", "EMAIL_ADDRESS"]},
                "rbac": {
                    "default_role": "anyone",
                    "roles": {
                        "anyone": {"allowed_models": ["*"]},
                        "limited": {"allowed_models": [GPT]},
                    },
                },
            },
        },
    )
    state = tmp / "state"
    key = make_key(state, "limited")["key"]
    gw = start_gateway(tmp, [config], state_dir=state)
    gw.key = key  # type: ignore[attr-defined]
    yield gw
    gw.stop()


def client(gw, key: str = "unused") -> anthropic.Anthropic:  # type: ignore[no-untyped-def]
    return anthropic.Anthropic(base_url=gw.url, api_key=key, max_retries=0, timeout=30)


def ask(text: str = "hi") -> list[dict]:
    return [{"role": "user", "content": text}]


# --- plain gateway: translation both ways -----------------------------------------------


def test_non_stream_served_by_openai_target(plain, fp) -> None:  # type: ignore[no-untyped-def]
    fp.enqueue(Reply(text="Bonjour", usage={"prompt_tokens": 11, "completion_tokens": 2}))
    msg = client(plain).messages.create(
        model=GPT,
        max_tokens=256,
        system="Be brief.",
        messages=[
            {"role": "user", "content": "Say hello in French"},
            {"role": "assistant", "content": "Sure."},
            {"role": "user", "content": [{"type": "text", "text": "Now."}]},
        ],
        stop_sequences=["END"],
        metadata={"user_id": "user-1"},
        # This SDK version no longer takes sampling parameters as arguments.
        extra_body={"temperature": 0.2},
    )
    assert msg.type == "message" and msg.role == "assistant" and msg.id.startswith("msg_")
    assert [b.type for b in msg.content] == ["text"] and msg.content[0].text == "Bonjour"
    assert msg.stop_reason == "end_turn"
    assert msg.usage.input_tokens == 11 and msg.usage.output_tokens == 2
    assert msg._request_id
    sent = fp.last
    assert sent.path == "/v1/chat/completions"
    assert sent.headers["authorization"] == f"Bearer {FAKE_KEYS['OPENAI_API_KEY']}"
    assert sent.json["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Say hello in French"},
        {"role": "assistant", "content": "Sure."},
        {"role": "user", "content": "Now."},
    ]
    assert sent.json["max_tokens"] == 256 and sent.json["stop"] == ["END"]
    assert sent.json["temperature"] == 0.2 and sent.json["user"] == "user-1"


def test_non_stream_served_by_anthropic_target(plain, fp) -> None:  # type: ignore[no-untyped-def]
    fp.enqueue(Reply(text="Hello", usage={"prompt_tokens": 9, "completion_tokens": 1}))
    msg = client(plain).messages.create(
        model=CLAUDE,
        max_tokens=300,
        system="Be brief.",
        messages=ask("greet"),
        stop_sequences=["END"],
        metadata={"user_id": "user-2"},
        extra_body={"temperature": 0.4, "top_k": 7},
    )
    assert msg.id == "msg_fake" and msg.content[0].text == "Hello"
    assert msg.usage.input_tokens == 9 and msg.usage.output_tokens == 1
    sent = fp.last
    assert sent.path == "/v1/messages"
    assert sent.headers["x-api-key"] == FAKE_KEYS["ANTHROPIC_API_KEY"]
    assert "authorization" not in sent.headers
    assert sent.json == {
        "model": CLAUDE,
        "system": "Be brief.",
        "messages": [{"role": "user", "content": "greet"}],
        "max_tokens": 300,
        "stop_sequences": ["END"],
        "temperature": 0.4,
        "top_k": 7,
        "metadata": {"user_id": "user-2"},
    }


@BOTH
def test_stream_text(plain, fp, model) -> None:  # type: ignore[no-untyped-def]
    fp.enqueue(
        Reply(
            text="one two three four", chunks=4, usage={"prompt_tokens": 3, "completion_tokens": 4}
        )
    )
    with client(plain).messages.stream(model=model, max_tokens=64, messages=ask()) as stream:
        pieces = list(stream.text_stream)
        final = stream.get_final_message()
    assert "".join(pieces) == "one two three four" and len(pieces) >= 2
    assert final.content[0].text == "one two three four"
    assert final.stop_reason == "end_turn"
    assert final.usage.input_tokens == 3 and final.usage.output_tokens == 4
    assert fp.last.json["stream"] is True


@BOTH
def test_tool_use_stream_and_tool_result_turn(plain, fp, model) -> None:  # type: ignore[no-untyped-def]
    fp.enqueue(
        Reply(
            text="Checking.",
            tool_calls=[ToolCall("get_weather", {"city": "Paris"}, id="toolu_1")],
            chunks=3,
        )
    )
    partial = []
    with client(plain).messages.stream(
        model=model,
        max_tokens=64,
        messages=ask("weather in Paris?"),
        tools=TOOLS,
        tool_choice={"type": "auto"},
    ) as stream:
        for event in stream:
            if event.type == "input_json":
                partial.append(event.partial_json)
        final = stream.get_final_message()
    assert len(partial) >= 2 and json.loads("".join(partial)) == {"city": "Paris"}
    assert [b.type for b in final.content] == ["text", "tool_use"]
    assert final.content[0].text == "Checking."
    tool = final.content[1]
    assert (tool.id, tool.name, tool.input) == ("toolu_1", "get_weather", {"city": "Paris"})
    assert final.stop_reason == "tool_use"

    fp.enqueue(Reply(text="18C and sunny."))
    answer = client(plain).messages.create(
        model=model,
        max_tokens=64,
        tools=TOOLS,
        messages=[
            *ask("weather in Paris?"),
            {"role": "assistant", "content": [b.model_dump() for b in final.content]},
            {
                "role": "user",
                "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "18C"}],
            },
        ],
    )
    assert answer.content[0].text == "18C and sunny."
    sent = fp.last.json["messages"]
    if model == GPT:
        assert sent[1]["tool_calls"][0]["id"] == "toolu_1"
        assert json.loads(sent[1]["tool_calls"][0]["function"]["arguments"]) == {"city": "Paris"}
        assert sent[2] == {"role": "tool", "tool_call_id": "toolu_1", "content": "18C"}
        assert fp.last.json["tools"][0]["function"]["parameters"] == TOOLS[0]["input_schema"]
    else:
        assert sent[1]["content"] == [
            {"type": "text", "text": "Checking."},
            {
                "type": "tool_use",
                "id": "toolu_1",
                "name": "get_weather",
                "input": {"city": "Paris"},
            },
        ]
        assert sent[2]["content"] == [
            {"type": "tool_result", "tool_use_id": "toolu_1", "content": "18C"}
        ]
        assert fp.last.json["tools"] == TOOLS


def test_non_stream_tool_use(plain, fp) -> None:  # type: ignore[no-untyped-def]
    fp.enqueue(Reply(tool_calls=[ToolCall("get_weather", {"city": "Oslo"}, id="call_9")]))
    msg = client(plain).messages.create(
        model=GPT,
        max_tokens=64,
        messages=ask("weather?"),
        tools=TOOLS,
        tool_choice={"type": "tool", "name": "get_weather", "disable_parallel_tool_use": True},
    )
    assert msg.stop_reason == "tool_use"
    assert [(b.type, b.id, b.input) for b in msg.content] == [
        ("tool_use", "call_9", {"city": "Oslo"})
    ]
    assert fp.last.json["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}
    assert fp.last.json["parallel_tool_calls"] is False


def test_errors_use_anthropic_shape(plain, fp) -> None:  # type: ignore[no-untyped-def]
    c = client(plain)
    with pytest.raises(anthropic.NotFoundError) as e:
        c.messages.create(model="gpt-9", max_tokens=8, messages=ask())
    assert e.value.body["type"] == "error"
    assert e.value.body["error"]["type"] == "not_found_error"
    assert e.value.body["error"]["code"] == "model_not_found"
    fp.enqueue(Reply(status=429))
    with pytest.raises(anthropic.RateLimitError) as e:
        c.messages.create(model=GPT, max_tokens=8, messages=ask())
    assert e.value.body["error"]["type"] == "rate_limit_error"
    r = httpx.post(plain.url + "/v1/messages", json={"model": GPT, "max_tokens": 8})
    assert r.status_code == 400
    assert r.json()["error"]["type"] == "invalid_request_error"
    assert "messages" in r.json()["error"]["message"]
    r = httpx.post(plain.url + "/v1/messages", content=b"{nope")
    assert r.status_code == 400 and r.json()["type"] == "error"


def test_stream_cut_midway_ends_with_error_event(plain, fp) -> None:  # type: ignore[no-untyped-def]
    fp.enqueue(Reply(text="a b c d e f", chunks=6, cut_after=3, stream_error="upstream broke"))
    r = httpx.post(
        plain.url + "/v1/messages",
        json={"model": GPT, "max_tokens": 8, "messages": ask(), "stream": True},
    )
    assert r.headers["content-type"].startswith("text/event-stream")
    assert "event: message_start" in r.text and "message_stop" not in r.text
    last = r.text.strip().split("\n\n")[-1]
    assert last.startswith("event: error")
    assert json.loads(last.split("data: ", 1)[1])["type"] == "error"
    fp.enqueue(Reply(text="a b c d e f", chunks=6, cut_after=3, stream_error="upstream broke"))
    with (
        pytest.raises(anthropic.APIStatusError),
        client(plain).messages.stream(model=GPT, max_tokens=8, messages=ask()) as stream,
    ):
        list(stream.text_stream)


# --- governed gateway: the same chain applies -------------------------------------------


@BOTH
def test_policy_block_is_409(governed, fp, model) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(anthropic.ConflictError) as e:
        client(governed).messages.create(
            model=model, max_tokens=8, messages=ask("the key is SECRET-1234")
        )
    assert e.value.status_code == 409
    err = e.value.body["error"]
    assert err["type"] == "policy_violation" and err["policy"] == "dlp-filter"
    assert err["code"] == "input_blocked" and "secret" in err["message"]
    assert e.value.response.headers["x-should-retry"] == "false"
    with (
        pytest.raises(anthropic.ConflictError),
        client(governed).messages.stream(
            model=model, max_tokens=8, messages=ask("SECRET-9999")
        ) as stream,
    ):
        list(stream)
    assert fp.requests == []


@BOTH
def test_pii_and_dlp_redaction_reach_upstream(governed, fp, model) -> None:  # type: ignore[no-untyped-def]
    msg = client(governed).messages.create(model=model, max_tokens=64, messages=ask(PII))
    sent = fp.last.json["messages"][-1]["content"]
    sent = sent if isinstance(sent, str) else sent[0]["text"]
    assert "[PERSON_1]" in sent and "[EMAIL_ADDRESS_1]" in sent
    assert "[REDACTED:account-number]" in sent
    assert "Maria" not in sent and "12345678" not in sent
    # The fake echoes what it received: the client sees the redacted text.
    assert "[REDACTED:account-number]" in msg.content[0].text


def test_output_policies_on_stream_with_tools(governed, fp) -> None:  # type: ignore[no-untyped-def]
    fp.enqueue(
        Reply(
            text="Account ACCT-87654321 checked.",
            tool_calls=[ToolCall("get_weather", {"city": "Rome"}, id="call_1")],
            chunks=5,
        )
    )
    with client(governed).messages.stream(
        model=GPT, max_tokens=64, messages=ask("go"), tools=TOOLS
    ) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == "Account [REDACTED:account-number] checked."
    assert [b.type for b in final.content] == ["text", "tool_use"]
    assert final.content[1].input == {"city": "Rome"} and final.stop_reason == "tool_use"


def test_gateway_key_in_x_api_key(governed, fp) -> None:  # type: ignore[no-untyped-def]
    key = governed.key
    ok = client(governed, key).messages.create(model=GPT, max_tokens=8, messages=ask())
    assert ok.content[0].text == "hi"
    assert key not in json.dumps(fp.last.headers)
    assert fp.last.headers["authorization"] == f"Bearer {FAKE_KEYS['OPENAI_API_KEY']}"
    with pytest.raises(anthropic.PermissionDeniedError) as e:
        client(governed, key).messages.create(model=CLAUDE, max_tokens=8, messages=ask())
    err = e.value.body["error"]
    assert err["type"] == "policy_violation" and err["code"] == "rbac_denied"
    assert err["policy"] == "rbac" and "limited" in err["message"]
    with pytest.raises(anthropic.AuthenticationError) as e:
        client(governed, "kt_gk_not-a-real-key").messages.create(
            model=GPT, max_tokens=8, messages=ask()
        )
    assert e.value.body["error"]["type"] == "authentication_error"
    # Without a key the default role applies.
    anon = client(governed).messages.create(model=CLAUDE, max_tokens=8, messages=ask())
    assert anon.content[0].text == "hi"
