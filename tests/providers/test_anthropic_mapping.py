"""The Anthropic provider's pure mapping: OpenAI request -> Messages, and back."""

# ruff: noqa: E501 (recorded wire data reads best unwrapped)

from __future__ import annotations

import json

import orjson
import pytest

from keeptrusts.config.model import Target
from keeptrusts.errors import InvalidRequest, UpstreamError
from keeptrusts.providers import registry
from keeptrusts.providers.anthropic import (
    AnthropicProvider,
    AnthropicStream,
    anthropic_error,
    from_anthropic,
    map_tool_choice,
    messages_url,
    to_anthropic,
)
from keeptrusts.providers.base import Call
from keeptrusts.sse import SSEParser


def body(*messages: dict, **extra) -> dict:
    return {"model": "claude-x", "messages": list(messages), **extra}


def user(content) -> dict:
    return {"role": "user", "content": content}


# --- request -------------------------------------------------------------------------


def test_minimal_request_gets_default_max_tokens():
    out = to_anthropic(body(user("hi")))
    assert out == {
        "model": "claude-x",
        "messages": [{"role": "user", "content": "hi"}],
        "max_tokens": 4096,
    }


def test_target_model_and_default_max_tokens_win():
    out = to_anthropic(body(user("hi")), model="claude-target", default_max_tokens=100)
    assert out["model"] == "claude-target"
    assert out["max_tokens"] == 100


def test_max_completion_tokens_preferred_over_max_tokens():
    assert to_anthropic(body(user("x"), max_tokens=50))["max_tokens"] == 50
    out = to_anthropic(body(user("x"), max_tokens=50, max_completion_tokens=70))
    assert out["max_tokens"] == 70


def test_system_and_developer_messages_join_into_system():
    out = to_anthropic(
        body(
            {"role": "system", "content": "Be brief."},
            {"role": "developer", "content": [{"type": "text", "text": "Speak French."}]},
            user("hi"),
        )
    )
    assert out["system"] == "Be brief.\n\nSpeak French."
    assert out["messages"] == [{"role": "user", "content": "hi"}]


def test_multi_turn_history_and_same_role_merge():
    out = to_anthropic(
        body(
            user("one"),
            user("two"),
            {"role": "assistant", "content": "three"},
            {"role": "assistant", "content": ""},
            {"role": "assistant", "content": "four"},
            user("five"),
        )
    )
    assert out["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "one"}, {"type": "text", "text": "two"}]},
        {"role": "assistant", "content": [{"type": "text", "text": "three"}, {"type": "text", "text": "four"}]},
        {"role": "user", "content": "five"},
    ]  # fmt: skip


def test_content_parts_text_and_images():
    out = to_anthropic(
        body(
            user(
                [
                    {"type": "text", "text": "what is this?"},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0K"}},
                    {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}},
                ]
            )
        )
    )
    assert out["messages"][0]["content"] == [
        {"type": "text", "text": "what is this?"},
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0K"}},
        {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}},
    ]  # fmt: skip


def test_pdf_file_part_becomes_document():
    part = {
        "type": "file",
        "file": {"filename": "a.pdf", "file_data": "data:application/pdf;base64,JVBE"},
    }
    out = to_anthropic(body(user([part])))
    assert out["messages"][0]["content"] == [
        {"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBE"}}
    ]  # fmt: skip


@pytest.mark.parametrize(
    "part",
    [
        {"type": "image_url", "image_url": {"url": "data:image/png,notbase64"}},
        {"type": "image_url", "image_url": {"url": "data:image/tiff;base64,AAAA"}},
        {"type": "image_url", "image_url": {"url": "ftp://example.com/x.png"}},
        {"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}},
    ],
)
def test_unsupported_parts_are_rejected(part):
    with pytest.raises(InvalidRequest):
        to_anthropic(body(user([part])))


def test_tools_tool_choice_and_parallel():
    tools = [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Weather for a city",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
            },
        },
        {"type": "function", "function": {"name": "now"}},
    ]
    out = to_anthropic(
        body(user("hi"), tools=tools, tool_choice="required", parallel_tool_calls=False)
    )
    assert out["tools"] == [
        {
            "name": "get_weather",
            "description": "Weather for a city",
            "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
        },
        {"name": "now", "input_schema": {"type": "object"}},
    ]
    assert out["tool_choice"] == {"type": "any", "disable_parallel_tool_use": True}
    assert "parallel_tool_calls" not in out


@pytest.mark.parametrize(
    ("choice", "parallel", "expected"),
    [
        ("auto", None, {"type": "auto"}),
        ("none", None, {"type": "none"}),
        ("none", False, {"type": "none"}),
        ("required", None, {"type": "any"}),
        ({"type": "function", "function": {"name": "f"}}, None, {"type": "tool", "name": "f"}),
        (None, None, None),
        (None, False, {"type": "auto", "disable_parallel_tool_use": True}),
        (None, True, None),
    ],
)
def test_tool_choice(choice, parallel, expected):
    assert map_tool_choice(choice, parallel=parallel) == expected


