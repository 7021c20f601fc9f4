"""Inbound Anthropic Messages <-> internal OpenAI shape: pure mapping, no network."""

from __future__ import annotations

import orjson
import pytest

from keeptrusts.errors import GatewayError, InvalidRequest, PolicyViolation, UpstreamError
from keeptrusts.formats.anthropic_messages import (
    MessagesStream,
    error_body,
    from_openai,
    to_openai,
)
from keeptrusts.providers.anthropic import AnthropicStream, from_anthropic, to_anthropic
from keeptrusts.sse import SSEEvent, SSEParser

IMG = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBO"}}
TOOL = {
    "name": "get_weather",
    "description": "Weather for a city",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
}


def req(*messages: dict, **extra) -> dict:
    return {"model": "claude-x", "max_tokens": 100, "messages": list(messages), **extra}


def user(content) -> dict:
    return {"role": "user", "content": content}


# --- request -------------------------------------------------------------------------


def test_full_request_maps_every_supported_field():
    out = to_openai(
        req(
            user("weather?"),
            {
                "role": "assistant",
                "content": [
                    {"type": "thinking", "thinking": "hmm", "signature": "sig"},
                    {"type": "text", "text": "Checking."},
                    {
                        "type": "tool_use",
                        "id": "toolu_1",
                        "name": "get_weather",
                        "input": {"city": "Paris"},
                    },
                ],
            },
            user(
                [
                    {
                        "type": "tool_result",
                        "tool_use_id": "toolu_1",
                        "content": "18C",
                        "is_error": False,
                    },
                    {
                        "type": "text",
                        "text": "And tomorrow?",
                        "cache_control": {"type": "ephemeral"},
                    },
                ]
            ),
            system="Be brief.",
            stop_sequences=["END"],
            temperature=0.3,
            top_p=0.9,
            top_k=5,
            metadata={"user_id": "u-1"},
            tools=[TOOL],
            tool_choice={"type": "tool", "name": "get_weather", "disable_parallel_tool_use": True},
            stream=True,
        )
    )
    assert out == {
        "model": "claude-x",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "weather?"},
            {
                "role": "assistant",
                "content": "Checking.",
                "tool_calls": [
                    {
                        "id": "toolu_1",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "toolu_1", "content": "18C"},
            {"role": "user", "content": "And tomorrow?"},
        ],
        "max_tokens": 100,
        "temperature": 0.3,
        "top_p": 0.9,
        "stop": ["END"],
        "user": "u-1",
        "tools": [
            {
                "type": "function",
                "function": {
                    "name": "get_weather",
                    "description": "Weather for a city",
                    "parameters": TOOL["input_schema"],
                },
            }
        ],
        "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
        "parallel_tool_calls": False,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    assert to_openai(req(user("x"), top_k=5), keep_top_k=True)["top_k"] == 5


def test_media_blocks_and_tool_result_images():
    pdf = {
        "type": "document",
        "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBE"},
    }
    text_doc = {
        "type": "document",
        "source": {"type": "text", "media_type": "text/plain", "data": "notes"},
    }
    url_img = {"type": "image", "source": {"type": "url", "url": "https://x.test/a.png"}}
    out = to_openai(
        req(
            {
                "role": "assistant",
                "content": [{"type": "tool_use", "id": "t1", "name": "shot", "input": {}}],
            },
            user(
                [
                    {
                        "type": "tool_result",
                        "tool_use_id": "t1",
                        "content": [
                            {"type": "text", "text": "a"},
                            {"type": "text", "text": "b"},
                            IMG,
                        ],
                    },
                    pdf,
                    text_doc,
                    url_img,
                ]
            ),
        )
    )
    tool, rest = out["messages"][1], out["messages"][2]
    assert tool == {
        "role": "tool",
        "tool_call_id": "t1",
        "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}],
    }
    assert rest["role"] == "user"
    assert rest["content"] == [
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBO"}},
        {
            "type": "file",
            "file": {"filename": "document.pdf", "file_data": "data:application/pdf;base64,JVBE"},
        },
        {"type": "text", "text": "notes"},
        {"type": "image_url", "image_url": {"url": "https://x.test/a.png"}},
    ]
    assert out["messages"][0]["content"] is None


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"messages": [user("x")]}, "model"),
        ({"model": "m", "messages": []}, "messages"),
        (req({"role": "system", "content": "x"}), "messages[0].role"),
        (
            req(user([{"type": "server_tool_use", "id": "s", "name": "web_search"}])),
            "messages[0].content[0].type",
        ),
        (
            req(user([{"type": "image", "source": {"type": "file", "file_id": "f"}}])),
            "messages[0].content[0].source.type",
        ),
        (
            req(user("x"), tools=[{"type": "web_search_20250305", "name": "web_search"}]),
            "tools[0].type",
        ),
        (req(user("x"), max_tokens=-1), "max_tokens"),
        (req(user("x"), mcp_servers=[{"type": "url", "url": "https://m.test"}]), "mcp_servers"),
        (req(user("x"), output_config={"format": {"type": "regex"}}), "output_config.format.type"),
        (req(user("x"), stream="yes"), "stream"),
        (req(user("x"), tools=[TOOL], tool_choice={"type": "sometimes"}), "tool_choice.type"),
        (req(user([{"type": "tool_result"}])), "messages[0].content[0].tool_use_id"),
    ],
)
def test_refuses_what_cannot_map(body, param):
    with pytest.raises(InvalidRequest) as e:
        to_openai(body)
    assert e.value.param == param and e.value.status == 400


def test_double_translation_keeps_supported_fields():
    """Messages -> OpenAI -> Messages (what an Anthropic target receives)."""
    original = req(
        user([{"type": "text", "text": "look"}, IMG]),
        {
            "role": "assistant",
            "content": [
                {"type": "text", "text": "Calling."},
                {
                    "type": "tool_use",
                    "id": "toolu_9",
                    "name": "get_weather",
                    "input": {"city": "Oslo"},
                },
            ],
        },
        user([{"type": "tool_result", "tool_use_id": "toolu_9", "content": "cold"}]),
        system="sys",
        stop_sequences=["X", "Y"],
        temperature=0.5,
        top_p=0.8,
        top_k=3,
        metadata={"user_id": "abc"},
        tools=[TOOL],
        tool_choice={"type": "any"},
        output_config={"format": {"type": "json_schema", "schema": TOOL["input_schema"]}},
    )
    back = to_anthropic(to_openai(original, keep_top_k=True))
    assert back["system"] == "sys"
    assert back["messages"][0] == {
        "role": "user",
        "content": [{"type": "text", "text": "look"}, IMG],
    }
    assert back["messages"][1] == original["messages"][1]
    assert back["messages"][2] == {
        "role": "user",
        "content": [{"type": "tool_result", "tool_use_id": "toolu_9", "content": "cold"}],
    }
    for key in (
        "model",
        "max_tokens",
        "stop_sequences",
        "temperature",
        "top_p",
        "top_k",
        "metadata",
        "tool_choice",
        "output_config",
    ):
        assert back[key] == original[key], key
    assert back["tools"] == [TOOL]


# --- response ------------------------------------------------------------------------


def test_completion_to_message():
    completion = {
        "id": "chatcmpl-1",
        "model": "gpt-4o",
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": "Sure.",
                    "tool_calls": [
                        {
                            "id": "call_1",
                            "type": "function",
                            "function": {"name": "f", "arguments": '{"a": 1}'},
                        }
                    ],
                },
                "finish_reason": "tool_calls",
            }
        ],
        "usage": {
            "prompt_tokens": 12,
            "completion_tokens": 4,
            "prompt_tokens_details": {"cached_tokens": 2},
        },
    }
    msg = from_openai(completion)
    assert msg["id"].startswith("msg_") and msg["type"] == "message" and msg["role"] == "assistant"
    assert msg["content"] == [
        {"type": "text", "text": "Sure."},
        {"type": "tool_use", "id": "call_1", "name": "f", "input": {"a": 1}},
    ]
    assert msg["stop_reason"] == "tool_use" and msg["stop_sequence"] is None
    assert msg["usage"]["input_tokens"] == 10 and msg["usage"]["output_tokens"] == 4
    assert msg["usage"]["cache_read_input_tokens"] == 2
    for finish, reason in [
        ("stop", "end_turn"),
        ("length", "max_tokens"),
        ("content_filter", "refusal"),
    ]:
        completion["choices"][0]["finish_reason"] = finish
        assert from_openai(completion)["stop_reason"] == reason