def test_tool_choice_without_tools_is_dropped():
    out = to_anthropic(body(user("hi"), tool_choice="auto", parallel_tool_calls=False))
    assert "tool_choice" not in out and "tools" not in out


def test_tool_calls_and_tool_results_round_trip():
    out = to_anthropic(
        body(
            user("weather in Paris and Rome?"),
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                    },
                    {
                        "id": "call_2",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": ""},
                    },
                ],
            },
            {"role": "tool", "tool_call_id": "call_1", "content": "18C"},
            {
                "role": "tool",
                "tool_call_id": "call_2",
                "content": [{"type": "text", "text": "21C"}],
            },
            user("thanks"),
        )
    )
    assert out["messages"][1] == {
        "role": "assistant",
        "content": [
            {"type": "tool_use", "id": "call_1", "name": "get_weather", "input": {"city": "Paris"}},
            {"type": "tool_use", "id": "call_2", "name": "get_weather", "input": {}},
        ],
    }
    # Both results and the next user text share one user turn, results first.
    assert out["messages"][2] == {
        "role": "user",
        "content": [
            {"type": "tool_result", "tool_use_id": "call_1", "content": "18C"},
            {
                "type": "tool_result",
                "tool_use_id": "call_2",
                "content": [{"type": "text", "text": "21C"}],
            },
            {"type": "text", "text": "thanks"},
        ],
    }
    assert len(out["messages"]) == 3


def test_bad_tool_arguments_are_rejected():
    call = {"id": "c", "type": "function", "function": {"name": "f", "arguments": "[1, 2]"}}
    with pytest.raises(InvalidRequest):
        to_anthropic(body(user("x"), {"role": "assistant", "tool_calls": [call]}))


def test_sampling_stop_user_and_stream():
    out = to_anthropic(
        body(user("x"), stop="END", temperature=0.2, top_p=0.9, user="u-42", stream=True)
    )
    assert out["stop_sequences"] == ["END"]
    assert (out["temperature"], out["top_p"]) == (0.2, 0.9)
    assert out["metadata"] == {"user_id": "u-42"}
    assert out["stream"] is True
    assert to_anthropic(body(user("x"), stop=["a", "b"]))["stop_sequences"] == ["a", "b"]
    assert to_anthropic(body(user("x"), temperature=1.7))["temperature"] == 1.0


def test_openai_only_fields_are_dropped():
    out = to_anthropic(
        body(
            user("x"),
            n=1,
            stream=True,
            stream_options={"include_usage": True},
            frequency_penalty=0.5,
            presence_penalty=0.5,
            logit_bias={"1": 2},
            logprobs=True,
            top_logprobs=2,
            seed=7,
            store=True,
            service_tier="flex",
            parallel_tool_calls=True,
        )
    )
    assert set(out) == {"model", "messages", "max_tokens", "stream"}


@pytest.mark.parametrize("n", [2, 0])
def test_n_other_than_one_is_invalid(n):
    with pytest.raises(InvalidRequest) as info:
        to_anthropic(body(user("x"), n=n))
    assert info.value.status == 400
    assert info.value.param == "n"


def test_empty_messages_are_invalid():
    with pytest.raises(InvalidRequest):
        to_anthropic({"model": "m", "messages": []})


def test_json_schema_response_format():
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}}
    fmt = {"type": "json_schema", "json_schema": {"name": "x", "schema": schema}}
    out = to_anthropic(body(user("x"), response_format=fmt))
    assert out["output_config"] == {"format": {"type": "json_schema", "schema": schema}}


# --- provider wiring -----------------------------------------------------------------


def target(**kw) -> Target:
    kw.setdefault("api_key", "sk-ant-target")
    return Target(
        id="claude", provider="anthropic", model="claude-real", base_url="https://api.anthropic.com", **kw
    )  # fmt: skip


def call(t: Target, body_: dict, **kw) -> Call:
    return Call(body=body_, target=t, http=None, request_id="req-1", **kw)  # type: ignore[arg-type]


def test_registered_with_defaults():
    assert registry.get("anthropic") is AnthropicProvider
    assert AnthropicProvider.default_base_url == "https://api.anthropic.com"
    assert AnthropicProvider.default_key_env == "ANTHROPIC_API_KEY"