def test_anthropic_message_survives_double_translation():
    native = {
        "id": "msg_abc",
        "type": "message",
        "role": "assistant",
        "model": "claude-x",
        "content": [
            {"type": "text", "text": "Hi"},
            {"type": "tool_use", "id": "toolu_1", "name": "f", "input": {"k": [1, 2]}},
        ],
        "stop_reason": "tool_use",
        "stop_sequence": None,
        "usage": {"input_tokens": 7, "output_tokens": 3, "cache_read_input_tokens": 5},
    }
    back = from_openai(from_anthropic(native))
    assert {k: back[k] for k in ("id", "model", "content", "stop_reason")} == {
        k: native[k] for k in ("id", "model", "content", "stop_reason")
    }
    assert back["usage"]["input_tokens"] == 7 and back["usage"]["cache_read_input_tokens"] == 5


# --- stream --------------------------------------------------------------------------


def events(frames: list[bytes]) -> list[tuple[str, dict]]:
    out = []
    for ev in SSEParser().feed(b"".join(frames)):
        data = orjson.loads(ev.data)
        assert data["type"] == ev.event
        out.append((ev.event, data))
    return out


def chunk(delta: dict | None = None, finish: str | None = None, **extra) -> dict:
    choices = [] if delta is None else [{"index": 0, "delta": delta, "finish_reason": finish}]
    return {"id": "chatcmpl-1", "model": "gpt-4o", "choices": choices, **extra}


OPENAI_CHUNKS = [
    chunk({"role": "assistant", "content": ""}),
    chunk({"content": "Let me "}),
    chunk({"content": "check."}),
    chunk(
        {
            "tool_calls": [
                {
                    "index": 0,
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "f", "arguments": ""},
                }
            ]
        }
    ),
    chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"a":'}}]}),
    chunk({"tool_calls": [{"index": 0, "function": {"arguments": "1}"}}]}),
    chunk({}, "tool_calls"),
    chunk(None, usage={"prompt_tokens": 9, "completion_tokens": 6}),
]


def rebuild(evs: list[tuple[str, dict]]) -> dict:
    """Accumulate a Messages stream the way a client does, checking block discipline."""
    msg: dict = {}
    open_index = None
    for name, data in evs:
        if name == "message_start":
            msg = data["message"]
        elif name == "content_block_start":
            assert open_index is None and data["index"] == len(msg["content"])
            open_index = data["index"]
            msg["content"].append(dict(data["content_block"], _json=""))
        elif name == "content_block_delta":
            assert data["index"] == open_index
            block, delta = msg["content"][data["index"]], data["delta"]
            if delta["type"] == "text_delta":
                block["text"] += delta["text"]
            else:
                block["_json"] += delta["partial_json"]
        elif name == "content_block_stop":
            assert data["index"] == open_index
            open_index = None
        elif name == "message_delta":
            msg.update(data["delta"])
            msg["usage"] = data["usage"]
    for block in msg["content"]:
        raw = block.pop("_json")
        if block["type"] == "tool_use":
            block["input"] = orjson.loads(raw)
    return msg


@pytest.mark.parametrize("defer", [False, True])
def test_chunks_become_messages_events(defer):
    enc = MessagesStream(model="gpt-4o", defer_tools=defer)
    frames = [f for c in OPENAI_CHUNKS for f in enc.feed(c)] + enc.finish()
    evs = events(frames)
    names = [n for n, _ in evs]
    assert names[:2] == ["message_start", "ping"] and names[-2:] == [
        "message_delta",
        "message_stop",
    ]
    msg = rebuild(evs)
    assert msg["id"].startswith("msg_")
    assert msg["content"] == [
        {"type": "text", "text": "Let me check."},
        {"type": "tool_use", "id": "call_1", "name": "f", "input": {"a": 1}},
    ]
    assert msg["stop_reason"] == "tool_use"
    assert msg["usage"]["input_tokens"] == 9 and msg["usage"]["output_tokens"] == 6


def test_deferred_tools_come_after_late_text():
    enc = MessagesStream(defer_tools=True)
    frames = enc.feed(OPENAI_CHUNKS[3]) + enc.feed(OPENAI_CHUNKS[4]) + enc.feed(OPENAI_CHUNKS[5])
    frames += enc.feed(chunk({"content": "held back text"}, "tool_calls")) + enc.finish()
    msg = rebuild(events(frames))
    assert [b["type"] for b in msg["content"]] == ["text", "tool_use"]


def test_anthropic_stream_survives_double_translation():
    native = [
        (
            "message_start",
            {
                "message": {
                    "id": "msg_n",
                    "type": "message",
                    "role": "assistant",
                    "model": "claude-x",
                    "content": [],
                    "stop_reason": None,
                    "usage": {"input_tokens": 5, "output_tokens": 1},
                }
            },
        ),
        ("content_block_start", {"index": 0, "content_block": {"type": "text", "text": ""}}),
        ("content_block_delta", {"index": 0, "delta": {"type": "text_delta", "text": "Hello"}}),
        ("content_block_stop", {"index": 0}),
        (
            "content_block_start",
            {
                "index": 1,
                "content_block": {"type": "tool_use", "id": "toolu_1", "name": "f", "input": {}},
            },
        ),
        (
            "content_block_delta",
            {"index": 1, "delta": {"type": "input_json_delta", "partial_json": '{"x": "y"}'}},
        ),
        ("content_block_stop", {"index": 1}),
        ("message_delta", {"delta": {"stop_reason": "tool_use"}, "usage": {"output_tokens": 8}}),
        ("message_stop", {}),
    ]
    outbound = AnthropicStream(include_usage=True)
    enc = MessagesStream()
    frames = []
    for name, data in native:
        for c in outbound.feed(SSEEvent(name, orjson.dumps({"type": name, **data}))):
            frames += enc.feed(c.obj)
    msg = rebuild(events(frames + enc.finish()))
    assert msg["id"] == "msg_n" and msg["model"] == "claude-x"
    assert msg["content"] == [
        {"type": "text", "text": "Hello"},
        {"type": "tool_use", "id": "toolu_1", "name": "f", "input": {"x": "y"}},
    ]
    assert msg["stop_reason"] == "tool_use"
    assert msg["usage"]["input_tokens"] == 5 and msg["usage"]["output_tokens"] == 8


# --- errors --------------------------------------------------------------------------


def test_error_shapes():
    block = PolicyViolation("Blocked by dlp-filter", policy="dlp-filter", code="input_blocked")
    assert error_body(block) == {
        "type": "error",
        "error": {
            "type": "policy_violation",
            "message": "Blocked by dlp-filter",
            "code": "input_blocked",
            "policy": "dlp-filter",
        },
    }
    assert error_body(InvalidRequest("bad"))["error"]["type"] == "invalid_request_error"
    assert error_body(UpstreamError("slow", status=429))["error"]["type"] == "rate_limit_error"
    assert (
        error_body(UpstreamError("x", status=529, type="overloaded_error"))["error"]["type"]
        == "overloaded_error"
    )
    assert (
        error_body(GatewayError("down", status=503, type="service_unavailable"))["error"]["type"]
        == "api_error"
    )
    frame = MessagesStream.error(UpstreamError("cut", status=502))
    assert frame.startswith(b"event: error\ndata: ") and b'"api_error"' in frame