def test_build_request_headers_url_and_body():
    t = target(headers={"anthropic-beta": "tools-2024"})
    req = AnthropicProvider().build_request(
        call(t, body(user("hi")), client_auth="Bearer sk-client")
    )
    assert req.url == "https://api.anthropic.com/v1/messages"
    assert req.headers["x-api-key"] == "sk-ant-target"
    assert req.headers["anthropic-version"] == "2023-06-01"
    assert req.headers["anthropic-beta"] == "tools-2024"
    assert "authorization" not in req.headers
    sent = orjson.loads(req.body)
    assert sent["model"] == "claude-real"
    assert sent["max_tokens"] == 4096


def test_build_request_falls_back_to_client_bearer_token():
    t = target(api_key=None)
    req = AnthropicProvider().build_request(call(t, body(user("hi")), client_auth="Bearer sk-c"))
    assert req.headers["x-api-key"] == "sk-c"
    assert "authorization" not in req.headers
    req = AnthropicProvider().build_request(call(t, body(user("hi"))))
    assert "x-api-key" not in req.headers


def test_build_request_custom_key_header_and_stream():
    t = target(api_key_header="Authorization", api_key_prefix="Bearer ")
    req = AnthropicProvider().build_request(call(t, body(user("hi")), stream=True))
    assert req.headers["authorization"] == "Bearer sk-ant-target"
    assert "x-api-key" not in req.headers
    assert orjson.loads(req.body)["stream"] is True


def test_messages_url_accepts_v1_base():
    assert (
        messages_url("https://gw.example/anthropic/") == "https://gw.example/anthropic/v1/messages"
    )
    assert messages_url("https://api.anthropic.com/v1") == "https://api.anthropic.com/v1/messages"


# --- response ------------------------------------------------------------------------

MESSAGE = {
    "id": "msg_01",
    "type": "message",
    "role": "assistant",
    "model": "claude-real",
    "content": [
        {"type": "text", "text": "Let me check. "},
        {"type": "text", "text": "One moment."},
        {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}},
    ],
    "stop_reason": "tool_use",
    "stop_sequence": None,
    "usage": {"input_tokens": 12, "output_tokens": 30},
}


def test_response_mapping():
    out = from_anthropic(MESSAGE, created=123)
    assert out["id"] == "msg_01"
    assert out["object"] == "chat.completion"
    assert (out["created"], out["model"]) == (123, "claude-real")
    choice = out["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["role"] == "assistant"
    assert choice["message"]["content"] == "Let me check. One moment."
    assert choice["message"]["tool_calls"] == [
        {
            "id": "toolu_1",
            "type": "function",
            "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
        }
    ]
    assert out["usage"] == {"prompt_tokens": 12, "completion_tokens": 30, "total_tokens": 42}


@pytest.mark.parametrize(
    ("stop", "finish"),
    [("end_turn", "stop"), ("stop_sequence", "stop"), ("max_tokens", "length"), ("tool_use", "tool_calls")],
)  # fmt: skip
def test_stop_reasons(stop, finish):
    data = {**MESSAGE, "content": [{"type": "text", "text": "x"}], "stop_reason": stop}
    assert from_anthropic(data)["choices"][0]["finish_reason"] == finish


def test_tool_only_response_has_null_content_and_cache_usage():
    data = {
        **MESSAGE,
        "content": [MESSAGE["content"][2]],
        "usage": {
            "input_tokens": 5,
            "cache_creation_input_tokens": 10,
            "cache_read_input_tokens": 100,
            "output_tokens": 7,
        },
    }
    out = from_anthropic(data)
    assert out["choices"][0]["message"]["content"] is None
    assert out["usage"] == {
        "prompt_tokens": 115,
        "completion_tokens": 7,
        "total_tokens": 122,
        "prompt_tokens_details": {"cached_tokens": 100},
    }


def test_parse_response_records_usage_on_call():
    c = call(target(), body(user("x")))
    AnthropicProvider().parse_response(MESSAGE, c)
    assert c.usage == {"prompt_tokens": 12, "completion_tokens": 30, "total_tokens": 42}


def test_error_body_keeps_status_and_message():
    raw = b'{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}'
    err = anthropic_error(529, raw)
    assert (err.status, err.message, err.type) == (529, "Overloaded", "overloaded_error")
    err = AnthropicProvider().parse_error(400, b'{"type":"error","error":{"type":"invalid_request_error","message":"max_tokens: Field required"}}')  # fmt: skip
    assert (err.status, err.message) == (400, "max_tokens: Field required")
    assert anthropic_error(502, b"<html>bad gateway</html>").status == 502


# --- stream --------------------------------------------------------------------------

TEXT_STREAM = b"""event: message_start
data: {"type":"message_start","message":{"id":"msg_S1","type":"message","role":"assistant","content":[],"model":"claude-real","stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":25,"output_tokens":1}}}

event: content_block_start
data: {"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}

event: ping
data: {"type": "ping"}

event: content_block_delta
data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hello"}}

event: content_block_delta
data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":" world"}}

event: content_block_stop
data: {"type":"content_block_stop","index":0}

event: message_delta
data: {"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"output_tokens":15}}

event: message_stop
data: {"type":"message_stop"}

"""

TOOL_STREAM = b"""event: message_start
data: {"type":"message_start","message":{"id":"msg_T1","type":"message","role":"assistant","content":[],"model":"claude-real","stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":400,"output_tokens":1}}}

event: content_block_start
data: {"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}

event: content_block_delta
data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Checking."}}

event: content_block_stop
data: {"type":"content_block_stop","index":0}

event: content_block_start
data: {"type":"content_block_start","index":1,"content_block":{"type":"tool_use","id":"toolu_A","name":"get_weather","input":{}}}

event: content_block_delta
data: {"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":""}}

event: content_block_delta
data: {"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"{\\"city\\": \\"Pa"}}

event: ping
data: {"type": "ping"}

event: content_block_delta
data: {"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"ris\\"}"}}

event: content_block_stop
data: {"type":"content_block_stop","index":1}

event: content_block_start
data: {"type":"content_block_start","index":2,"content_block":{"type":"tool_use","id":"toolu_B","name":"now","input":{}}}

event: content_block_delta
data: {"type":"content_block_delta","index":2,"delta":{"type":"input_json_delta","partial_json":"{}"}}

event: content_block_stop
data: {"type":"content_block_stop","index":2}

event: message_delta
data: {"type":"message_delta","delta":{"stop_reason":"tool_use","stop_sequence":null},"usage":{"output_tokens":89}}

event: message_stop
data: {"type":"message_stop"}

"""


def run_stream(raw: bytes, translator: AnthropicStream, step: int = 7) -> list[dict]:
    """Feed ``raw`` in small slices, as it would arrive from the network."""
    parser = SSEParser()
    chunks = []
    for i in range(0, len(raw), step):
        for event in parser.feed(raw[i : i + step]):
            chunks.extend(c.obj for c in translator.feed(event))
    for event in parser.close():
        chunks.extend(c.obj for c in translator.feed(event))
    return chunks


def test_text_stream():
    t = AnthropicStream(created=99)
    chunks = run_stream(TEXT_STREAM, t)
    assert t.done
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert {(c["id"], c["created"], c["model"]) for c in chunks} == {("msg_S1", 99, "claude-real")}
    deltas = [c["choices"][0]["delta"] for c in chunks]
    assert deltas[0]["role"] == "assistant"
    assert "".join(d.get("content") or "" for d in deltas) == "Hello world"
    assert [c["choices"][0]["finish_reason"] for c in chunks][-1] == "stop"
    assert all("usage" not in c for c in chunks)


def test_stream_usage_chunk_when_requested():
    c = call(target(), body(user("x"), stream=True, stream_options={"include_usage": True}))
    t = AnthropicProvider().translator(c)
    chunks = run_stream(TEXT_STREAM, t)
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"] == {"prompt_tokens": 25, "completion_tokens": 15, "total_tokens": 40}
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"
    assert c.usage == chunks[-1]["usage"]


def test_tool_use_stream():
    chunks = run_stream(TOOL_STREAM, AnthropicStream())
    calls: dict[int, dict] = {}
    for c in chunks:
        for tc in c["choices"][0]["delta"].get("tool_calls") or []:
            slot = calls.setdefault(tc["index"], {"id": None, "name": None, "arguments": ""})
            if tc.get("id"):
                slot["id"], slot["name"] = tc["id"], tc["function"]["name"]
                assert tc["type"] == "function"
            slot["arguments"] += tc["function"].get("arguments") or ""
    assert calls == {
        0: {"id": "toolu_A", "name": "get_weather", "arguments": '{"city": "Paris"}'},
        1: {"id": "toolu_B", "name": "now", "arguments": "{}"},
    }
    assert json.loads(calls[0]["arguments"]) == {"city": "Paris"}
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks)
    assert text == "Checking."
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"


def test_stream_not_done_before_message_stop():
    t = AnthropicStream()
    run_stream(TEXT_STREAM.split(b"event: message_stop")[0], t)
    assert not t.done


@pytest.mark.parametrize(("etype", "status"), [("overloaded_error", 503), ("api_error", 502)])
def test_error_event_raises_upstream_error(etype, status):
    error = (
        b'event: error\ndata: {"type":"error","error":{"type":"' + etype.encode()
        + b'","message":"Something broke"}}\n\n'
    )  # fmt: skip
    raw = TEXT_STREAM.split(b"event: content_block_stop")[0] + error
    t = AnthropicStream()
    with pytest.raises(UpstreamError) as info:
        run_stream(raw, t)
    assert info.value.status == status
    assert info.value.message == "Something broke"
    assert not t.done
